//! Traffic capture for `baton.dev/capture: iptables`: `baton init-net` installs nat-table
//! REDIRECT rules in the pod's network namespace (shelling out to `iptables-restore`); the
//! outbound listener learns where a redirected connection was going from
//! [`crate::server::ConnInfo::original_dst`].
//!
//! Inbound: TCP arriving for the app's ports (PREROUTING) goes to the sidecar's inbound listener.
//! Outbound: the app's TCP to the captured ports (OUTPUT) goes to the outbound listener, except
//! the sidecar's own traffic (its uid, so it never loops), loopback destinations, and the IdP.

use super::policy::DEFAULT_SIDECAR_UID;
use super::{INBOUND_PORT, OUTBOUND_PORT};
use std::io::{self, Write};
use std::net::{IpAddr, ToSocketAddrs};
use std::process::{Command, ExitCode, Stdio};
use tracing::{error, info};

/// Arguments of `baton init-net`.
#[derive(Debug, Clone, clap::Args)]
pub struct InitNetArgs {
    /// The app's ports: inbound TCP to them is redirected to the sidecar's inbound listener.
    #[arg(long, value_delimiter = ',', required = true)]
    pub inbound_ports: Vec<u16>,
    /// Destination ports of the app's outbound TCP redirected to the outbound listener.
    #[arg(long, value_delimiter = ',', default_values_t = [80u16, 8080])]
    pub outbound_ports: Vec<u16>,
    /// `host:port` never redirected (the IdP); a name is resolved once, every address excluded.
    #[arg(long)]
    pub exclude: Vec<String>,
    /// The sidecar's uid, whose traffic is never redirected (the injector passes its own).
    #[arg(long, default_value_t = DEFAULT_SIDECAR_UID as u32)]
    pub proxy_uid: u32,
    /// Print the rules instead of installing them.
    #[arg(long)]
    pub dry_run: bool,
}

/// Why `init-net` failed.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// `--exclude` was not `host:port` or did not resolve.
    #[error("resolve excluded destination {target}: {source}")]
    Resolve {
        /// The `host:port` given.
        target: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// `--proxy-uid 0` would exempt every root process of the pod from capture.
    #[error("--proxy-uid 0: the exempt uid must be the sidecar's own, never root")]
    RootUid,
    /// `iptables-save`/`iptables-restore` could not be run or failed.
    #[error("run {program}: {reason}")]
    Iptables {
        /// The program.
        program: &'static str,
        /// What went wrong (its stderr).
        reason: String,
    },
}

/// A resolved destination exempt from the outbound redirect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exempt {
    /// The IPv4 address.
    pub ip: IpAddr,
    /// The TCP port.
    pub port: u16,
}

/// Chain names; their presence means the rules are already installed.
const INBOUND_CHAIN: &str = "BATON_INBOUND";
const OUTBOUND_CHAIN: &str = "BATON_OUTBOUND";

/// An address family and the tools that program it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `iptables`.
    V4,
    /// `ip6tables`: without it a dual-stack pod's IPv6 traffic would bypass the sidecar.
    V6,
}

impl Family {
    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.0/8",
            Family::V6 => "::1/128",
        }
    }

    fn host_prefix(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    fn holds(self, ip: IpAddr) -> bool {
        ip.is_ipv4() == (self == Family::V4)
    }

    fn programs(self) -> (&'static str, &'static str) {
        match self {
            Family::V4 => ("iptables-save", "iptables-restore"),
            Family::V6 => ("ip6tables-save", "ip6tables-restore"),
        }
    }
}

/// The nat-table rules of one family in `iptables-restore` format (applied with `--noflush`,
/// so rules of others are kept). Pure, so the exact rules are unit-tested.
pub fn rules(
    family: Family,
    inbound: &[u16],
    outbound: &[u16],
    exempt: &[Exempt],
    uid: u32,
) -> String {
    let mut r = String::from("*nat\n");
    r += &format!(":{INBOUND_CHAIN} - [0:0]\n:{OUTBOUND_CHAIN} - [0:0]\n");
    r += &format!("-A PREROUTING -p tcp -j {INBOUND_CHAIN}\n");
    for port in inbound {
        r += &format!(
            "-A {INBOUND_CHAIN} -p tcp --dport {port} -j REDIRECT --to-ports {INBOUND_PORT}\n"
        );
    }
    r += &format!("-A OUTPUT -p tcp -j {OUTBOUND_CHAIN}\n");
    r += &format!("-A {OUTBOUND_CHAIN} -m owner --uid-owner {uid} -j RETURN\n");
    r += &format!("-A {OUTBOUND_CHAIN} -o lo -j RETURN\n");
    r += &format!("-A {OUTBOUND_CHAIN} -d {} -j RETURN\n", family.loopback());
    for e in exempt.iter().filter(|e| family.holds(e.ip)) {
        r += &format!(
            "-A {OUTBOUND_CHAIN} -d {}/{} -p tcp --dport {} -j RETURN\n",
            e.ip,
            family.host_prefix(),
            e.port
        );
    }
    for port in outbound {
        r += &format!(
            "-A {OUTBOUND_CHAIN} -p tcp --dport {port} -j REDIRECT --to-ports {OUTBOUND_PORT}\n"
        );
    }
    r += "COMMIT\n";
    r
}

/// `baton init-net`: resolves the exclusions, then installs [`rules`] for IPv4 and, when the
/// namespace has IPv6, for IPv6, skipping a family whose chains already exist (a restarted init
/// container changes nothing). Exit 0 on success, 1 on failure.
pub fn init_net(args: InitNetArgs) -> ExitCode {
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "init-net failed");
            eprintln!("baton init-net: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &InitNetArgs) -> Result<(), CaptureError> {
    if args.proxy_uid == 0 {
        return Err(CaptureError::RootUid);
    }
    let exempt = resolve(&args.exclude)?;
    let mut families = vec![Family::V4];
    if ipv6_enabled() {
        families.push(Family::V6);
    }
    for family in families {
        let (save, restore) = family.programs();
        let text = rules(
            family,
            &args.inbound_ports,
            &args.outbound_ports,
            &exempt,
            args.proxy_uid,
        );
        if args.dry_run {
            print!("# {family:?}\n{text}");
            continue;
        }
        let current = iptables(save, &["-t", "nat"], None)?;
        if current.contains(&format!(":{INBOUND_CHAIN} ")) {
            info!(?family, "capture rules already installed");
            continue;
        }
        iptables(restore, &["--noflush"], Some(&text))?;
        info!(
            ?family,
            inbound = ?args.inbound_ports,
            outbound = ?args.outbound_ports,
            exempt = exempt.len(),
            "capture rules installed"
        );
    }
    Ok(())
}

/// Whether this thread's network namespace has IPv6 (any address in `if_inet6`).
fn ipv6_enabled() -> bool {
    std::fs::read_to_string("/proc/thread-self/net/if_inet6").is_ok_and(|t| !t.trim().is_empty())
}

fn resolve(targets: &[String]) -> Result<Vec<Exempt>, CaptureError> {
    let mut out = Vec::new();
    for t in targets {
        let addrs = t
            .to_socket_addrs()
            .map_err(|source| CaptureError::Resolve {
                target: t.clone(),
                source,
            })?;
        out.extend(addrs.map(|a| Exempt {
            ip: a.ip(),
            port: a.port(),
        }));
    }
    out.dedup();
    Ok(out)
}

fn iptables(
    program: &'static str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, CaptureError> {
    let fail = |reason: String| CaptureError::Iptables { program, reason };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_redirect_app_ports_and_exempt_sidecar_loopback_and_idp() {
        let idp = Exempt {
            ip: "10.96.0.7".parse().unwrap(),
            port: 8080,
        };
        let r = rules(Family::V4, &[8080], &[80, 8080], &[idp], 15532);
        let lines: Vec<&str> = r.lines().collect();
        assert_eq!(lines.first(), Some(&"*nat"));
        assert_eq!(lines.last(), Some(&"COMMIT"));
        assert!(
            lines.contains(&"-A BATON_INBOUND -p tcp --dport 8080 -j REDIRECT --to-ports 15006")
        );
        let pos = |needle: &str| lines.iter().position(|l| l.contains(needle)).unwrap();
        // Every exemption comes before the first redirect in the outbound chain.
        let first_redirect =
            pos("-A BATON_OUTBOUND -p tcp --dport 80 -j REDIRECT --to-ports 15001");
        for exempt in [
            "--uid-owner 15532 -j RETURN",
            "-o lo -j RETURN",
            "-d 127.0.0.0/8 -j RETURN",
            "-d 10.96.0.7/32 -p tcp --dport 8080 -j RETURN",
        ] {
            assert!(pos(exempt) < first_redirect, "{exempt} after the redirect");
        }
        assert!(
            lines.contains(&"-A BATON_OUTBOUND -p tcp --dport 8080 -j REDIRECT --to-ports 15001")
        );
    }

    #[test]
    fn rules_never_redirect_the_sidecar_ports_when_not_asked() {
        let r = rules(Family::V4, &[9000], &[80], &[], 15532);
        assert!(!r.contains("--dport 15006"));
        assert!(!r.contains("--dport 15001"));
    }

    #[test]
    fn ipv6_rules_exempt_ipv6_loopback_and_only_ipv6_addresses() {
        let v4 = Exempt {
            ip: "10.0.0.7".parse().unwrap(),
            port: 9000,
        };
        let v6 = Exempt {
            ip: "fd00::7".parse().unwrap(),
            port: 9000,
        };
        let r = rules(Family::V6, &[8080], &[80], &[v4, v6], 15532);
        assert!(r.contains("-A BATON_OUTBOUND -d ::1/128 -j RETURN"));
        assert!(r.contains("-A BATON_OUTBOUND -d fd00::7/128 -p tcp --dport 9000 -j RETURN"));
        assert!(!r.contains("10.0.0.7") && !r.contains("127.0.0.0/8"));
        let r4 = rules(Family::V4, &[8080], &[80], &[v4, v6], 15532);
        assert!(r4.contains("-d 10.0.0.7/32") && !r4.contains("fd00::7"));
    }

    #[test]
    fn root_is_never_the_exempt_uid() {
        let args = InitNetArgs {
            inbound_ports: vec![8080],
            outbound_ports: vec![80],
            exclude: vec![],
            proxy_uid: 0,
            dry_run: true,
        };
        assert!(matches!(run(&args), Err(CaptureError::RootUid)));
    }

    #[test]
    fn exclusions_resolve_numeric_addresses_without_dns() {
        let e = resolve(&["10.0.0.9:8443".to_owned()]).unwrap();
        assert_eq!(
            e,
            vec![Exempt {
                ip: "10.0.0.9".parse().unwrap(),
                port: 8443
            }]
        );
        assert!(matches!(
            resolve(&["no-port".to_owned()]),
            Err(CaptureError::Resolve { .. })
        ));
    }
}
