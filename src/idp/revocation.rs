//! Revocation by lineage. Every user token names what it descends from: the login session
//! (`sid`) and the grant (`grant_id`: one authorization code and the refresh tokens rotated
//! from it). Token exchange copies both unchanged, so an exchanged token, and an exchange of
//! it, names the same roots as the token the user signed in with.
//!
//! Ending a session revokes its `sid`; a refresh token's reuse (RFC 9700 §4.14.2) or a code's
//! replay (RFC 6749 §4.1.2) revokes the `grant_id`. A token naming a revoked root is inactive at
//! introspection and `/userinfo`, refused as a `subject_token` or `actor_token` (RFC 8693
//! §2.2.2 `invalid_request`), and its refresh tokens stop working.
//!
//! Every token of a lineage expires by its `auth_time` + `lifetimes.sign_in` (refresh and
//! exchange never reach past it), so a revocation is kept until then and forgotten after.
//! [`Revocations`] is the store's interface; [`Memory`] keeps it in the process, at most
//! [`PER_USER`] records per user: past that a user's oldest record is folded into a per-user
//! watermark that revokes everything of theirs signed in before it (fail closed, and only for
//! the user who made the records).

use crate::jwt::Claims;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The claim naming the login session a token descends from (also in ID tokens).
pub const SID: &str = "sid";
/// The claim naming the grant (authorization code and its refresh chain) a token descends from.
pub const GRANT_ID: &str = "grant_id";

/// Revocation records the in-memory store keeps per user before folding the oldest into the
/// user's watermark.
pub const PER_USER: usize = 256;

/// What a revocation names: every token descending from it is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root<'a> {
    /// A login session, by its public `sid`.
    Session(&'a str),
    /// A grant family, by its `grant_id`.
    Grant(&'a str),
}

/// Where a token (or a refresh grant, or a code) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lineage<'a> {
    /// The user (`sub`).
    pub user: &'a str,
    /// When the user signed in (`auth_time`).
    pub auth_time: u64,
    /// The login session, when known.
    pub sid: Option<&'a str>,
    /// The grant family, once a code was redeemed.
    pub grant: Option<&'a str>,
}

impl<'a> Lineage<'a> {
    /// The lineage a user token's claims name; `None` for a token that is not a user's
    /// (`client_credentials`: no `auth_time`), which no sign-in can revoke.
    pub fn of(claims: &'a Claims) -> Option<Self> {
        let auth_time = claims.get("auth_time").and_then(Value::as_u64)?;
        Some(Lineage {
            user: claims.get("sub").and_then(Value::as_str)?,
            auth_time,
            sid: claims.get(SID).and_then(Value::as_str),
            grant: claims.get(GRANT_ID).and_then(Value::as_str),
        })
    }
}

/// A store of revocations. Implementations must keep a record at least until `auth_time` +
/// the keep period they were built with, and may forget it after.
pub trait Revocations: Send + Sync {
    /// Revokes every token descending from `root`, which belongs to `user` who signed in at
    /// `auth_time` (the latest sign-in of any token it covers).
    fn revoke(&self, user: &str, root: Root<'_>, auth_time: u64, now: u64);
    /// Whether anything `lineage` names is revoked.
    fn is_revoked(&self, lineage: &Lineage<'_>, now: u64) -> bool;
}

// === impl Memory ===

/// The in-process [`Revocations`] store.
pub struct Memory {
    /// Seconds a record is kept past its `auth_time`.
    keep: u64,
    per_user: usize,
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Revoked roots → the `auth_time` their record is kept from.
    sessions: HashMap<String, u64>,
    grants: HashMap<String, u64>,
    users: HashMap<String, User>,
    /// Revocations since the last sweep of every user.
    since_sweep: usize,
}

#[derive(Default)]
struct User {
    /// This user's records: (`auth_time`, root is a session, id).
    records: Vec<(u64, bool, String)>,
    /// Everything of this user signed in at or before this time is revoked.
    watermark: Option<u64>,
}

/// Sweep every user's expired records after this many revocations.
const SWEEP_EVERY: usize = 1024;

impl Memory {
    /// A store keeping each record `keep` seconds past its `auth_time` (`lifetimes.sign_in`
    /// plus the verification leeway) and at most `per_user` records per user.
    pub fn new(keep: u64, per_user: usize) -> Self {
        Self {
            keep,
            per_user: per_user.max(1),
            inner: RwLock::default(),
        }
    }

    /// Records held (sessions and grants), for tests of the bound.
    pub fn len(&self) -> usize {
        let g = self.read();
        g.sessions.len() + g.grants.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn live(&self, auth_time: u64, now: u64) -> bool {
        auth_time.saturating_add(self.keep) > now
    }
}

impl Inner {
    fn map(&mut self, session: bool) -> &mut HashMap<String, u64> {
        if session {
            &mut self.sessions
        } else {
            &mut self.grants
        }
    }

    /// Drops `user`'s records for which `keep` says no, from the user and the maps.
    fn retain(&mut self, user: &str, keep: impl Fn(u64) -> bool) {
        let Some(u) = self.users.get_mut(user) else {
            return;
        };
        let mut dropped = Vec::new();
        u.records.retain(|(at, session, id)| {
            let kept = keep(*at);
            if !kept {
                dropped.push((*session, id.clone()));
            }
            kept
        });
        for (session, id) in dropped {
            self.map(session).remove(&id);
        }
    }
}

impl Memory {
    /// Drops expired records: every user's after each [`SWEEP_EVERY`] revocations, else
    /// `user`'s alone.
    fn sweep(&self, g: &mut Inner, user: &str, now: u64) {
        g.since_sweep += 1;
        if g.since_sweep < SWEEP_EVERY {
            g.retain(user, |at| self.live(at, now));
            return;
        }
        g.since_sweep = 0;
        let users: Vec<String> = g.users.keys().cloned().collect();
        for u in &users {
            g.retain(u, |at| self.live(at, now));
        }
        g.users.retain(|_, u| {
            u.watermark = u.watermark.filter(|w| self.live(*w, now));
            !u.records.is_empty() || u.watermark.is_some()
        });
    }
}

impl Inner {
    /// When `id` was revoked before, keeps its record from the later of the two `auth_time`s;
    /// whether it was.
    fn extend(&mut self, user: &str, session: bool, id: &str, auth_time: u64) -> bool {
        let Some(at) = self.map(session).get_mut(id) else {
            return false;
        };
        *at = (*at).max(auth_time);
        let at = *at;
        if let Some(r) = self
            .users
            .get_mut(user)
            .and_then(|u| u.records.iter_mut().find(|r| r.1 == session && r.2 == id))
        {
            r.0 = at;
        }
        true
    }

    /// Folds `user`'s oldest record into their watermark: what it covered stays revoked.
    fn fold_oldest(&mut self, user: &str, otherwise: u64) {
        let oldest = self
            .users
            .get(user)
            .and_then(|u| u.records.iter().map(|r| r.0).min())
            .unwrap_or(otherwise);
        self.retain(user, |at| at > oldest);
        let u = self.users.entry(user.to_owned()).or_default();
        u.watermark = Some(u.watermark.map_or(oldest, |w| w.max(oldest)));
    }
}

impl Revocations for Memory {
    fn revoke(&self, user: &str, root: Root<'_>, auth_time: u64, now: u64) {
        let (session, id) = match root {
            Root::Session(id) => (true, id),
            Root::Grant(id) => (false, id),
        };
        let mut g = self.write();
        self.sweep(&mut g, user, now);
        if g.extend(user, session, id, auth_time) {
            return;
        }
        let full = g
            .users
            .get(user)
            .is_some_and(|u| u.records.len() >= self.per_user);
        if full {
            g.fold_oldest(user, auth_time);
            // No user name in the log: the sign-in logs do not carry one either.
            tracing::warn!(
                per_user = self.per_user,
                "a user's revocation records exceeded: their older sign-ins revoked as a whole"
            );
        }
        g.map(session).insert(id.to_owned(), auth_time);
        g.users.entry(user.to_owned()).or_default().records.push((
            auth_time,
            session,
            id.to_owned(),
        ));
    }

    fn is_revoked(&self, l: &Lineage<'_>, now: u64) -> bool {
        let g = self.read();
        if g.sessions.is_empty() && g.grants.is_empty() && g.users.is_empty() {
            return false;
        }
        let named = |map: &HashMap<String, u64>, id: Option<&str>| {
            id.and_then(|id| map.get(id))
                .is_some_and(|at| self.live(*at, now))
        };
        named(&g.sessions, l.sid)
            || named(&g.grants, l.grant)
            || g.users
                .get(l.user)
                .and_then(|u| u.watermark)
                .is_some_and(|w| l.auth_time <= w && self.live(w, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lineage<'a>(sid: &'a str, grant: &'a str, auth_time: u64) -> Lineage<'a> {
        Lineage {
            user: "alice",
            auth_time,
            sid: Some(sid),
            grant: Some(grant),
        }
    }

    #[test]
    fn a_revoked_session_or_grant_revokes_what_names_it_and_nothing_else() {
        let m = Memory::new(1000, 8);
        m.revoke("alice", Root::Session("s1"), 100, 100);
        m.revoke("alice", Root::Grant("g2"), 100, 100);
        assert!(m.is_revoked(&lineage("s1", "g1", 100), 150));
        assert!(m.is_revoked(&lineage("s2", "g2", 100), 150));
        assert!(!m.is_revoked(&lineage("s2", "g1", 100), 150));
        // The session id is not a grant id: the namespaces are apart.
        assert!(!m.is_revoked(&lineage("g2", "s1", 100), 150));
    }

    #[test]
    fn records_expire_when_every_token_they_cover_has() {
        let m = Memory::new(1000, 8);
        m.revoke("alice", Root::Session("s1"), 100, 100);
        assert!(m.is_revoked(&lineage("s1", "g", 100), 1099));
        assert!(!m.is_revoked(&lineage("s1", "g", 100), 1100));
        // The next revocation of the same user sweeps it out.
        m.revoke("alice", Root::Session("s2"), 1100, 1100);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn a_later_sign_in_extends_the_record_of_a_root_revoked_twice() {
        let m = Memory::new(1000, 8);
        m.revoke("alice", Root::Session("s1"), 100, 100);
        m.revoke("alice", Root::Session("s1"), 500, 500);
        assert_eq!(m.len(), 1);
        assert!(m.is_revoked(&lineage("s1", "g", 500), 1400));
    }

    #[test]
    fn past_the_per_user_bound_the_oldest_fold_into_a_watermark_that_stays_closed() {
        let m = Memory::new(10_000, 4);
        for i in 0..4u64 {
            m.revoke("mallory", Root::Session(&format!("m{i}")), 100 + i, 200);
        }
        m.revoke("alice", Root::Session("a0"), 100, 200);
        for i in 4..40u64 {
            m.revoke("mallory", Root::Session(&format!("m{i}")), 100 + i, 200);
        }
        assert!(m.len() <= 4 + 1, "bounded per user: {}", m.len());
        let sids: Vec<String> = (0..40).map(|i| format!("m{i}")).collect();
        fn mallory(sid: &str, auth_time: u64) -> Lineage<'_> {
            Lineage {
                user: "mallory",
                auth_time,
                sid: Some(sid),
                grant: None,
            }
        }
        // Every session revoked is still revoked: the folded ones through the watermark.
        assert!((0..40u64).all(|i| m.is_revoked(&mallory(&sids[i as usize], 100 + i), 300)));
        // A later sign-in of that user is not, nor anything of another user.
        assert!(!m.is_revoked(&mallory("fresh", 200), 300));
        assert!(m.is_revoked(&lineage("a0", "g", 100), 300));
        assert!(!m.is_revoked(&lineage("a1", "g", 50), 300));
    }

    #[test]
    fn a_token_without_auth_time_has_no_lineage() {
        let claims: Claims =
            serde_json::from_str(r#"{"sub":"service-a","sid":"s1"}"#).expect("json");
        assert_eq!(Lineage::of(&claims), None);
        let claims: Claims =
            serde_json::from_str(r#"{"sub":"alice","auth_time":5,"sid":"s1","grant_id":"g1"}"#)
                .expect("json");
        assert_eq!(Lineage::of(&claims), Some(lineage("s1", "g1", 5)));
    }
}
