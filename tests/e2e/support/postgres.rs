//! A throwaway PostgreSQL cluster for the shared-store tests: `initdb` into a scratch directory,
//! `pg_ctl start` on a free loopback port (trust authentication, loopback only), stopped and
//! deleted when dropped. PostgreSQL refuses to run as root, so under root (CI containers) the
//! server runs as `nobody` through `setpriv`.
//!
//! The binaries come from `$PG_BIN`, else Debian's `/usr/lib/postgresql/<version>/bin`. Without
//! them the tests that need a database say so and pass, unless `BATON_REQUIRE_POSTGRES=1` (set
//! by `.ci/run`) makes that a failure.

use super::process::{free_port, scratch};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A running cluster.
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    /// Its loopback port.
    pub port: u16,
}

/// Where `initdb` and `pg_ctl` are, if installed.
fn binaries() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    ["17", "16", "15"]
        .iter()
        .map(|v| PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")))
        .find(|d| d.join("initdb").exists())
}

/// Runs `bin args…` in `dir`, as `nobody` when this process is root.
fn run(dir: &Path, bin: &Path, args: &[&str]) -> std::process::Output {
    // The owner of /proc/self is this process's effective uid.
    let root =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").expect("/proc/self"))
            == 0;
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(args)
        .current_dir(dir)
        .env_remove("PGDATA")
        .output()
        .expect("run a PostgreSQL binary")
}

impl PgCluster {
    /// A fresh cluster, started; `None` when PostgreSQL is not installed (and not required).
    pub fn start() -> Option<PgCluster> {
        let Some(bin) = binaries() else {
            assert!(
                std::env::var_os("BATON_REQUIRE_POSTGRES").is_none(),
                "BATON_REQUIRE_POSTGRES is set but no PostgreSQL binaries were found"
            );
            eprintln!("PostgreSQL not installed (Debian: postgresql): shared-store test skipped");
            return None;
        };
        let dir = scratch("pg");
        // Only when root: PostgreSQL then runs as nobody, which must own its directory.
        let _ = std::os::unix::fs::chown(&dir, Some(65534), Some(65534));
        let data = dir.join("data");
        let out = run(
            &dir,
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().expect("utf-8"),
                "-U",
                "baton",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = PgCluster {
            bin,
            dir,
            port: free_port(),
        };
        pg.start_server();
        Some(pg)
    }

    /// The URL baton-idp connects with.
    pub fn url(&self) -> String {
        format!("postgres://baton@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start_server(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let out = run(
            &self.dir,
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                self.data().to_str().expect("utf-8"),
                "-l",
                self.dir.join("server.log").to_str().expect("utf-8"),
                "-o",
                &opts,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
    }

    /// Stops the server (`mode`: `fast` closes connections; `immediate` is a crash).
    pub fn stop_server(&self, mode: &str) {
        let out = run(
            &self.dir,
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                self.data().to_str().expect("utf-8"),
                "-m",
                mode,
                "-w",
                "stop",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = run(
            &self.dir,
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                self.data().to_str().unwrap_or_default(),
                "-m",
                "immediate",
                "stop",
            ],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
