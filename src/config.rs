//! `sidecar.yaml` → validated `Config`; errors name the file, the field and the reason.

pub mod login;
pub mod outbound;
pub mod routes;
mod sidecar;

pub use routes::{Access, ClaimRule, Requirements, Route};
pub use sidecar::{AdminSettings, Config, InboundSettings, JwksSettings, Listeners, Mode};

use std::fmt;

/// One configuration problem: `sidecar.yaml: routes[2].audience: must be an absolute URI`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the value came from.
    pub file: String,
    /// The field path, e.g. `routes[2].audience`.
    pub field: String,
    /// What is wrong and, where possible, the fix.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.field, self.reason)
    }
}

/// Every problem found in one file, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

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

/// Collects problems while validating a file.
#[derive(Debug)]
pub struct Problems {
    file: String,
    errors: Vec<ConfigError>,
}

impl Problems {
    /// Starts collecting for `file`.
    pub fn new(file: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            errors: Vec::new(),
        }
    }

    /// Records that `field` is wrong because of `reason`.
    pub fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            field: field.into(),
            reason: reason.into(),
        });
    }

    /// `Ok(value)` when nothing was recorded, else every problem.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.errors))
        }
    }

    /// A YAML parse error as a problem with the line and column serde_yaml reports.
    pub fn yaml(file: &str, e: &serde_yaml::Error) -> ConfigErrors {
        let field = e
            .location()
            .map(|l| format!("line {} column {}", l.line(), l.column()))
            .unwrap_or_else(|| "(document)".into());
        ConfigErrors(vec![ConfigError {
            file: file.into(),
            field,
            reason: e.to_string(),
        }])
    }
}

#[cfg(test)]
mod tests;
