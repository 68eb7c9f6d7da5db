//! What validating an `idp.yaml` found: errors (the IdP refuses the file) and warnings (it starts
//! and logs them), each with the file, the line, the field path and the reason. `baton-idp
//! check` prints this report; `baton-idp serve` refuses with its errors or logs its warnings.

use super::lines::Lines;
use super::{Config, TOKEN_EXCHANGE};
use crate::config::{ConfigError, ConfigErrors};
use std::fmt;

/// Collects problems while validating a file: errors and warnings by field path.
#[derive(Debug)]
pub struct Findings {
    file: String,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl Findings {
    /// Starts collecting for `file`.
    pub fn new(file: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Records that `field` is wrong because of `reason`: the file is refused.
    pub fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(self.finding(field, reason));
    }

    /// Records something about `field` the operator should know; the file is still accepted.
    pub fn warn(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.warnings.push(self.finding(field, reason));
    }

    fn finding(&self, field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The report, with each finding's line taken from `lines`.
    pub(super) fn report(self, lines: &Lines) -> Report {
        let place = |e: ConfigError| Finding {
            line: lines.line(&e.field),
            file: e.file,
            field: e.field,
            reason: e.reason,
        };
        // In file order; a finding without a line (a defaulted field) after those with one.
        let in_order = |list: Vec<ConfigError>| {
            let mut list: Vec<Finding> = list.into_iter().map(place).collect();
            list.sort_by_key(|f| f.line.unwrap_or(u64::MAX));
            list
        };
        Report {
            errors: in_order(self.errors),
            warnings: in_order(self.warnings),
        }
    }
}

/// One problem: `idp.yaml:38: clients[0].secret: reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file.
    pub file: String,
    /// The line of the field (1-based), when the field is written in the file.
    pub line: Option<u64>,
    /// The field path, e.g. `clients[0].secret`.
    pub field: String,
    /// What is wrong and, where possible, the fix.
    pub reason: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}: {}", self.file, self.field, self.reason),
            None => write!(f, "{}: {}: {}", self.file, self.field, self.reason),
        }
    }
}

/// Everything found in one file: the errors refuse it, the warnings do not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Problems that keep the IdP from starting.
    pub errors: Vec<Finding>,
    /// Things that work but are probably not meant (demo material, an edge no grant can use).
    pub warnings: Vec<Finding>,
}

impl Report {
    /// A report of one YAML parse error. serde stops at the first one, so a file that does not
    /// parse has exactly one error; its field is the one written at the error's position.
    pub(super) fn parse_error(file: &str, e: &serde_saphyr::Error, lines: &Lines) -> Report {
        let at = e.location().map(|l| (l.line(), l.column()));
        let message = e.without_snippet().to_string();
        // The message ends with " at line L, column C", which the line prefix already says.
        let reason = match message.rsplit_once(" at line ") {
            Some((reason, _)) if at.is_some() => reason.to_owned(),
            _ => message,
        };
        let field = at
            .and_then(|(l, c)| lines.field_at(l, c))
            .unwrap_or("(document)");
        Report {
            errors: vec![Finding {
                file: file.to_owned(),
                line: at.map(|(l, _)| l),
                field: field.to_owned(),
                reason,
            }],
            warnings: Vec::new(),
        }
    }

    /// The errors without their lines, as `Config::from_yaml` reports them.
    pub fn into_config_errors(self) -> ConfigErrors {
        ConfigErrors(
            self.errors
                .into_iter()
                .map(|f| ConfigError {
                    file: f.file,
                    field: f.field,
                    reason: f.reason,
                })
                .collect(),
        )
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

/// Warnings about a valid config: parts that can never take effect.
pub(super) fn warnings(cfg: &Config, client_fields: &[(String, String)], p: &mut Findings) {
    // client id → its field path (`clients[i]`), in file order.
    let field_of = |id: &str| {
        client_fields
            .iter()
            .find(|(cid, _)| cid == id)
            .map(|(_, f)| f.as_str())
    };
    for (id, f) in client_fields {
        let Some(c) = cfg.clients.get(id) else {
            continue;
        };
        if !c.redirect_uris.is_empty() && !c.allows("authorization_code") {
            p.warn(
                format!("{f}.redirect_uris"),
                "registered, but authorization_code is not among grant_types: no sign-in uses them",
            );
        }
        let has_edge = cfg.grants.iter().any(|e| &e.client == id);
        if c.allows("client_credentials") && !has_edge {
            p.warn(
                format!("{f}.grant_types"),
                format!(
                    "client_credentials is allowed but no grants edge starts at {id}: every \
                     request fails with invalid_target"
                ),
            );
        }
        if c.default_audience.is_some() && !c.allows("client_credentials") {
            p.warn(
                format!("{f}.default_audience"),
                "only client_credentials uses it, and this client may not use that grant",
            );
        }
    }
    for (i, e) in cfg.grants.iter().enumerate() {
        let Some(c) = cfg.clients.get(&e.client) else {
            continue;
        };
        // An edge is walked by token exchange, by client_credentials, or by a sign-in that asks
        // for a resource standing for the target (RFC 8707 at /authorize).
        let by_resource =
            c.allows("authorization_code") && cfg.resources.values().any(|aud| aud == &e.target);
        if !c.allows(TOKEN_EXCHANGE) && !c.allows("client_credentials") && !by_resource {
            let at = field_of(&e.client).unwrap_or("clients");
            p.warn(
                format!("grants[{i}]"),
                format!(
                    "{} → {} is never used: {at}.grant_types has neither token exchange nor \
                     client_credentials, and no sign-in resource stands for {}",
                    e.client, e.target, e.target
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests;
