use super::*;
use proptest::prelude::*;

const DAY: u64 = 86_400;

#[test]
fn the_default_account_rule_makes_guessing_slow() {
    let r = Limits::default().account;
    assert_eq!(
        (r.wait(9), r.wait(10), r.wait(11), r.wait(12)),
        (0, 1, 2, 4)
    );
    assert_eq!(
        r.wait(27),
        DAY,
        "one attempt a day from the 28th failure on"
    );
    // Time an attacker must spend to make n failures, waiting out each wait.
    let time_for = |n: u32| (0..n).map(|k| r.wait(k)).sum::<u64>();
    assert!(time_for(100) > 70 * DAY, "{}", time_for(100));
    let per_year = (0..).take_while(|&n| time_for(n) <= 365 * DAY).count();
    assert!(per_year < 400, "{per_year}");
}

proptest! {
    #[test]
    fn waits_never_shrink_and_never_pass_the_cap(
        free in 0u32..200, first in 0u64..10_000, cap in 0u64..1_000_000, n in 0u32..u32::MAX,
    ) {
        let r = Rule { free, first_wait: first, max_wait: cap, forget_after: 1 };
        prop_assert!(r.wait(n) <= cap);
        prop_assert!(r.wait(n) <= r.wait(n.saturating_add(1)));
        prop_assert_eq!(r.wait(n) == 0, n < free || first == 0 || cap == 0);
    }
}

fn limits(free: u32) -> Limits {
    Limits {
        account: Rule {
            free,
            first_wait: 10,
            max_wait: 100,
            forget_after: 1_000,
        },
        ..Limits::default()
    }
}

#[tokio::test]
async fn a_wait_refuses_until_it_passes_and_a_success_clears_the_account_only() {
    let t = Throttle::new(limits(2), 1);
    let keys = [
        Key::account("alice", "pwd", true),
        Key::network(Some("192.0.2.1".parse().expect("ip"))),
    ];
    t.attempt(&keys, 1_000).await.expect("free").failed();
    t.attempt(&keys, 1_001).await.expect("free").failed();
    assert_eq!(t.attempt(&keys, 1_001).await.err(), Some(Refused::Wait(10)));
    assert_eq!(
        t.attempt(&keys, 1_005).await.err(),
        Some(Refused::Wait(6)),
        "a refusal is not counted"
    );
    t.attempt(&keys, 1_011).await.expect("waited").failed();
    assert_eq!(t.attempt(&keys, 1_011).await.err(), Some(Refused::Wait(20)));
    t.attempt(&keys, 1_031)
        .await
        .expect("waited")
        .succeeded()
        .await;
    assert!(
        t.store().get(&keys[0]).is_none(),
        "the account starts afresh"
    );
    assert_eq!(
        t.store().get(&keys[1]).map(|r| r.failures),
        Some(3),
        "the network keeps its failures, not the success"
    );
}

#[tokio::test]
async fn concurrent_attempts_cannot_share_one_open_window() {
    let t = Throttle::new(limits(3), 1);
    let keys = [Key::account("alice", "pwd", true), Key::network(None)];
    // Many attempts in flight at once: only the free ones are let through.
    let mut started = Vec::new();
    for _ in 0..20 {
        if let Ok(a) = t.attempt(&keys, 50).await {
            started.push(a);
        }
    }
    assert_eq!(started.len(), 3);
    for a in started {
        a.failed();
    }
    assert!(t.attempt(&keys, 50).await.is_err());
}

#[tokio::test]
async fn an_abandoned_attempt_counts_nothing_and_a_refusal_releases_earlier_keys() {
    let strict = Rule {
        free: 1,
        first_wait: 10,
        max_wait: 100,
        forget_after: 1_000,
    };
    let t = Throttle::new(
        Limits {
            network: strict,
            ..limits(1)
        },
        1,
    );
    let alice = Key::account("alice", "pwd", true);
    let net = Key::network(None);
    t.attempt(&[alice, net], 7)
        .await
        .expect("free")
        .abandoned()
        .await;
    assert!(t.store().get(&alice).is_none() && t.store().get(&net).is_none());
    // The network must wait; alice's reservation made before it is taken back.
    t.attempt(&[net], 7).await.expect("free").failed();
    t.attempt(&[net], 17).await.expect("waited").failed();
    let waiting = t.store().get(&net);
    assert!(t.attempt(&[alice, net], 17).await.is_err());
    assert!(t.store().get(&alice).is_none());
    assert_eq!(t.store().get(&net), waiting);
}

#[test]
fn keys_separate_kinds_factors_names_and_ipv6_subnets() {
    assert_ne!(
        Key::account("alice", "pwd", true),
        Key::account("alice", "otp", true)
    );
    assert_ne!(
        Key::account("alice", "pwd", true).id,
        Key::account("alice", "pwd", false).id
    );
    assert_ne!(
        Key::device("alice", "pwd"),
        Key::account("alice", "pwd", true)
    );
    let net = |s: &str| Key::network(Some(s.parse().expect("ip")));
    assert_eq!(net("2001:db8:1:2::1"), net("2001:db8:1:2:ffff::9"));
    assert_ne!(net("2001:db8:1:2::1"), net("2001:db8:1:3::1"));
    assert_eq!(net("::ffff:192.0.2.7"), net("192.0.2.7"));
    assert_ne!(net("192.0.2.7"), net("192.0.2.8"));
}

#[tokio::test]
async fn made_up_usernames_never_evict_a_real_accounts_count() {
    let limits = Limits {
        unknown_entries: 50,
        ..Limits::default()
    };
    let t = Throttle::new(limits, 2);
    let alice = Key::account("alice", "pwd", true);
    for _ in 0..10 {
        t.attempt(&[alice], 5_000).await.expect("free").failed();
    }
    for i in 0..5_000 {
        let nobody = Key::account(&format!("nobody-{i}"), "pwd", false);
        t.attempt(&[nobody], 5_000).await.expect("free").failed();
    }
    assert!(t.store().entries(Kind::UnknownAccount) <= 50);
    assert_eq!(t.store().get(&alice).map(|r| r.failures), Some(10));
    assert!(
        t.attempt(&[alice], 5_000).await.is_err(),
        "alice still waits"
    );
}
