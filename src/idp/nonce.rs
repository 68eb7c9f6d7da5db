//! DPoP server nonces (RFC 9449 §8), stateless: a nonce is the number of the period it was
//! made in (`now / nonce_period`), sealed with the key every replica shares (the one sealing
//! pending sign-ins), so any replica accepts another's nonce and none keeps a list. A nonce is
//! accepted in its own period and the next one: between one and two periods after it was
//! handed out. One nonce is made per period and handed to everyone; what makes a proof fresh
//! is that it could not have been signed before the nonce existed.

use crate::http::cookie::Sealer;
use std::sync::Mutex;

/// Associated data of a sealed nonce: it opens as nothing else, and nothing else opens as it.
const PURPOSE: &str = "baton-idp-dpop-nonce";

/// The nonce of the current period, made once.
#[derive(Debug, Default)]
pub struct Nonces {
    current: Mutex<Option<(u64, String)>>,
}

impl Nonces {
    /// The nonce to hand out at `now`.
    pub fn current(&self, sealer: &Sealer, period: u64, now: u64) -> String {
        let n = now / period.max(1);
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match &*current {
            Some((made, nonce)) if *made == n => nonce.clone(),
            _ => {
                let nonce = sealer.seal(PURPOSE, &n.to_be_bytes());
                *current = Some((n, nonce.clone()));
                nonce
            }
        }
    }

    /// Whether `nonce` was made by a replica sharing `sealer` in this period or the last.
    pub fn accepts(sealer: &Sealer, period: u64, nonce: &str, now: u64) -> bool {
        let Some(plain) = sealer.open(PURPOSE, nonce) else {
            return false;
        };
        let Ok(bytes) = <[u8; 8]>::try_from(plain.as_slice()) else {
            return false;
        };
        let made = u64::from_be_bytes(bytes);
        let n = now / period.max(1);
        made == n || made.saturating_add(1) == n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_lives_for_its_period_and_the_next_at_every_replica_sharing_the_key() {
        let key = [7u8; 32];
        let (here, there) = (Sealer::new(Some(key)), Sealer::new(Some(key)));
        let nonces = Nonces::default();
        let n = nonces.current(&here, 60, 600);
        assert_eq!(nonces.current(&here, 60, 659), n, "one nonce per period");
        assert_ne!(nonces.current(&here, 60, 660), n, "a new one the next");
        for at in [600, 659, 660, 719] {
            assert!(Nonces::accepts(&there, 60, &n, at), "{at}");
        }
        for at in [599, 720, 10_000] {
            assert!(!Nonces::accepts(&there, 60, &n, at), "{at}");
        }
        assert!(!Nonces::accepts(&Sealer::new(None), 60, &n, 600));
        assert!(!Nonces::accepts(&here, 60, "not-a-nonce", 600));
        // A value sealed for another purpose is no nonce.
        let other = here.seal("baton-idp-pending", &10u64.to_be_bytes());
        assert!(!Nonces::accepts(&here, 60, &other, 600));
    }
}
