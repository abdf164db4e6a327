//! What the daemon counts for `-metrics`, and the Prometheus text
//! exposition of it (served by [`crate::exposition`]).
//!
//! Counting sits on the path of every lookup, so each label combination is
//! resolved once, at start, into its own counter: a request costs one
//! atomic add, never a label lookup. Gauges that describe the present
//! (registrations by kind, pending connections) are read from the server
//! when scraped instead of being kept in step with every change.
//!
//! The exposition format is the classic text format (0.0.4) written by the
//! `prometheus` crate: Prometheus scrapes it, and `promtool check metrics`
//! accepts it (it rejects the OpenMetrics form's `_total`-less `TYPE`
//! lines, which is what `prometheus-client` writes).

use epmd_proto::Request;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, TextEncoder};

/// A request's command, the `command` label of `epmdx_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// ALIVE2_REQ.
    Alive2,
    /// PORT_PLEASE2_REQ.
    PortPlease2,
    /// NAMES_REQ.
    Names,
    /// DUMP_REQ.
    Dump,
    /// KILL_REQ.
    Kill,
    /// STOP_REQ.
    Stop,
    /// ALIVE3_REQ (first registration or more transports).
    Alive3,
    /// PORT_PLEASE3_REQ.
    PortPlease3,
    /// NAMES3_REQ.
    Names3,
    /// DUMP3_REQ.
    Dump3,
    /// UNREG3_REQ.
    Unreg3,
    /// `epmdx -upgrade`.
    Upgrade,
    /// A frame that is not a request: bad length, pipelined, undecodable.
    Invalid,
}

impl Command {
    /// Every command, in label order.
    pub const ALL: [Self; 13] = [
        Self::Alive2,
        Self::PortPlease2,
        Self::Names,
        Self::Dump,
        Self::Kill,
        Self::Stop,
        Self::Alive3,
        Self::PortPlease3,
        Self::Names3,
        Self::Dump3,
        Self::Unreg3,
        Self::Upgrade,
        Self::Invalid,
    ];

    /// The command of a decoded request.
    pub fn of(req: &Request<'_>) -> Self {
        match req {
            Request::Alive2(_) => Self::Alive2,
            Request::PortPlease2(_) => Self::PortPlease2,
            Request::Names => Self::Names,
            Request::Dump => Self::Dump,
            Request::Kill => Self::Kill,
            Request::Stop(_) => Self::Stop,
            Request::Alive3(_) => Self::Alive3,
            Request::PortPlease3(_) => Self::PortPlease3,
            Request::Names3 => Self::Names3,
            Request::Dump3 => Self::Dump3,
            Request::Unreg3(_) => Self::Unreg3,
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Alive2 => "alive2",
            Self::PortPlease2 => "port_please2",
            Self::Names => "names",
            Self::Dump => "dump",
            Self::Kill => "kill",
            Self::Stop => "stop",
            Self::Alive3 => "alive3",
            Self::PortPlease3 => "port_please3",
            Self::Names3 => "names3",
            Self::Dump3 => "dump3",
            Self::Unreg3 => "unreg3",
            Self::Upgrade => "upgrade",
            Self::Invalid => "invalid",
        }
    }

    /// The results this command can have: the series created at start,
    /// so a dashboard sees zeros rather than missing series.
    fn results(self) -> &'static [Verdict] {
        use Verdict::{Closed, Miss, Ok, Refused};
        match self {
            Self::Alive2 | Self::Alive3 | Self::Kill | Self::Upgrade => &[Ok, Refused, Closed],
            Self::PortPlease2 | Self::PortPlease3 => &[Ok, Miss],
            Self::Names | Self::Names3 => &[Ok],
            Self::Dump | Self::Dump3 => &[Ok, Closed],
            Self::Stop | Self::Unreg3 => &[Ok, Miss, Closed],
            Self::Invalid => &[Closed],
        }
    }
}

/// How a request ended, the `result` label of `epmdx_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Answered with what was asked for.
    Ok,
    /// Answered "no such name" (lookups, STOP, UNREG3).
    Miss,
    /// Answered with a refusal (registration refused, KILL with live
    /// nodes, a failed upgrade).
    Refused,
    /// Closed without a reply (not local, not relaxed, not a request).
    Closed,
}

impl Verdict {
    const ALL: [Self; 4] = [Self::Ok, Self::Miss, Self::Refused, Self::Closed];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Miss => "miss",
            Self::Refused => "refused",
            Self::Closed => "closed",
        }
    }
}

/// Why a connection or registration was turned away, the `reason` label of
/// `epmdx_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusedReason {
    /// A non-local peer outside `-allow`.
    Allow,
    /// A non-local peer over `-rate_limit`.
    Rate,
    /// A registration refused because the daemon holds its maximum.
    Capacity,
}

impl RefusedReason {
    const ALL: [Self; 3] = [Self::Allow, Self::Rate, Self::Capacity];

    fn label(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Rate => "rate",
            Self::Capacity => "capacity",
        }
    }
}

/// The present state, read from the server at scrape time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Live ALIVE2 registrations.
    pub legacy: usize,
    /// Live ALIVE3 registrations.
    pub extended: usize,
    /// Connections that hold no registration.
    pub pending: usize,
}

/// The daemon's counters and their exposition.
#[derive(Debug)]
pub struct Metrics {
    registry: prometheus::Registry,
    requests: IntCounterVec,
    /// `requests` resolved per (command, result), in `Command::ALL` ×
    /// `Verdict::ALL` order; `None` for combinations that do not occur.
    resolved: Vec<Option<IntCounter>>,
    legacy: IntGauge,
    extended: IntGauge,
    pending: IntGauge,
    evictions: IntCounter,
    refused: [IntCounter; 3],
    upgrades: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero.
    pub fn new() -> Self {
        // Names, help texts and labels are constants; registering them
        // into a fresh registry cannot fail.
        fn ok<T>(r: prometheus::Result<T>) -> T {
            r.expect("constant metric definitions")
        }
        let registry = prometheus::Registry::new();
        let requests = ok(IntCounterVec::new(
            Opts::new(
                "epmdx_requests_total",
                "EPMD requests served, by command and result.",
            ),
            &["command", "result"],
        ));
        let registrations = ok(IntGaugeVec::new(
            Opts::new(
                "epmdx_registrations",
                "Live registrations, by kind (legacy: ALIVE2, extended: ALIVE3).",
            ),
            &["kind"],
        ));
        let pending = ok(IntGauge::new(
            "epmdx_pending_connections",
            "Open connections that hold no registration.",
        ));
        let evictions = ok(IntCounter::new(
            "epmdx_evictions_total",
            "Pending connections closed to make room (pending table full, or out of descriptors).",
        ));
        let refused_vec = ok(IntCounterVec::new(
            Opts::new(
                "epmdx_refused_total",
                "Peers closed without a reply (allow, rate) and registrations refused for capacity.",
            ),
            &["reason"],
        ));
        let upgrades = ok(IntCounter::new(
            "epmdx_upgrades_total",
            "In-place upgrades this daemon went through (carried across them).",
        ));
        ok(registry.register(Box::new(requests.clone())));
        ok(registry.register(Box::new(registrations.clone())));
        ok(registry.register(Box::new(pending.clone())));
        ok(registry.register(Box::new(evictions.clone())));
        ok(registry.register(Box::new(refused_vec.clone())));
        ok(registry.register(Box::new(upgrades.clone())));
        let resolved = Command::ALL
            .iter()
            .flat_map(|&c| {
                let requests = &requests;
                Verdict::ALL.iter().map(move |&v| {
                    c.results()
                        .contains(&v)
                        .then(|| requests.with_label_values(&[c.label(), v.label()]))
                })
            })
            .collect();
        Self {
            registry,
            resolved,
            legacy: registrations.with_label_values(&["legacy"]),
            extended: registrations.with_label_values(&["extended"]),
            requests,
            pending,
            evictions,
            refused: RefusedReason::ALL.map(|r| refused_vec.with_label_values(&[r.label()])),
            upgrades,
        }
    }

    /// Counts one request.
    pub fn request(&self, command: Command, verdict: Verdict) {
        let i = Command::ALL.iter().position(|&c| c == command).unwrap_or(0) * Verdict::ALL.len()
            + Verdict::ALL.iter().position(|&v| v == verdict).unwrap_or(0);
        match self.resolved.get(i) {
            Some(Some(c)) => c.inc(),
            // A combination `results` did not foresee: still counted.
            _ => self
                .requests
                .with_label_values(&[command.label(), verdict.label()])
                .inc(),
        }
    }

    /// Counts one pending connection closed to make room.
    pub fn eviction(&self) {
        self.evictions.inc();
    }

    /// Counts one refusal.
    pub fn refused(&self, reason: RefusedReason) {
        let i = RefusedReason::ALL
            .iter()
            .position(|&r| r == reason)
            .unwrap_or(0);
        self.refused[i].inc();
    }

    /// Upgrades so far.
    pub fn upgrades(&self) -> u64 {
        self.upgrades.get()
    }

    /// Continues the upgrade count of the process this one took over from,
    /// plus the upgrade that started this one.
    pub fn continue_upgrades(&self, before: u64) {
        self.upgrades.inc_by(before.saturating_add(1));
    }

    /// The text exposition, with the gauges set to `now`.
    pub fn encode(&self, now: Gauges) -> Vec<u8> {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.legacy.set(gauge(now.legacy));
        self.extended.set(gauge(now.extended));
        self.pending.set(gauge(now.pending));
        let mut out = Vec::with_capacity(4096);
        // Writing text into a Vec fails only on an invalid metric, and
        // every metric here is built from constants.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!("metrics encoding failed: {e}");
        }
        out
    }
}

/// The exposition's `Content-Type`.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.split_once(' ').is_some_and(|(s, _)| s == series))
    }

    #[test]
    fn counts_land_in_their_series() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.request(Command::PortPlease2, Verdict::Ok);
        }
        m.request(Command::PortPlease2, Verdict::Miss);
        // Not foreseen by `results`, still counted.
        m.request(Command::Names, Verdict::Closed);
        m.eviction();
        m.refused(RefusedReason::Rate);
        m.continue_upgrades(4);
        let text = String::from_utf8(m.encode(Gauges {
            legacy: 2,
            extended: 1,
            pending: 7,
        }))
        .unwrap();
        let want = [
            r#"epmdx_requests_total{command="port_please2",result="ok"} 3"#,
            r#"epmdx_requests_total{command="port_please2",result="miss"} 1"#,
            r#"epmdx_requests_total{command="names",result="closed"} 1"#,
            r#"epmdx_requests_total{command="alive2",result="refused"} 0"#,
            r#"epmdx_registrations{kind="legacy"} 2"#,
            r#"epmdx_registrations{kind="extended"} 1"#,
            "epmdx_pending_connections 7",
            "epmdx_evictions_total 1",
            r#"epmdx_refused_total{reason="rate"} 1"#,
            r#"epmdx_refused_total{reason="allow"} 0"#,
            "epmdx_upgrades_total 5",
        ];
        for w in want {
            let series = w.rsplit_once(' ').unwrap().0;
            assert_eq!(line(&text, series), Some(w), "in:\n{text}");
        }
        assert!(line(
            &text,
            r#"epmdx_requests_total{command="names",result="miss"}"#
        )
        .is_none());
    }
}
