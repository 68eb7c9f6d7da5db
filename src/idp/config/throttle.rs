//! The login throttle's rules as the configuration holds them: how each kind of counter
//! throttles ([`Rule`]) and how many counters each store keeps ([`Limits`]). The policy that
//! applies them is [`crate::idp::throttle`].

/// How one kind of counter throttles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Consecutive failures allowed without waiting.
    pub free: u32,
    /// The wait after the first failure past `free`, in seconds; it doubles with each failure.
    pub first_wait: u64,
    /// The longest wait, in seconds.
    pub max_wait: u64,
    /// A counter is forgotten this many seconds after its last failure.
    pub forget_after: u64,
}

impl Rule {
    /// Seconds that must pass after the last of `failures` consecutive failures before the next
    /// attempt is checked: 0 within the free attempts, then `first_wait · 2^k`, capped.
    pub fn wait(&self, failures: u32) -> u64 {
        let Some(past) = failures.checked_sub(self.free) else {
            return 0;
        };
        let doubled = self.first_wait.saturating_mul(1u64 << past.min(62));
        doubled.min(self.max_wait)
    }
}

/// The counters' rules and store sizes. The defaults are what `baton-idp` runs with; tests
/// change them through `Config::login`. A counter costs about 320 bytes in memory, so each
/// store of 10,000 holds at most about 3.2 MB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Per account and factor, for browsers the user never signed in from (unknown usernames
    /// too, in their own store).
    pub account: Rule,
    /// Per trusted browser (device cookie) and factor.
    pub device: Rule,
    /// Per client network (an IPv4 address, an IPv6 /64), all accounts and factors together.
    pub network: Rule,
    /// Most counters kept for usernames that are not configured.
    pub unknown_entries: u64,
    /// Most counters kept for trusted browsers.
    pub device_entries: u64,
    /// Most counters kept for networks.
    pub network_entries: u64,
}

const DAY: u64 = 86_400;

impl Default for Limits {
    /// Ten free failures per account, then 1 s, 2 s, 4 s … up to one attempt a day: 100
    /// consecutive failures take more than 70 days, a year of guessing gets about 400 tries.
    fn default() -> Self {
        let account = Rule {
            free: 10,
            first_wait: 1,
            max_wait: DAY,
            forget_after: 7 * DAY,
        };
        Limits {
            account,
            device: account,
            network: Rule {
                free: 50,
                first_wait: 1,
                max_wait: 900,
                forget_after: 3_600,
            },
            unknown_entries: 10_000,
            device_entries: 10_000,
            network_entries: 10_000,
        }
    }
}
