//! What validating a configuration found, and how it is told. Each finding names the file, the
//! line and column of the field, the field path and the reason; it is an error (the file is
//! refused) or a warning (the file is accepted and the operator told).
//!
//! `sidecar.yaml`, `idp.yaml` and the Kubernetes annotations all collect into [`Problems`];
//! start-up refuses with the errors, `baton check` and `baton-idp check` print a [`Report`].

use std::fmt;

/// One finding: `sidecar.yaml:12:5: routes[2].audience: must be an absolute URI`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file (or, for annotations and flags, the object) the value came from.
    pub file: String,
    /// The line of the field (1-based), when the field is written in a file.
    pub line: Option<u64>,
    /// The column where the field's key starts (1-based), with the line.
    pub column: Option<u64>,
    /// The field path, e.g. `routes[2].audience`.
    pub field: String,
    /// What is wrong and, where possible, the fix.
    pub reason: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}: {}", self.field, self.reason)
    }
}

/// Every error found in one file, reported together: what start-up refuses with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<Finding>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Everything found in one file: the errors refuse it, the warnings do not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Problems that keep the program from starting.
    pub errors: Vec<Finding>,
    /// Things that work but are probably not meant, or that this machine lacks.
    pub warnings: Vec<Finding>,
}

impl Report {
    /// The errors alone, as start-up refuses with them.
    pub fn into_config_errors(self) -> ConfigErrors {
        ConfigErrors(self.errors)
    }

    /// The last line of a check: `sidecar.yaml: ok (1 warning)` or
    /// `sidecar.yaml: 3 errors, 1 warning`.
    pub fn summary(&self, file: &str) -> String {
        let (e, w) = (self.errors.len(), self.warnings.len());
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        if e == 0 {
            format!("{file}: ok ({w} warning{})", plural(w))
        } else {
            format!("{file}: {e} error{}, {w} warning{}", plural(e), plural(w))
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self.errors.iter().map(|e| ("error", e));
        let warnings = self.warnings.iter().map(|w| ("warning", w));
        for (i, (kind, finding)) in errors.chain(warnings).enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{kind}: {finding}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Report {}

/// How a file or environment variable the config names, but this machine lacks, counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// At start-up: the program cannot run without it.
    Error,
    /// In a check away from the deployment: the rest of the file is still judged.
    Warning,
}

/// One entry before its position is known.
#[derive(Debug)]
struct Entry {
    field: String,
    reason: String,
    at: Option<(u64, u64)>,
    /// Found while reading the YAML, not by validation: never shadowed.
    read: bool,
}

/// Collects findings by field path while a file is read and validated.
#[derive(Debug)]
pub struct Problems {
    file: String,
    errors: Vec<Entry>,
    warnings: Vec<Entry>,
    missing: Vec<Entry>,
    /// Fields whose value could not be read: what validation says of their default is noise.
    shadowed: Vec<String>,
}

impl Problems {
    /// Starts collecting for `file`.
    pub fn new(file: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            errors: Vec::new(),
            warnings: Vec::new(),
            missing: Vec::new(),
            shadowed: Vec::new(),
        }
    }

    /// The file findings are about.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Records that `field` is wrong because of `reason`: the file is refused.
    pub fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(entry(field, reason, None));
    }

    /// Records something about `field` the operator should know; the file is still accepted.
    pub fn warn(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.warnings.push(entry(field, reason, None));
    }

    /// Records that a file or environment variable `field` names is not on this machine: an
    /// error at start-up, a warning in a check (see [`Missing`]).
    pub fn missing(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.missing.push(entry(field, reason, None));
    }

    /// Records what reading the YAML found wrong at `field` (a syntax error, an unknown field, a
    /// value of the wrong type), at `at` when the field has no position of its own. Never dropped
    /// by [`Problems::shadow`].
    pub(crate) fn read_error(
        &mut self,
        field: impl Into<String>,
        reason: impl Into<String>,
        at: Option<(u64, u64)>,
    ) {
        let mut e = entry(field, reason, at);
        e.read = true;
        self.errors.push(e);
    }

    /// Records that the value at `path` could not be read, so validation sees its default: what
    /// validation says at or under `path` is noise and is dropped.
    pub(crate) fn shadow(&mut self, path: impl Into<String>) {
        self.shadowed.push(path.into());
    }

    /// Whether nothing that refuses the file was recorded yet (missing files count).
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty() && self.missing.is_empty()
    }

    /// `Ok(value)` when no error was recorded, else the errors (missing files included), without
    /// positions: for values that do not come from a file (annotations, flags).
    pub fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.is_clean() {
            Ok(value)
        } else {
            let report = self.report(|_| None, Missing::Error);
            Err(report.into_config_errors())
        }
    }

    /// The report, each finding placed by `position` (field path → line and column), in file
    /// order; a finding without a position (a field left to its default) after those with one.
    pub fn report(self, position: impl Fn(&str) -> Option<(u64, u64)>, missing: Missing) -> Report {
        let shadowed = self.shadowed;
        let file = self.file;
        let place = |list: Vec<Entry>| {
            let mut list: Vec<Finding> = list
                .into_iter()
                .map(|e| {
                    let at = e.at.or_else(|| position(&e.field));
                    Finding {
                        file: file.clone(),
                        line: at.map(|(l, _)| l),
                        column: at.map(|(_, c)| c),
                        field: e.field,
                        reason: e.reason,
                    }
                })
                .collect();
            list.sort_by_key(|f| (f.line.unwrap_or(u64::MAX), f.column.unwrap_or(0)));
            list
        };
        let (mut errors, mut warnings) = (self.errors, self.warnings);
        match missing {
            Missing::Error => errors.extend(self.missing),
            Missing::Warning => warnings.extend(self.missing),
        }
        errors.retain(|e| e.read || !shadowed.iter().any(|s| under(&e.field, s)));
        Report {
            errors: place(errors),
            warnings: place(warnings),
        }
    }
}

fn entry(field: impl Into<String>, reason: impl Into<String>, at: Option<(u64, u64)>) -> Entry {
    Entry {
        field: field.into(),
        reason: reason.into(),
        at,
        read: false,
    }
}

/// Whether `field` is `path` or a field inside it (`a.b`, `a[0]` are under `a`, `ab` is not).
pub(crate) fn under(field: &str, path: &str) -> bool {
    path.is_empty()
        || field
            .strip_prefix(path)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_print_their_place_and_a_report_its_kinds_and_count() {
        let mut p = Problems::new("sidecar.yaml");
        p.push("routes[0].path", "must start with /");
        p.warn("admin", "exposed");
        p.missing("outbound.client.secret_file", "read /x: not found");
        p.push("issuer", "required");
        let at = |f: &str| (f == "routes[0].path").then_some((7, 5));
        let report = p.report(at, Missing::Warning);
        assert_eq!(
            report.to_string(),
            "error: sidecar.yaml:7:5: routes[0].path: must start with /\n\
             error: sidecar.yaml: issuer: required\n\
             warning: sidecar.yaml: admin: exposed\n\
             warning: sidecar.yaml: outbound.client.secret_file: read /x: not found"
        );
        assert_eq!(report.summary("s.yaml"), "s.yaml: 2 errors, 2 warnings");
        let ok = Report {
            errors: Vec::new(),
            warnings: report.warnings[..1].to_vec(),
        };
        assert_eq!(ok.summary("s.yaml"), "s.yaml: ok (1 warning)");
    }

    #[test]
    fn a_missing_file_is_an_error_at_start_and_a_warning_in_a_check() {
        let problems = || {
            let mut p = Problems::new("f");
            p.missing("a_file", "read a: not found");
            p
        };
        let start = problems().report(|_| None, Missing::Error);
        assert_eq!((start.errors.len(), start.warnings.len()), (1, 0));
        let check = problems().report(|_| None, Missing::Warning);
        assert_eq!((check.errors.len(), check.warnings.len()), (0, 1));
        assert!(problems().finish(()).is_err());
    }

    #[test]
    fn what_validation_says_of_a_shadowed_default_is_dropped() {
        let mut p = Problems::new("f");
        p.read_error("routes[1]", "invalid type: string, expected a map", None);
        p.shadow("routes");
        p.push("routes[0].name", "required");
        p.push("routes", "needs a login section");
        p.push("routes_x", "kept: another field");
        let fields: Vec<String> = p
            .report(|_| None, Missing::Error)
            .errors
            .into_iter()
            .map(|f| f.field)
            .collect();
        assert_eq!(fields, ["routes[1]", "routes_x"]);
        assert!(under("a.b", "a") && under("a[0]", "a") && under("a", "a"));
        assert!(!under("ab", "a") && under("anything", ""));
    }
}
