//! Password checks on a small pool of threads. argon2 is memory-hard on purpose (19 MiB per check
//! with the parameters `baton-idp hash-password` uses), so unbounded concurrent checks are a
//! memory attack: the pool runs at most `workers` at once, each in one buffer it keeps, and
//! lets at most `queue` sign-ins wait; the rest are told to come back ([`Busy`]). Hashing
//! therefore never holds more than `workers × m` however many sign-ins arrive.
//!
//! An unknown username is checked against a hash with the parameters of the most expensive
//! configured one, in the same pool, so its answer takes as long as a real user's.

use crate::secret::Secret;
use argon2::password_hash::{Output, PasswordHash, Salt};
use argon2::{Argon2, Block, Params, PasswordHasher, Version};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The pool is full: the sign-in should be retried in a moment (503 with `Retry-After`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password checks busy")]
pub struct Busy;

/// Checks `password` against an argon2 PHC string (allocating; for tools and tests).
pub fn password_ok(phc: &str, password: &str) -> bool {
    verify(phc, password, &mut Vec::new())
}

/// Hashes a password for `users[].password_hash` (argon2id, random salt, default parameters).
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::password_hash::SaltString;
    let mut bytes = [0u8; Salt::RECOMMENDED_LENGTH];
    crate::secret::fill(&mut bytes);
    let salt = SaltString::encode_b64(&bytes)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Checks `password` against `phc` with `blocks` as argon2's memory (grown when too small, then
/// reused): the same result as the `argon2` crate's verifier, without an allocation per check.
fn verify(phc: &str, password: &str, blocks: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let (Ok(params), Ok(algorithm)) = (
        Params::try_from(&hash),
        argon2::Algorithm::try_from(hash.algorithm),
    ) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let need = params.block_count();
    if blocks.len() < need {
        blocks.resize(need, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut blocks[..need])
        .is_ok()
        // `Output` compares in constant time.
        && Output::new(&out).is_ok_and(|o| o == expected)
}

/// A PHC string with the parameters of the most memory-hungry of `hashes` (argon2's defaults
/// when there is none), a fixed salt and an output no password produces in practice.
fn decoy(hashes: &[&str]) -> String {
    let cost = |h: &PasswordHash| Params::try_from(h).map_or(0, |p| p.block_count());
    let parsed: Vec<PasswordHash> = hashes
        .iter()
        .filter_map(|h| PasswordHash::new(h).ok())
        .collect();
    let salt = Salt::from_b64("ZGVjb3lzYWx0ZGVjb3lzYWx0").expect("a valid salt");
    match parsed.into_iter().max_by_key(cost) {
        Some(mut h) => {
            let len = h.hash.map_or(32, |o| o.len());
            h.salt = Some(salt);
            h.hash = Output::new(&vec![0u8; len]).ok();
            h.to_string()
        }
        None => Argon2::default()
            .hash_password(b"decoy", salt)
            .map(|h| h.to_string())
            .unwrap_or_default(),
    }
}

struct Job {
    phc: Arc<str>,
    password: Secret,
    reply: oneshot::Sender<bool>,
}

/// The pool: `workers` threads fed through a queue of `queue` places.
pub struct Checker {
    jobs: SyncSender<Job>,
    decoy: Arc<str>,
    workers: usize,
    memory: usize,
}

impl Checker {
    /// Starts `workers` threads (at least one) for the configured `hashes`; they stop when the
    /// checker is dropped.
    pub fn new(hashes: &[&str], workers: usize, queue: usize) -> Checker {
        let workers = workers.max(1);
        let (jobs, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("password-{i}"))
                .spawn(move || work(&rx))
                .expect("the OS starts a thread at start-up");
        }
        let decoy: Arc<str> = decoy(hashes).into();
        // The decoy has the largest `m` of all: it bounds every worker's buffer.
        let memory = PasswordHash::new(&decoy)
            .ok()
            .and_then(|h| Params::try_from(&h).ok())
            .map_or(0, |p| p.block_count() * Block::SIZE);
        Checker {
            jobs,
            decoy,
            workers,
            memory,
        }
    }

    /// The most memory password checks hold at once, in bytes: workers × the largest hash's `m`.
    pub fn memory_bound(&self) -> usize {
        self.workers * self.memory
    }

    /// Checks `password` against `phc`, or against the decoy when the user is unknown (then the
    /// answer is always `false`). [`Busy`] when the queue is full.
    pub async fn check(&self, phc: Option<&Secret>, password: &str) -> Result<bool, Busy> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            phc: phc.map_or_else(|| self.decoy.clone(), |p| p.expose().into()),
            password: Secret::new(password.to_owned()),
            reply,
        };
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => return Err(Busy),
        }
        let ok = answer.await.map_err(|_| Busy)?;
        Ok(ok && phc.is_some())
    }
}

fn work(jobs: &Mutex<Receiver<Job>>) {
    let mut blocks = Vec::new();
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        let Ok(job) = job else {
            return;
        };
        let ok = verify(&job.phc, job.password.expose(), &mut blocks);
        let _ = job.reply.send(ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "$argon2id$v=19$m=19456,t=2,p=1$r+5TdXsBB9POuvffwWAHTQ$NTuHHT2TSdubsihZXpTDWDmoInOKlgMu5mgjKpzyKj8";
    const SMALL: &str = "$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$";

    fn small(password: &str) -> String {
        let params = Params::new(64, 1, 1, None).expect("params");
        let salt =
            argon2::password_hash::SaltString::from_b64("c29tZXNhbHRzb21lc2FsdA").expect("salt");
        Argon2::new(argon2::Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(password.as_bytes(), &salt)
            .expect("hash")
            .to_string()
    }

    #[test]
    fn verify_agrees_with_the_argon2_verifier_and_reuses_its_buffer() {
        let mut blocks = Vec::new();
        assert!(verify(ALICE, "wonderland-demo", &mut blocks));
        assert_eq!(blocks.len(), 19_456);
        assert!(!verify(ALICE, "wonderland-dem0", &mut blocks));
        assert_eq!(blocks.len(), 19_456, "the buffer is reused, not grown");
        let h = small("pw");
        assert!(verify(&h, "pw", &mut blocks) && !verify(&h, "pW", &mut blocks));
        assert!(!verify(SMALL, "pw", &mut blocks), "no output");
        assert!(!verify("not a hash", "pw", &mut blocks));
        assert!(password_ok(&hash_password("x").expect("hash"), "x"));
    }

    #[test]
    fn the_decoy_costs_what_the_most_expensive_user_costs() {
        let d = decoy(&[&small("a"), ALICE]);
        let h = PasswordHash::new(&d).expect("phc");
        let p = Params::try_from(&h).expect("params");
        assert_eq!((p.m_cost(), p.t_cost(), p.p_cost()), (19_456, 2, 1));
        assert!(!password_ok(&d, "wonderland-demo"));
        assert!(PasswordHash::new(&decoy(&[])).is_ok());
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once() {
        let c = Checker::new(&[ALICE], 1, 1);
        assert_eq!(c.memory_bound(), 19_456 * 1024);
        let alice = Secret::new(ALICE.to_owned());
        let checks: Vec<_> = (0..8).map(|_| c.check(Some(&alice), "wrong")).collect();
        let results = futures::future::join_all(checks).await;
        let busy = results.iter().filter(|r| **r == Err(Busy)).count();
        assert!(busy >= 6, "one running, one waiting at most: {results:?}");
        assert_eq!(c.check(Some(&alice), "wonderland-demo").await, Ok(true));
        assert_eq!(c.check(None, "wonderland-demo").await, Ok(false));
    }
}
