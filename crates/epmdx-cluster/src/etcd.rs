//! The etcd v3 backend: [`EtcdPublisher`] (records attached to one lease
//! per daemon), [`EtcdReader`] (prefix listing) and [`MemberWatch`] (a
//! prefix watch that survives reconnects). Uses `etcd-client` (gRPC over
//! tonic), with every request bounded by a timeout and `require_leader`
//! set, so a member cut off from the majority answers with an error
//! instead of stale data or a silent hang.

use std::collections::VecDeque;
use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, EventType, GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions,
    WatchOptions, WatchStream,
};
use tracing::{debug, warn};

use crate::key::ClusterName;
use crate::members::{Change, Members};
use crate::publish::{Publisher, Session};
use crate::record::Record;
use crate::ClusterError;

/// How long one etcd request may take before it counts as a failure.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Stale leases remembered for revocation; older ones just expire.
const MAX_STALE_LEASES: usize = 8;

/// Splits `http://a:2379,http://b:2379` into endpoints; refuses an empty
/// list or an empty entry.
pub fn parse_endpoints(urls: &str) -> Result<Vec<String>, ClusterError> {
    let eps: Vec<String> = urls.split(',').map(|s| s.trim().to_owned()).collect();
    if eps.iter().any(String::is_empty) {
        return Err(ClusterError::Endpoints(urls.chars().take(200).collect()));
    }
    Ok(eps)
}

async fn connect(endpoints: &[String], timeout: Duration) -> Result<Client, ClusterError> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_timeout(timeout)
        .with_keep_alive(Duration::from_secs(2), timeout)
        .with_require_leader(true);
    bounded(timeout, Client::connect(endpoints, Some(opts))).await
}

/// Each request of a publisher must fail fast enough that a reconnect
/// through another member still beats the lease: a third of the TTL, at
/// most [`DEFAULT_REQUEST_TIMEOUT`], at least 300 ms.
fn request_timeout(ttl: Duration) -> Duration {
    (ttl / 3).clamp(Duration::from_millis(300), DEFAULT_REQUEST_TIMEOUT)
}

/// [`connect`] with the endpoint list rotated to start at `start` (mod
/// its length): after a failure the balanced channel may keep choosing a
/// dead member, so a fresh client tries the next one first.
async fn connect_from(
    endpoints: &[String],
    start: usize,
    timeout: Duration,
) -> Result<Client, ClusterError> {
    let mut eps = endpoints.to_vec();
    let n = eps.len().max(1);
    eps.rotate_left(start % n);
    connect(&eps, timeout).await
}

/// Runs `f` with a deadline; a timeout is an error like any other.
async fn bounded<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(timeout, f).await {
        Ok(r) => r.map_err(ClusterError::from),
        Err(_) => Err(ClusterError::Timeout(timeout)),
    }
}

struct Lease {
    id: i64,
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
}

/// Publishes records under `/epmdx/NAME/nodes/<node>`, all attached to one
/// lease of this daemon. If the daemon dies the lease expires after the TTL
/// and etcd deletes its records; if etcd is unreachable for longer than the
/// TTL a new lease is granted on return and everything is written again.
pub struct EtcdPublisher {
    endpoints: Vec<String>,
    cluster: ClusterName,
    ttl: Duration,
    timeout: Duration,
    client: Option<Client>,
    lease: Option<Lease>,
    /// The lease of a session that failed on the client side (a dead
    /// member, a timeout): etcd may still hold it, and keeping it alive
    /// through another member keeps every record without a re-put. Tried
    /// only until the lease would have expired anyway.
    resume: Option<(i64, tokio::time::Instant)>,
    /// Failures so far; each reconnect starts from the next endpoint.
    failures: usize,
    stale: VecDeque<i64>,
}

impl std::fmt::Debug for EtcdPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdPublisher")
            .field("endpoints", &self.endpoints)
            .field("cluster", &self.cluster)
            .field("ttl", &self.ttl)
            .field("lease", &self.lease.as_ref().map(|l| l.id))
            .finish_non_exhaustive()
    }
}

impl EtcdPublisher {
    /// A publisher for `cluster` on `endpoints` (tried in turn, with
    /// failover), with lease TTL `ttl` (whole seconds, at least 1). Does not
    /// connect yet: the first [`Publisher::keepalive`] does.
    pub fn new(endpoints: Vec<String>, cluster: ClusterName, ttl: Duration) -> Self {
        Self {
            endpoints,
            cluster,
            ttl: ttl.max(Duration::from_secs(1)),
            timeout: request_timeout(ttl),
            client: None,
            lease: None,
            resume: None,
            failures: 0,
            stale: VecDeque::new(),
        }
    }

    /// The current lease id, if a session is up.
    pub fn lease_id(&self) -> Option<i64> {
        self.lease.as_ref().map(|l| l.id)
    }

    /// Forgets the client after a failure, remembering the lease so the
    /// next keep-alive can resume it through another member.
    fn drop_session(&mut self) {
        if let Some(l) = self.lease.take() {
            self.resume = Some((l.id, tokio::time::Instant::now() + self.ttl));
        }
        self.failures = self.failures.wrapping_add(1);
        // A fresh client after a failure: the channel may be stuck on an
        // endpoint that went away.
        self.client = None;
    }

    /// Remembers a lease that etcd reported expired or that a new session
    /// replaced; it is revoked once a session is healthy, if still around.
    fn retire(&mut self, id: i64) {
        if self.stale.len() == MAX_STALE_LEASES {
            self.stale.pop_front();
        }
        self.stale.push_back(id);
    }

    async fn client(&mut self) -> Result<&mut Client, ClusterError> {
        if self.client.is_none() {
            self.client = Some(connect_from(&self.endpoints, self.failures, self.timeout).await?);
        }
        Ok(self.client.as_mut().expect("just set"))
    }

    /// Keeps lease `id` alive on a fresh stream; `Ok(None)` if etcd says it
    /// has expired.
    async fn attach(&mut self, id: i64) -> Result<Option<Lease>, ClusterError> {
        let timeout = self.timeout;
        let client = self.client().await?;
        let (mut keeper, mut stream) = bounded(timeout, client.lease_keep_alive(id)).await?;
        bounded(timeout, keeper.keep_alive()).await?;
        match bounded(timeout, stream.message()).await? {
            Some(r) if r.ttl() > 0 => Ok(Some(Lease { id, keeper, stream })),
            _ => Ok(None),
        }
    }

    async fn renew(&mut self) -> Result<Session, ClusterError> {
        let timeout = self.timeout;
        if let Some(lease) = self.lease.as_mut() {
            bounded(timeout, lease.keeper.keep_alive()).await?;
            let resp = bounded(timeout, lease.stream.message()).await?;
            match resp {
                Some(r) if r.ttl() > 0 => {
                    // The session is healthy: old leases left from an
                    // outage can go now that everything was re-put.
                    self.revoke_stale().await;
                    return Ok(Session::Continued);
                }
                _ => {
                    debug!(lease = lease.id, "lease expired");
                    let id = lease.id;
                    self.lease = None;
                    self.retire(id);
                }
            }
        }
        if let Some((id, until)) = self.resume.take() {
            if tokio::time::Instant::now() >= until {
                debug!(
                    lease = id,
                    "lease outlived by the outage; starting a new one"
                );
                self.retire(id);
            } else {
                return self.resume_lease(id, until).await;
            }
        }
        self.grant().await
    }

    /// Tries to keep lease `id` through a fresh connection; falls back to a
    /// new lease when etcd says it has expired.
    async fn resume_lease(
        &mut self,
        id: i64,
        until: tokio::time::Instant,
    ) -> Result<Session, ClusterError> {
        match self.attach(id).await {
            Ok(Some(lease)) => {
                debug!(lease = id, "lease resumed through another connection");
                self.lease = Some(lease);
                Ok(Session::Continued)
            }
            Ok(None) => {
                debug!(lease = id, "lease expired during the outage");
                self.retire(id);
                self.grant().await
            }
            Err(e) => {
                // Still unreachable: try resuming again next time.
                self.resume = Some((id, until));
                Err(e)
            }
        }
    }

    async fn grant(&mut self) -> Result<Session, ClusterError> {
        let timeout = self.timeout;
        let ttl_secs = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX).max(1);
        let client = self.client().await?;
        let grant = bounded(timeout, client.lease_grant(ttl_secs, None)).await?;
        let id = grant.id();
        let (keeper, stream) = bounded(timeout, client.lease_keep_alive(id)).await?;
        debug!(lease = id, ttl_secs, "new lease");
        self.lease = Some(Lease { id, keeper, stream });
        Ok(Session::New)
    }

    async fn revoke_stale(&mut self) {
        let timeout = self.timeout;
        while let Some(id) = self.stale.pop_front() {
            let Some(client) = self.client.as_mut() else {
                return;
            };
            match bounded(timeout, client.lease_revoke(id)).await {
                Ok(_) => debug!(lease = id, "revoked the lease of an earlier session"),
                // Already expired (the usual case after a long outage).
                Err(e) => debug!(lease = id, error = %e, "stale lease not revoked"),
            }
        }
    }

    fn fail<T>(&mut self, e: ClusterError) -> Result<T, ClusterError> {
        self.drop_session();
        Err(e)
    }
}

impl Publisher for EtcdPublisher {
    async fn keepalive(&mut self) -> Result<Session, ClusterError> {
        match self.renew().await {
            Ok(s) => Ok(s),
            Err(e) => self.fail(e),
        }
    }

    async fn publish(&mut self, record: &Record) -> Result<(), ClusterError> {
        let Some(lease) = self.lease_id() else {
            return Err(ClusterError::NoSession);
        };
        let key = self.cluster.node_key(record.node());
        let timeout = self.timeout;
        let client = self.client().await?;
        let opts = PutOptions::new().with_lease(lease);
        match bounded(timeout, client.put(key, record.to_json(), Some(opts))).await {
            Ok(_) => Ok(()),
            Err(e) => self.fail(e),
        }
    }

    async fn withdraw(&mut self, node: &str) -> Result<(), ClusterError> {
        let key = format!("{}{node}", self.cluster.nodes_prefix());
        let timeout = self.timeout;
        let client = self.client().await?;
        match bounded(timeout, client.delete(key, None)).await {
            Ok(_) => Ok(()),
            Err(e) => self.fail(e),
        }
    }
}

/// How long [`EtcdReader::snapshot`] keeps retrying before it gives up:
/// long enough to ride out a leader election or a dead endpoint, short
/// enough for a command line.
pub const DEFAULT_READ_DEADLINE: Duration = Duration::from_secs(6);

/// Reads a cluster's members.
pub struct EtcdReader {
    endpoints: Vec<String>,
    client: Client,
    timeout: Duration,
}

impl std::fmt::Debug for EtcdReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdReader").finish_non_exhaustive()
    }
}

impl EtcdReader {
    /// Connects to `endpoints`, with failover between them.
    pub async fn connect(endpoints: &[String]) -> Result<Self, ClusterError> {
        Ok(Self {
            endpoints: endpoints.to_vec(),
            client: connect(endpoints, DEFAULT_REQUEST_TIMEOUT).await?,
            timeout: DEFAULT_REQUEST_TIMEOUT,
        })
    }

    /// The members, valid and invalid, and the revision they were read at.
    ///
    /// A failed read (a killed member, an election in progress: with
    /// `require_leader` set, etcd refuses reads until a leader exists) is
    /// retried with a fresh connection that starts from the next endpoint,
    /// because the balanced gRPC channel may keep routing to a dead member;
    /// the last error is returned once [`DEFAULT_READ_DEADLINE`] has passed.
    pub async fn snapshot(
        &mut self,
        cluster: &ClusterName,
    ) -> Result<(Members, i64), ClusterError> {
        let until = tokio::time::Instant::now() + DEFAULT_READ_DEADLINE;
        let mut backoff = Duration::from_millis(50);
        let mut attempt = 0usize;
        loop {
            let err = match self.read_once(cluster).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            attempt += 1;
            if tokio::time::Instant::now() + backoff >= until {
                return Err(err);
            }
            debug!(%err, attempt, "etcd read failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
            if let Ok(c) = connect_from(&self.endpoints, attempt, self.timeout).await {
                self.client = c;
            }
        }
    }

    async fn read_once(&mut self, cluster: &ClusterName) -> Result<(Members, i64), ClusterError> {
        let prefix = cluster.nodes_prefix();
        let resp = bounded(
            self.timeout,
            self.client
                .get(prefix, Some(GetOptions::new().with_prefix())),
        )
        .await?;
        let rev = resp.header().map_or(0, |h| h.revision());
        let kvs = resp.kvs().iter().filter_map(|kv| {
            let key = kv.key_str().ok()?;
            match cluster.node_of_key(key) {
                Some(node) => Some((node, kv.value())),
                None => {
                    warn!(key = %key.escape_debug(), "ignoring a key outside the member layout");
                    None
                }
            }
        });
        Ok((Members::from_kvs(kvs), rev))
    }

    /// The valid records of `cluster`; invalid ones are logged and left
    /// out (use [`EtcdReader::snapshot`] to count them).
    pub async fn list(&mut self, cluster: &ClusterName) -> Result<Vec<Record>, ClusterError> {
        Ok(self.snapshot(cluster).await?.0.into_records())
    }
}

/// Follows a cluster's members: yields a [`Change`] for every node that
/// appears, changes or leaves. Reconnects by itself with a bounded backoff;
/// after a reconnect (or a compaction) it lists the cluster again and
/// yields the difference, so no change is lost, only coalesced.
pub struct MemberWatch {
    endpoints: Vec<String>,
    cluster: ClusterName,
    members: Members,
    queue: VecDeque<Change>,
    stream: Option<WatchStream>,
    backoff: Duration,
}

impl std::fmt::Debug for MemberWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberWatch")
            .field("cluster", &self.cluster)
            .field("members", &self.members.len())
            .finish_non_exhaustive()
    }
}

impl MemberWatch {
    /// A watch of `cluster` on `endpoints`; connects on the first
    /// [`MemberWatch::next`].
    pub fn new(endpoints: Vec<String>, cluster: ClusterName) -> Self {
        Self {
            endpoints,
            cluster,
            members: Members::new(),
            queue: VecDeque::new(),
            stream: None,
            backoff: Duration::from_millis(200),
        }
    }

    /// The members as last seen.
    pub fn members(&self) -> &Members {
        &self.members
    }

    /// The next change. Waits as long as nothing changes; never fails (a
    /// lost connection is retried, logged once per outage).
    pub async fn next(&mut self) -> Change {
        loop {
            if let Some(c) = self.queue.pop_front() {
                return c;
            }
            if self.stream.is_none() {
                match self.resync().await {
                    Ok(()) => self.backoff = Duration::from_millis(200),
                    Err(e) => {
                        debug!(error = %e, "cluster watch: etcd unavailable, retrying");
                        tokio::time::sleep(self.backoff).await;
                        self.backoff = (self.backoff * 2).min(Duration::from_secs(2));
                    }
                }
                continue;
            }
            let stream = self.stream.as_mut().expect("checked");
            match stream.message().await {
                Ok(Some(resp)) if resp.canceled() || resp.compact_revision() > 0 => {
                    debug!(
                        reason = resp.cancel_reason(),
                        "cluster watch cancelled; re-listing"
                    );
                    self.stream = None;
                }
                Ok(Some(resp)) => {
                    for ev in resp.events() {
                        let Some(kv) = ev.kv() else { continue };
                        let Some(node) =
                            kv.key_str().ok().and_then(|k| self.cluster.node_of_key(k))
                        else {
                            continue;
                        };
                        let change = match ev.event_type() {
                            EventType::Put => self.members.put(node, kv.value()),
                            EventType::Delete => self.members.delete(node),
                        };
                        self.queue.extend(change);
                    }
                }
                Ok(None) | Err(_) => {
                    debug!("cluster watch stream ended; reconnecting");
                    self.stream = None;
                }
            }
        }
    }

    async fn resync(&mut self) -> Result<(), ClusterError> {
        let mut reader = EtcdReader::connect(&self.endpoints).await?;
        let (fresh, rev) = reader.snapshot(&self.cluster).await?;
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(rev + 1);
        let stream = bounded(
            reader.timeout,
            reader.client.watch(self.cluster.nodes_prefix(), Some(opts)),
        )
        .await?;
        self.queue.extend(self.members.replace(fresh));
        self.stream = Some(stream);
        Ok(())
    }
}
