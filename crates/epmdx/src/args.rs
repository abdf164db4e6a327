//! OTP `epmd`'s command line, parsed left to right the way the C program
//! does: interactive options act when reached and must come last, numbers
//! are read with `atoi` semantics, and anything unexpected is a usage error.
//! clap cannot express single-dash long options, so this is hand-written.

use std::time::Duration;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Run the daemon.
    Daemon,
    /// `-names`.
    Names,
    /// `-started`: NAMES, silently; the exit status tells.
    Started,
    /// `-dump`.
    Dump,
    /// `-kill`.
    Kill,
    /// `-stop NAME`.
    Stop(Vec<u8>),
    /// `-upgrade`: in-place upgrade of the running daemon (epmdx only).
    Upgrade,
}

/// Parsed options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Args {
    pub(crate) mode: Mode,
    pub(crate) port: u16,
    pub(crate) debug: u8,
    pub(crate) daemon: bool,
    pub(crate) relaxed: bool,
    pub(crate) systemd: bool,
    pub(crate) address: Option<String>,
    pub(crate) packet_timeout: Duration,
    pub(crate) delay_accept: Duration,
    pub(crate) delay_write: Duration,
    /// `-etcd URLS` (epmdx): publish registrations to this etcd cluster.
    pub(crate) etcd: Option<String>,
    /// `-cluster NAME` (epmdx): the cluster to publish under.
    pub(crate) cluster: Option<String>,
    /// `-advertise ADDR[,ADDR...]` (epmdx): this host as peers reach it.
    pub(crate) advertise: Option<String>,
    /// `-etcd_ttl SECS` (epmdx): the lease TTL.
    pub(crate) etcd_ttl: Option<Duration>,
    /// `-allow NETS` (epmdx), checked by the daemon so the error names it.
    pub(crate) allow: Option<String>,
    /// `-rate_limit N` (epmdx), checked by the daemon likewise.
    pub(crate) rate_limit: Option<String>,
    /// `-metrics ADDR:PORT` (epmdx), checked by the daemon likewise.
    pub(crate) metrics: Option<String>,
}

/// The command line is wrong: print the usage text and exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage;

/// C's `atoi`: optional whitespace and sign, then leading digits; 0 if none.
pub(crate) fn atoi(s: &str) -> i64 {
    let t = s.trim_start();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut v: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        v = v.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if neg {
        -v
    } else {
        v
    }
}

/// A positive number argument, or a usage error (0, negative, missing).
fn positive(v: Option<&String>) -> Result<i64, Usage> {
    match v.map(|s| atoi(s)) {
        Some(n) if n != 0 => Ok(n),
        _ => Err(Usage),
    }
}

fn secs(n: i64) -> Duration {
    Duration::from_secs(n.max(0).unsigned_abs())
}

/// Parses `argv[1..]`. `port` and `relaxed` start from the environment.
pub(crate) fn parse(argv: &[String], env_port: u16, env_relaxed: bool) -> Result<Args, Usage> {
    let mut a = Args {
        mode: Mode::Daemon,
        port: env_port,
        debug: 0,
        daemon: false,
        relaxed: env_relaxed,
        systemd: false,
        address: None,
        packet_timeout: Duration::from_secs(60),
        delay_accept: Duration::ZERO,
        delay_write: Duration::ZERO,
        etcd: None,
        cluster: None,
        advertise: None,
        etcd_ttl: None,
        allow: None,
        rate_limit: None,
        metrics: None,
    };
    let mut i = 0;
    while i < argv.len() {
        let rest = argv.len() - i;
        let next = argv.get(i + 1);
        match argv[i].as_str() {
            "-d" | "-debug" => {
                a.debug = a.debug.saturating_add(1);
                i += 1;
            }
            "-packet_timeout" => {
                a.packet_timeout = secs(positive(next)?);
                i += 2;
            }
            "-delay_accept" => {
                a.delay_accept = secs(positive(next)?);
                i += 2;
            }
            "-delay_write" => {
                a.delay_write = secs(positive(next)?);
                i += 2;
            }
            "-port" => {
                a.port = positive(next)? as u16;
                i += 2;
            }
            "-address" => {
                a.address = Some(next.ok_or(Usage)?.clone());
                i += 2;
            }
            "-etcd" => {
                a.etcd = Some(next.ok_or(Usage)?.clone());
                i += 2;
            }
            "-cluster" => {
                a.cluster = Some(next.ok_or(Usage)?.clone());
                i += 2;
            }
            "-advertise" => {
                a.advertise = Some(next.ok_or(Usage)?.clone());
                i += 2;
            }
            "-allow" => {
                a.allow = Some(next.ok_or(Usage)?.clone());
                i += 2;
            }
            "-rate_limit" => {
                a.rate_limit = Some(next.ok_or(Usage)?.clone());
                i += 2;
            }
            "-metrics" => {
                a.metrics = Some(next.ok_or(Usage)?.clone());
                i += 2;
            }
            "-etcd_ttl" => {
                a.etcd_ttl = Some(secs(positive(next)?));
                i += 2;
            }
            "-daemon" => {
                a.daemon = true;
                i += 1;
            }
            "-relaxed_command_check" => {
                a.relaxed = true;
                i += 1;
            }
            "-systemd" => {
                a.systemd = true;
                i += 1;
            }
            flag @ ("-names" | "-started" | "-dump" | "-kill" | "-upgrade") => {
                if rest != 1 {
                    return Err(Usage);
                }
                a.mode = match flag {
                    "-names" => Mode::Names,
                    "-started" => Mode::Started,
                    "-dump" => Mode::Dump,
                    "-upgrade" => Mode::Upgrade,
                    _ => Mode::Kill,
                };
                return Ok(a);
            }
            "-stop" => {
                if rest != 2 {
                    return Err(Usage);
                }
                a.mode = Mode::Stop(argv[i + 1].as_bytes().to_vec());
                return Ok(a);
            }
            _ => return Err(Usage),
        }
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Args, Usage> {
        let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(&v, epmd_proto::DEFAULT_PORT, false)
    }

    #[test]
    fn order_matters() {
        assert_eq!(p(&["-port", "2243", "-names"]).unwrap().mode, Mode::Names);
        assert_eq!(p(&["-port", "2243", "-names"]).unwrap().port, 2243);
        assert_eq!(p(&["-names", "-port", "2243"]), Err(Usage));
        assert_eq!(p(&["-stop"]), Err(Usage));
        assert_eq!(p(&["-stop", "a", "b"]), Err(Usage));
        assert_eq!(
            p(&["-stop", "foo"]).unwrap().mode,
            Mode::Stop(b"foo".to_vec())
        );
    }

    #[test]
    fn numbers_are_atoi() {
        assert_eq!(p(&["-port", "0"]), Err(Usage));
        assert_eq!(p(&["-port", "abc"]), Err(Usage));
        assert_eq!(p(&["-port"]), Err(Usage));
        assert_eq!(p(&["-port", "12ab"]).unwrap().port, 12);
        assert_eq!(
            p(&["-packet_timeout", "1"]).unwrap().packet_timeout,
            Duration::from_secs(1)
        );
        assert_eq!(atoi("  -7x"), -7);
        assert_eq!(epmd_proto::port_from_env_value(Some("abc")), 0);
        assert_eq!(
            epmd_proto::port_from_env_value(None),
            epmd_proto::DEFAULT_PORT
        );
    }

    #[test]
    fn flags() {
        let a = p(&["-d", "-debug", "-daemon", "-relaxed_command_check"]).unwrap();
        assert_eq!((a.debug, a.daemon, a.relaxed), (2, true, true));
        assert_eq!(p(&["-bogus"]), Err(Usage));
        assert_eq!(p(&["-port", "5", "-upgrade"]).unwrap().mode, Mode::Upgrade);
        assert_eq!(p(&["-upgrade", "-port", "5"]), Err(Usage));
        assert_eq!(
            p(&["-address", "127.0.0.1,::1"])
                .unwrap()
                .address
                .as_deref(),
            Some("127.0.0.1,::1")
        );
        let c = p(&[
            "-etcd",
            "http://a:1,http://b:2",
            "-cluster",
            "c1",
            "-advertise",
            "h1,10.0.0.1",
            "-etcd_ttl",
            "3",
        ])
        .unwrap();
        assert_eq!(c.etcd.as_deref(), Some("http://a:1,http://b:2"));
        assert_eq!(c.cluster.as_deref(), Some("c1"));
        assert_eq!(c.advertise.as_deref(), Some("h1,10.0.0.1"));
        assert_eq!(c.etcd_ttl, Some(Duration::from_secs(3)));
        assert_eq!(p(&["-etcd_ttl", "0"]), Err(Usage));
        assert_eq!(p(&["-cluster"]), Err(Usage));
        assert_eq!(
            p(&["-metrics", "127.0.0.1:9100"])
                .unwrap()
                .metrics
                .as_deref(),
            Some("127.0.0.1:9100")
        );
        assert_eq!(p(&["-metrics"]), Err(Usage));
    }
}
