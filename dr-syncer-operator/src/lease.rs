//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leader election does it.
//!
//! - A candidate takes the Lease when it has no holder, or when its record has not changed for
//!   `lease_duration` **as observed by this process** (local monotonic clock, so clock skew between
//!   replicas does not matter).
//! - The holder renews every `retry_period`; when it cannot renew within `renew_deadline` it has lost
//!   leadership and must stop writing (the operator exits, and its Deployment restarts it as a candidate).
//!   A renewal request that hangs is cut off at the deadline (renew deadline < lease duration, so this
//!   replica gives up before a standby can take the lease).
//! - Every write carries the resourceVersion that was read, so two candidates never both win.
//! - On a clean shutdown the holder releases the Lease (empty holder), so a standby takes over at once.
//!
//! With the defaults (15 s / 10 s / 2 s) a standby takes over at most ~17 s after the leader died.

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Timing of the election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long a Lease is valid without renewal.
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it gives up leadership.
    pub renew_deadline: Duration,
    /// How often candidates retry and the holder renews.
    pub retry_period: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// One participant of the election.
#[derive(Debug, Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: LeaseTiming,
}

/// What this process last saw of the Lease: the record and when it last changed.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    record: Option<(Option<String>, Option<Timestamp>, Option<String>)>,
    since: Option<Instant>,
}

impl Observed {
    /// Record `lease` as seen now; returns its holder while that is live: it has one, and the record
    /// (holder, renew time, resourceVersion) changed within the lease's duration (`default_duration`
    /// when the Lease names none), as observed by this process.
    pub(crate) fn see(&mut self, lease: Option<&Lease>, default_duration: Duration) -> Option<String> {
        let spec = lease.and_then(|l| l.spec.clone()).unwrap_or_default();
        let record = (
            spec.holder_identity.clone(),
            spec.renew_time.as_ref().map(|t| t.0),
            lease.and_then(|l| l.metadata.resource_version.clone()),
        );
        if self.record.as_ref() != Some(&record) {
            self.record = Some(record);
            self.since = Some(Instant::now());
        }
        let valid_for = spec
            .lease_duration_seconds
            .map_or(default_duration, |s| Duration::from_secs(s.max(1) as u64));
        let expired = self.since.is_none_or(|s| s.elapsed() > valid_for);
        spec.holder_identity.filter(|h| !h.is_empty() && !expired)
    }
}

impl LeaderElector {
    /// A participant `identity` for Lease `namespace/name`.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str, timing: LeaseTiming) -> Self {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            timing,
        }
    }

    /// This participant's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Wait until this participant holds the Lease (or `cancel` fires: `false`).
    pub async fn acquire(&self, cancel: &CancellationToken) -> bool {
        let mut observed = Observed::default();
        let mut announced = false;
        loop {
            let attempt = tokio::time::timeout(
                self.timing.lease_duration,
                self.try_acquire_or_renew(&mut observed),
            );
            match attempt.await.unwrap_or_else(|_| Ok(false)) {
                Ok(true) => {
                    info!(identity = %self.identity, lease = %self.name, "became the leader");
                    return true;
                }
                Ok(false) => {
                    if !announced {
                        let holder = observed
                            .record
                            .as_ref()
                            .and_then(|r| r.0.clone())
                            .unwrap_or_default();
                        info!(identity = %self.identity, %holder, "waiting for the leader lease");
                        announced = true;
                    }
                }
                Err(e) => warn!(error = %e, "leader election: cannot read or write the lease"),
            }
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep(self.timing.retry_period) => {}
            }
        }
    }

    /// Renew the Lease every `retry_period` until `cancel` fires (then release it and return `true`) or a
    /// renewal has not succeeded for `renew_deadline` (leadership lost: return `false`).
    pub async fn hold(&self, cancel: &CancellationToken) -> bool {
        let mut observed = Observed::default();
        let mut last_renewed = Instant::now();
        loop {
            tokio::select! {
                () = cancel.cancelled() => {
                    self.release().await;
                    return true;
                }
                () = tokio::time::sleep(self.timing.retry_period) => {}
            }
            // A renewal that hangs (a stalled controller cluster) must not keep this replica writing past
            // the renew deadline, while a standby takes the lease once it expires: it is bounded by what
            // is left of the deadline.
            let left = self.timing.renew_deadline.saturating_sub(last_renewed.elapsed());
            match tokio::time::timeout(left, self.try_acquire_or_renew(&mut observed)).await {
                Ok(Ok(true)) => last_renewed = Instant::now(),
                Ok(Ok(false)) => {
                    warn!(identity = %self.identity, "leader lease taken by another participant");
                    return false;
                }
                Ok(Err(e)) => warn!(error = %e, "leader lease renewal failed"),
                Err(_) => warn!(identity = %self.identity, "leader lease renewal did not answer in time"),
            }
            if last_renewed.elapsed() > self.timing.renew_deadline {
                warn!(identity = %self.identity, "could not renew the leader lease in time");
                return false;
            }
        }
    }

    /// Give the Lease up (best effort), so that a standby takes over without waiting for it to expire.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => info!(identity = %self.identity, "released the leader lease"),
            Err(e) => warn!(error = %e, "could not release the leader lease"),
        }
    }

    /// One round of the election: `Ok(true)` when this participant holds the Lease afterwards.
    pub(crate) async fn try_acquire_or_renew(&self, observed: &mut Observed) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let duration_secs = self.timing.lease_duration.as_secs().max(1) as i32;
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let live = observed.see(
            Some(&lease),
            self.timing.lease_duration.max(Duration::from_secs(1)),
        );
        let held_by_me = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        if live.is_some_and(|h| h != self.identity) {
            return Ok(false);
        }
        let new_spec = lease.spec.get_or_insert_with(Default::default);
        if !held_by_me {
            new_spec.acquire_time = Some(MicroTime(now));
            new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        new_spec.holder_identity = Some(self.identity.clone());
        new_spec.lease_duration_seconds = Some(duration_secs);
        new_spec.renew_time = Some(MicroTime(now));
        // `replace` sends the resourceVersion we read: a concurrent writer makes this a 409.
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(written) => {
                observed.record = Some((
                    Some(self.identity.clone()),
                    Some(now),
                    written.metadata.resource_version,
                ));
                observed.since = Some(Instant::now());
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}
