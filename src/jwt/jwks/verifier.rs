//! [`Verifier`]: access-token verification against the [`Jwks`], with successful verifications
//! cached by token SHA-256 until `exp` (a repeated token costs a hash and a lookup, not a
//! signature check).

use super::{Jwks, header_kid};
use crate::jwt::foreign::Profile;
use crate::jwt::keys::KeySet;
use crate::jwt::{Rules, Verified, VerifyError, unix_now, verify};
use crate::secret::{Token, constant_time_eq};
use crate::telemetry::{Metrics, Outcome};
use moka::sync::Cache;
use prometheus_client::metrics::counter::Counter;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyFailure {
    /// The token is bad (RFC 6750 `invalid_token`).
    #[error(transparent)]
    Token(#[from] VerifyError),
    /// No usable keys: never loaded, or stale beyond the window (the IdP is at fault → 503).
    #[error("issuer signing keys unavailable")]
    KeysUnavailable,
}

/// Verifies access tokens against the [`Jwks`], caching successes by token SHA-256 until `exp`.
pub struct Verifier {
    jwks: Arc<Jwks>,
    rules: Rules,
    /// A foreign issuer's audiences and claim mappings, applied before a verification is cached.
    profile: Option<Profile>,
    cache: Cache<[u8; 32], Arc<Verified>>,
    metrics: Arc<Metrics>,
    /// `verify_cache{outcome=hit|miss}`, looked up once: a hit costs no label hashing.
    hits: Counter,
    misses: Counter,
}

struct UntilExp;

impl moka::Expiry<[u8; 32], Arc<Verified>> for UntilExp {
    fn expire_after_create(&self, _: &[u8; 32], v: &Arc<Verified>, _: Instant) -> Option<Duration> {
        Some(Duration::from_secs(v.exp.saturating_sub(unix_now())))
    }
}

impl Verifier {
    /// A verifier for `rules` (issuer, audience, algorithms, leeway) holding at most
    /// `capacity` verified tokens.
    pub fn new(jwks: Arc<Jwks>, rules: Rules, capacity: u64, metrics: Arc<Metrics>) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .expire_after(UntilExp)
            .build();
        let counter = |outcome| {
            metrics
                .verify_cache
                .get_or_create(&Outcome { outcome })
                .clone()
        };
        let (hits, misses) = (counter("hit"), counter("miss"));
        Self {
            jwks,
            rules,
            profile: None,
            cache,
            metrics,
            hits,
            misses,
        }
    }

    /// A verifier of a foreign issuer's tokens: after `rules` (whose `audience` should be
    /// `None`), `profile`'s accepted audiences, and its claim mappings reshape the claims
    /// ([`crate::jwt::foreign`]).
    pub fn with_profile(mut self, profile: Profile) -> Self {
        self.profile = Some(profile);
        self
    }

    /// The key set this verifier uses.
    pub fn jwks(&self) -> &Arc<Jwks> {
        &self.jwks
    }

    /// The rules tokens are checked against.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Verifies an access token (RFC 9068 §4). A token verified before and not yet expired costs a
    /// hash and a lookup. An unknown `kid` triggers [`Jwks::refetch_for`] and one more attempt.
    pub async fn verify(&self, token: &Token) -> Result<Arc<Verified>, VerifyFailure> {
        let now = unix_now();
        let hash = token.sha256();
        let keys = self.jwks.keys().ok_or(VerifyFailure::KeysUnavailable)?;
        if let Some(hit) = self.cache.get(&hash)
            && still_valid(&hit, &keys, now)
        {
            self.hits.inc();
            return Ok(hit);
        }
        self.misses.inc();
        let verified = match self.timed(token, &keys, now) {
            Err(VerifyError::UnknownKid) => {
                // A token of another issuer fetches none of this one's keys.
                match crate::jwt::peek_issuer(token.expose(), self.rules.max_len) {
                    Ok(iss) if iss == self.rules.issuer => {}
                    Ok(_) => return Err(VerifyFailure::Token(VerifyError::Issuer)),
                    Err(e) => return Err(VerifyFailure::Token(e)),
                }
                let kid = header_kid(token.expose());
                // Boxed: this cold path would otherwise size every request's future.
                let keys = Box::pin(self.jwks.refetch_for(kid.as_deref()))
                    .await
                    .ok_or(VerifyFailure::KeysUnavailable)?;
                self.timed(token, &keys, unix_now())?
            }
            other => other?,
        };
        let verified = match &self.profile {
            Some(p) => {
                let mut v = verified;
                v.claims = p.apply(std::mem::take(&mut v.claims))?;
                v
            }
            None => verified,
        };
        let verified = Arc::new(verified);
        self.cache.insert(hash, verified.clone());
        Ok(verified)
    }

    /// [`Verifier::verify`], then `last` remembers the verification: for a token that
    /// [`Verifier::remembered`] has just not found there.
    pub async fn verify_remember(
        &self,
        token: &Token,
        last: &LastToken,
    ) -> Result<Arc<Verified>, VerifyFailure> {
        let verified = self.verify(token).await?;
        last.set(token, &verified);
        Ok(verified)
    }

    /// The verification `last` remembers, if `presented` is the very token it was made for and
    /// it still holds at `now` as a cache hit would: not expired, its key still published.
    /// `presented` need not have been parsed: it is only compared, in constant time, with a token
    /// that was.
    pub fn remembered(
        &self,
        presented: &[u8],
        last: &LastToken,
        now: u64,
    ) -> Option<Arc<Verified>> {
        let hit = last.get(presented, now, || self.jwks.keys())?;
        self.hits.inc();
        Some(hit)
    }

    fn timed(&self, token: &Token, keys: &KeySet, now: u64) -> Result<Verified, VerifyError> {
        let start = Instant::now();
        let r = verify(token.expose(), keys, &self.rules, now);
        self.metrics
            .verify_latency
            .observe(start.elapsed().as_secs_f64(), crate::telemetry::exemplar());
        r
    }
}

/// Whether a verification made earlier still holds: not expired, and its key still published (a
/// key withdrawn from the JWKS takes its tokens with it).
fn still_valid(v: &Verified, keys: &KeySet, now: u64) -> bool {
    v.exp > now && keys.contains(&v.kid)
}

/// The last token one connection presented and its verification ([`Verifier::remembered`]). The
/// presented token is compared with it in constant time, so a connection shared by several
/// callers learns nothing of another's token from the time a request takes.
#[derive(Default)]
pub struct LastToken(Mutex<Option<Remembered>>);

struct Remembered {
    token: Token,
    verified: Arc<Verified>,
    /// The key set last seen to publish the token's key. A key set is never changed in place (a
    /// refresh replaces the `Arc`), so while the JWKS hands out this same one, the key is still
    /// in it and needs no lookup. Holding the `Arc` here also keeps its address from being
    /// reused by a later set, so the pointer compare cannot mistake one for the other.
    keys: Option<Arc<KeySet>>,
}

impl LastToken {
    /// The remembered verification of `presented` if it holds at `now` against the key set
    /// `keys` gives (asked only once the token matches).
    fn get(
        &self,
        presented: &[u8],
        now: u64,
        keys: impl FnOnce() -> Option<Arc<KeySet>>,
    ) -> Option<Arc<Verified>> {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let r = last.as_mut()?;
        if !constant_time_eq(r.token.expose().as_bytes(), presented) || r.verified.exp <= now {
            return None;
        }
        let keys = keys()?;
        if !r.keys.as_ref().is_some_and(|seen| Arc::ptr_eq(seen, &keys)) {
            if !still_valid(&r.verified, &keys, now) {
                return None;
            }
            r.keys = Some(keys);
        }
        Some(r.verified.clone())
    }

    fn set(&self, token: &Token, verified: &Arc<Verified>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Remembered {
            token: token.clone(),
            verified: verified.clone(),
            keys: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::Algorithm;
    use crate::jwt::keys::SigningKey;
    use serde_json::json;

    fn setup() -> (SigningKey, Verifier, Arc<Metrics>) {
        let key = SigningKey::generate(Algorithm::ES256).expect("key");
        let metrics = Arc::new(Metrics::new());
        let jwks = Jwks::fixed(KeySet::from_signing_keys([&key]), metrics.clone());
        let rules = Rules::access("https://idp.example", "service-b");
        (
            key,
            Verifier::new(jwks, rules, 100, metrics.clone()),
            metrics,
        )
    }

    fn token(key: &SigningKey, exp_in: i64) -> Token {
        let now = unix_now() as i64;
        let claims = json!({"iss": "https://idp.example", "aud": "service-b", "sub": "a",
                            "iat": now - 100, "exp": now + exp_in});
        Token::new(key.sign("at+jwt", &claims).expect("sign"))
    }

    fn count(m: &Metrics, outcome: &'static str) -> u64 {
        m.verify_cache.get_or_create(&Outcome { outcome }).get()
    }

    #[tokio::test]
    async fn a_repeated_token_is_served_from_the_cache() {
        let (key, v, m) = setup();
        let t = token(&key, 300);
        let first = v.verify(&t).await.expect("valid");
        let second = v.verify(&t).await.expect("valid");
        assert!(
            Arc::ptr_eq(&first, &second),
            "the second answer is the cached one"
        );
        assert_eq!((count(&m, "miss"), count(&m, "hit")), (1, 1));
    }

    fn token_for(key: &SigningKey, sub: &str) -> Token {
        let now = unix_now() as i64;
        let claims = json!({"iss": "https://idp.example", "aud": "service-b", "sub": sub,
                            "iat": now - 100, "exp": now + 300});
        Token::new(key.sign("at+jwt", &claims).expect("sign"))
    }

    /// What the inbound listener does with a connection's token: the remembered verification,
    /// else a verification that the connection then remembers.
    async fn verify_on(
        v: &Verifier,
        token: &Token,
        last: &LastToken,
    ) -> Result<Arc<Verified>, VerifyFailure> {
        match v.remembered(token.expose().as_bytes(), last, unix_now()) {
            Some(hit) => Ok(hit),
            None => v.verify_remember(token, last).await,
        }
    }

    #[tokio::test]
    async fn a_connection_repeating_its_token_skips_the_cache_and_never_gets_anothers() {
        let (key, v, m) = setup();
        let last = LastToken::default();
        let (alice, bob) = (token_for(&key, "alice"), token_for(&key, "bob"));
        let first = verify_on(&v, &alice, &last).await.expect("valid");
        let again = verify_on(&v, &alice, &last).await.expect("valid");
        assert!(Arc::ptr_eq(&first, &again), "the remembered verification");
        assert_eq!((count(&m, "miss"), count(&m, "hit")), (1, 1));
        // Another caller on the same connection gets its own verification, then the first again.
        for (token, sub) in [(&bob, "bob"), (&alice, "alice"), (&bob, "bob")] {
            let got = verify_on(&v, token, &last).await.expect("valid");
            assert_eq!(got.claims.get("sub"), Some(&json!(sub)));
        }
        let stranger = SigningKey::generate(Algorithm::ES256).expect("key");
        let forged = token_for(&stranger, "alice");
        assert!(verify_on(&v, &forged, &last).await.is_err());
    }

    #[tokio::test]
    async fn a_remembered_verification_ends_at_its_exp() {
        let (key, v, _) = setup();
        let last = LastToken::default();
        let t = token(&key, 300);
        let first = verify_on(&v, &t, &last).await.expect("valid");
        let presented = t.expose().as_bytes();
        assert!(v.remembered(presented, &last, first.exp - 1).is_some());
        assert!(v.remembered(presented, &last, first.exp).is_none());
    }

    #[tokio::test]
    async fn a_remembered_verification_ends_with_its_key() {
        let (key, v, _) = setup();
        let last = LastToken::default();
        let t = token(&key, 300);
        // Twice: the second time the connection also remembers the key set that holds the key.
        verify_on(&v, &t, &last).await.expect("valid");
        verify_on(&v, &t, &last).await.expect("valid");
        // The same connection state seen by a verifier whose key set no longer has the key.
        let metrics = Arc::new(Metrics::new());
        let rotated = SigningKey::generate(Algorithm::ES256).expect("key");
        let jwks = Jwks::fixed(KeySet::from_signing_keys([&rotated]), metrics.clone());
        let after = Verifier::new(jwks, v.rules().clone(), 100, metrics);
        assert_eq!(
            verify_on(&after, &t, &last).await.err(),
            Some(VerifyFailure::Token(VerifyError::UnknownKid))
        );
    }

    #[tokio::test]
    async fn failures_are_not_cached_and_an_unknown_kid_is_refused() {
        let (key, v, m) = setup();
        let expired = token(&key, -120);
        for _ in 0..2 {
            assert_eq!(
                v.verify(&expired).await.err(),
                Some(VerifyFailure::Token(VerifyError::Expired))
            );
        }
        assert_eq!(count(&m, "hit"), 0);
        let stranger = SigningKey::generate(Algorithm::ES256).expect("key");
        assert_eq!(
            v.verify(&token(&stranger, 300)).await.err(),
            Some(VerifyFailure::Token(VerifyError::UnknownKid))
        );
    }
}
