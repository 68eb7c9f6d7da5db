//! Who is signed in: the login [`Session`] a browser holds at the IdP (which factors its user
//! proved, and when) and the [`Authentication`] a code or token records of it (`acr`, `amr`,
//! `auth_time`, `sid`). Plain values: where sessions are kept is [`super::store`], how a
//! browser finds its own is [`super::session`].

use super::config::Factor;
use super::revocation::Lineage;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// What a user proved, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authentication {
    /// Username (`sub`).
    pub user: String,
    /// The login session's public id, written as `sid` in ID tokens.
    pub sid: Option<String>,
    /// When the user last authenticated (OIDC Core §2 `auth_time`).
    pub auth_time: u64,
    /// Authentication context class (`pwd` for a password).
    pub acr: String,
    /// Methods used (RFC 8176), e.g. `["pwd"]`.
    pub amr: Vec<String>,
}

impl Authentication {
    /// Writes `acr`, `amr`, `auth_time` into token claims (RFC 9068 §2.2.1, RFC 9470 §6.1).
    pub fn stamp(&self, claims: &mut crate::jwt::Claims) {
        claims.insert("acr".into(), json!(self.acr));
        claims.insert("amr".into(), json!(self.amr));
        claims.insert("auth_time".into(), json!(self.auth_time));
    }

    /// Where the tokens of this sign-in come from: its user, session and `grant` family (once a
    /// code was redeemed).
    pub fn lineage<'a>(&'a self, grant: Option<&'a str>) -> Lineage<'a> {
        Lineage {
            user: &self.user,
            auth_time: self.auth_time,
            sid: self.sid.as_deref(),
            grant,
        }
    }
}

/// What a browser's session proved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The signed-in user.
    pub user: String,
    /// Public session id (OIDC Front-Channel Logout §3 `sid`): put in ID tokens so an
    /// `id_token_hint` at end-session names this session, and in access tokens so that ending
    /// the session revokes them; unrelated to the cookie value.
    pub sid: String,
    /// When each factor was last proven (unix seconds).
    pub factors: BTreeMap<Factor, u64>,
    /// When the session ends (unix seconds).
    pub expires_at: u64,
}

impl Session {
    /// When the user last authenticated: the latest factor (OIDC Core §2 `auth_time`).
    pub fn auth_time(&self) -> u64 {
        self.factors.values().copied().max().unwrap_or(0)
    }

    /// Whether every factor in `needed` is proven.
    pub fn has(&self, needed: &[Factor]) -> bool {
        needed.iter().all(|f| self.factors.contains_key(f))
    }

    /// What the session proves for a token: the strongest configured `acr` it satisfies.
    pub fn authentication(&self, acr: &BTreeMap<String, Vec<Factor>>) -> Authentication {
        let level = acr
            .iter()
            .filter(|(_, f)| self.has(f))
            .max_by_key(|(_, f)| f.len())
            .map_or("pwd", |(name, _)| name.as_str());
        Authentication {
            user: self.user.clone(),
            sid: Some(self.sid.clone()),
            auth_time: self.auth_time(),
            acr: level.to_owned(),
            amr: self.factors.keys().map(|f| f.amr().to_owned()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels() -> BTreeMap<String, Vec<Factor>> {
        BTreeMap::from([
            ("pwd".into(), vec![Factor::Pwd]),
            ("mfa".into(), vec![Factor::Pwd, Factor::Otp]),
        ])
    }

    #[test]
    fn authentication_reports_the_strongest_level_met() {
        let mut s = Session {
            user: "alice".into(),
            sid: "s1".into(),
            factors: BTreeMap::from([(Factor::Pwd, 100)]),
            expires_at: 1000,
        };
        let a = s.authentication(&levels());
        assert_eq!(
            (a.acr.as_str(), a.amr.clone(), a.auth_time),
            ("pwd", vec!["pwd".to_owned()], 100)
        );
        s.factors.insert(Factor::Otp, 160);
        let a = s.authentication(&levels());
        assert_eq!(a.acr, "mfa");
        assert_eq!(a.amr, ["pwd", "otp"]);
        assert_eq!(a.auth_time, 160);
    }
}
