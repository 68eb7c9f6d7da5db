//! The A→B→C chain's cost per external request in each mode, in one run: three demo chains
//! ([`baton::demo::Chain`]) in this process: the per-hop exchange alone; the exchange and a
//! Txn-Token (A issues one per request, B and C verify it); the Txn-Token alone (no exchange,
//! B and C reached without an access token). All are warmed first, so exchanges come from the
//! sidecars' caches: the Txn-Token costs one IdP request at A and a signature check per hop.
//!
//! Usage: `txn-chain [ROUNDS] [PER_ROUND]` (default 10 × 200). Rounds alternate the chains,
//! one request at a time. Prints the median and 90th-percentile latency of a call to A, and
//! the CPU time of the whole process (IdP, three sidecars, three apps, the client) per request,
//! from `/proc/self/stat`.

#![allow(clippy::unwrap_used, missing_docs)] // a test or bench harness: a failed unwrap is a failed run

use baton::demo::{Chain, DEMO_PASSWORD, DEMO_USER, Options};
use std::time::{Duration, Instant};

/// User + system CPU time of this process, in clock ticks (`/proc/self/stat` fields 14, 15).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The command name may hold spaces: count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // `rest` starts at field 3 (state): utime is field 14, stime 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

struct Mode {
    name: &'static str,
    chain: Chain,
    tokens: baton::signin::Tokens,
    latencies: Vec<Duration>,
    cpu_ticks: u64,
}

async fn mode(name: &'static str, txn_tokens: bool, txn_only: bool) -> Mode {
    let chain = Chain::start_with(Options {
        txn_tokens,
        txn_only,
        ..Options::default()
    })
    .await
    .unwrap();
    let tokens = chain.sign_in(DEMO_USER, DEMO_PASSWORD).await.unwrap();
    for _ in 0..20 {
        let (status, _) = chain.call(&tokens.access_token, "/").await.unwrap();
        assert_eq!(status, 200);
    }
    Mode {
        name,
        chain,
        tokens,
        latencies: Vec::new(),
        cpu_ticks: 0,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(10, |a| a.parse().unwrap());
    let per_round: usize = args.next().map_or(200, |a| a.parse().unwrap());
    let mut modes = [
        mode("per-hop exchange alone", false, false).await,
        mode("exchange + Txn-Token", true, false).await,
        mode("Txn-Token alone", false, true).await,
    ];
    let idp_before: Vec<u64> = modes.iter().map(|m| m.chain.idp.token_requests()).collect();
    for _ in 0..rounds {
        for m in &mut modes {
            let before = cpu_ticks();
            for _ in 0..per_round {
                let start = Instant::now();
                let (status, _) = m.chain.call(&m.tokens.access_token, "/").await.unwrap();
                m.latencies.push(start.elapsed());
                assert_eq!(status, 200);
            }
            m.cpu_ticks += cpu_ticks() - before;
        }
    }
    let n = rounds * per_round;
    println!("txn-chain: {rounds} rounds × {per_round} requests per mode, one at a time\n");
    println!(
        "{:<24} {:>10} {:>10} {:>16} {:>18}",
        "mode", "p50 µs", "p90 µs", "CPU µs/request", "IdP requests/call"
    );
    for (m, before) in modes.iter_mut().zip(idp_before) {
        m.latencies.sort_unstable();
        let cpu_us = m.cpu_ticks as f64 / TICKS_PER_SEC * 1e6 / n as f64;
        let idp = (m.chain.idp.token_requests() - before) as f64 / n as f64;
        println!(
            "{:<24} {:>10} {:>10} {:>16.0} {:>18.2}",
            m.name,
            percentile(&m.latencies, 0.5).as_micros(),
            percentile(&m.latencies, 0.9).as_micros(),
            cpu_us,
            idp
        );
    }
    for m in modes {
        m.chain.stop().await;
    }
}
