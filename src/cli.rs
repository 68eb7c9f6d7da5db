//! The `baton` command line: run, demo, check and the other subcommands.
