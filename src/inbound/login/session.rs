//! Server-side browser sessions of the edge login: a bounded moka cache with a TTL, keyed by a
//! random id that only travels sealed inside the session cookie. Each session sits behind an
//! async mutex so concurrent requests make one refresh (the IdP rotates refresh tokens and may
//! treat a reused one as theft).

use crate::secret::Token;
use moka::sync::Cache;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// A session id: 32 random bytes.
pub type SessionId = [u8; 32];

/// The tokens of one signed-in browser.
#[derive(Debug)]
pub struct Session {
    /// The access token the app receives as `Authorization: Bearer`.
    pub access: Token,
    /// Its `exp`.
    pub access_exp: u64,
    /// The ID token: `id_token_hint` for step-up and logout.
    pub id_token: Token,
    /// The refresh token, when the IdP issued one.
    pub refresh: Option<Token>,
    /// The step-up challenge this session was last signed in for, and when: the same challenge
    /// again within [`STEP_UP_WINDOW`] is shown to the browser instead of looping.
    pub stepped: Option<(String, u64)>,
}

/// How long after a step-up the same challenge is answered with the app's 401 (loop bound).
pub const STEP_UP_WINDOW: u64 = 120;

impl Session {
    /// True when the access token must be refreshed before use: it expires within `skew`.
    pub fn needs_refresh(&self, now: u64, skew: u64) -> bool {
        self.access_exp <= now.saturating_add(skew)
    }

    /// True when `key` was stepped up for just now: stepping up again would loop.
    pub fn just_stepped(&self, key: &str, now: u64) -> bool {
        self.stepped
            .as_ref()
            .is_some_and(|(k, at)| k == key && now.saturating_sub(*at) <= STEP_UP_WINDOW)
    }
}

/// The session store.
pub struct Sessions {
    cache: Cache<SessionId, Arc<Mutex<Session>>>,
}

impl Sessions {
    /// At most `capacity` sessions, each dropped `ttl` after sign-in.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// Stores `session` under a fresh random id.
    pub fn insert(&self, session: Session) -> SessionId {
        let id: SessionId = crate::secret::random();
        self.cache.insert(id, Arc::new(Mutex::new(session)));
        id
    }

    /// The session `id` names, if it is still alive.
    pub fn get(&self, id: &SessionId) -> Option<Arc<Mutex<Session>>> {
        self.cache.get(id)
    }

    /// Ends session `id`.
    pub fn remove(&self, id: &SessionId) -> Option<Arc<Mutex<Session>>> {
        self.cache.remove(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(exp: u64) -> Session {
        Session {
            access: Token::new("a"),
            access_exp: exp,
            id_token: Token::new("i"),
            refresh: None,
            stepped: None,
        }
    }

    #[test]
    fn refresh_is_due_within_the_skew_before_exp() {
        let s = session(1_000);
        assert!(!s.needs_refresh(900, 30));
        assert!(s.needs_refresh(970, 30));
        assert!(s.needs_refresh(2_000, 30));
    }

    #[test]
    fn the_same_challenge_is_not_stepped_up_twice_in_a_row() {
        let mut s = session(1_000);
        assert!(!s.just_stepped("acr=mfa;max_age=", 100));
        s.stepped = Some(("acr=mfa;max_age=".into(), 100));
        assert!(s.just_stepped("acr=mfa;max_age=", 150));
        assert!(!s.just_stepped("acr=gold;max_age=", 150));
        assert!(!s.just_stepped("acr=mfa;max_age=", 100 + STEP_UP_WINDOW + 1));
    }

    #[test]
    fn sessions_are_found_by_id_and_removed() {
        let store = Sessions::new(10, Duration::from_secs(60));
        let id = store.insert(session(1));
        assert!(store.get(&id).is_some());
        assert!(store.get(&[0; 32]).is_none());
        assert!(store.remove(&id).is_some());
        assert!(store.get(&id).is_none());
    }
}
