//! When a NamespaceMapping syncs: the pure decision from its mode, status and triggers.

use crate::slots::SyncClass;
pub use crate::workers::WatchState;
use std::time::Duration;

use dr_syncer_core::{
    api::{FailureMode, NamespaceMappingStatus, ReplicationMode, RetryConfig, RetryStatus, SyncPhase},
    config::parse_duration,
    schedule::Schedule,
};

/// Why a sync runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Never synced (or the spec changed since the last sync).
    Initial,
    /// The schedule fired.
    Schedule,
    /// `dr-syncer.io/sync-now` (or the deprecated `dr-syncer.io/trigger-sync`).
    Manual,
    /// A retry after a failure.
    Retry,
    /// A sync was interrupted (the operator stopped while the phase was `Running`).
    Interrupted,
    /// Continuous mode: the watches (re)listed, so the whole namespace is compared.
    Relisted,
    /// Continuous mode: the periodic full resync.
    Background,
    /// Continuous mode: source changes seen by the watches.
    Changes,
}

impl Reason {
    /// Whether this sync compares the whole namespace (everything but [`Reason::Changes`]).
    pub fn is_full(self) -> bool {
        self != Reason::Changes
    }

    /// Whether the sync runs because time passed (the schedule, a background resync, a re-list), not
    /// because something asked for it or changed: such syncs write Events only when they find news.
    pub fn is_periodic(self) -> bool {
        class_of(self) == SyncClass::Periodic
    }

    /// A short description for events.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::Initial => "first sync of this spec",
            Reason::Schedule => "scheduled",
            Reason::Manual => "requested with dr-syncer.io/sync-now",
            Reason::Retry => "retry after a failure",
            Reason::Interrupted => "resuming an interrupted sync",
            Reason::Relisted => "source watches listed",
            Reason::Background => "background resync",
            Reason::Changes => "source changes",
        }
    }
}

/// The sync slot class of a sync started for `reason` ([`crate::slots`]).
pub fn class_of(reason: Reason) -> SyncClass {
    match reason {
        Reason::Changes => SyncClass::Changes,
        Reason::Initial | Reason::Manual | Reason::Retry | Reason::Interrupted => SyncClass::Requested,
        Reason::Schedule | Reason::Background | Reason::Relisted => SyncClass::Periodic,
    }
}

/// Everything the decision looks at.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The mode.
    pub mode: ReplicationMode,
    /// Current status.
    pub status: &'a NamespaceMappingStatus,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The generation the last sync ran with (`Synced` condition's observedGeneration).
    pub synced_generation: Option<i64>,
    /// A manual trigger annotation is present.
    pub triggered: bool,
    /// Scheduled mode's schedule.
    pub schedule: Option<&'a Schedule>,
    /// Scheduled mode's jitter for this mapping.
    pub jitter: Duration,
    /// Continuous mode's watches.
    pub watch: WatchState,
    /// Continuous mode's full resync interval.
    pub background_interval: Duration,
    /// Retries were exhausted under `RetryOnly`: no scheduled or background syncs until the spec
    /// changes or a manual trigger.
    pub halted: bool,
    /// Now, Unix seconds.
    pub now: i64,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Sync now, for this reason.
    pub sync: Option<Reason>,
    /// The next scheduled (or background) sync, Unix seconds, for `status.nextSyncTime`.
    pub next_sync: Option<i64>,
    /// Reconcile again after this long, if nothing else happens first.
    pub requeue: Option<Duration>,
}

fn secs(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> i64 {
    t.0.as_second()
}

/// Decide (see the module docs).
pub fn decide(i: &Inputs<'_>) -> Decision {
    let spec_changed = i.synced_generation != i.generation;
    let last = i.status.last_sync_time.as_ref().map(secs);
    let mut d = Decision {
        sync: None,
        next_sync: None,
        requeue: None,
    };
    if i.triggered {
        d.sync = Some(Reason::Manual);
        return d;
    }
    if i.status.phase == Some(SyncPhase::Running) {
        d.sync = Some(Reason::Interrupted);
        return d;
    }
    // A pending retry comes first, unless the spec changed (then the new spec syncs at once).
    let retry_at = i
        .status
        .retry_status
        .as_ref()
        .filter(|r| r.retries_remaining >= 0)
        .and_then(|r| r.next_retry_time.as_ref())
        .map(secs);
    if let Some(t) = retry_at
        && !spec_changed
    {
        if i.now >= t {
            d.sync = Some(Reason::Retry);
            return d;
        }
        d.requeue = Some(Duration::from_secs((t - i.now) as u64));
    }
    let halted = i.halted && !spec_changed;
    match i.mode {
        ReplicationMode::Manual => {}
        ReplicationMode::Scheduled => {
            if last.is_none() || spec_changed {
                d.sync = Some(Reason::Initial);
                return d;
            }
            if halted {
                return d;
            }
            let base = last.unwrap_or(i.now);
            let next = i
                .schedule
                .and_then(|s| s.next_after_unix(base))
                .map(|n| n + i.jitter.as_secs() as i64);
            d.next_sync = next;
            match next {
                // A pending retry stands in for an overdue schedule (its time is the requeue above).
                Some(n) if i.now >= n && retry_at.is_some() => {}
                Some(n) if i.now >= n => d.sync = Some(Reason::Schedule),
                Some(n) => d.requeue = min(d.requeue, Duration::from_secs((n - i.now).max(1) as u64)),
                None => {}
            }
        }
        ReplicationMode::Continuous => {
            if i.watch.relisted {
                d.sync = Some(Reason::Relisted);
                return d;
            }
            if i.watch.changes {
                d.sync = Some(Reason::Changes);
                return d;
            }
            if halted {
                return d;
            }
            if let Some(last) = last {
                let next = last + i.background_interval.as_secs().max(1) as i64;
                d.next_sync = Some(next);
                if i.now < next {
                    d.requeue = min(d.requeue, Duration::from_secs((next - i.now) as u64));
                } else if retry_at.is_none() {
                    d.sync = Some(Reason::Background);
                }
            }
        }
    }
    d
}

fn min(a: Option<Duration>, b: Duration) -> Option<Duration> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// The retry state after a failed sync, per `retryConfig` (`None` when no retry is due: the mode says
/// not to retry, or the retries are used up).
pub fn next_retry(
    config: &RetryConfig,
    previous: Option<&RetryStatus>,
    mode: FailureMode,
    now: i64,
) -> Option<RetryStatus> {
    if !matches!(mode, FailureMode::RetryAndWait | FailureMode::RetryOnly) {
        return None;
    }
    let max = config.max_retries.max(0);
    // How many retries were made already: from the previous state, or none.
    let done = previous.map_or(0, |p| (max - p.retries_remaining).clamp(0, max));
    if done >= max {
        return None;
    }
    let initial = parse_duration(&config.initial_backoff).unwrap_or(Duration::from_secs(5));
    let cap = parse_duration(&config.max_backoff).unwrap_or(Duration::from_secs(300));
    let factor = f64::from(config.backoff_multiplier.clamp(100, 1000)) / 100.0;
    let backoff = (initial.as_secs_f64() * factor.powi(done))
        .min(cap.as_secs_f64())
        .max(1.0);
    let backoff = Duration::from_secs(backoff.round() as u64);
    Some(RetryStatus {
        next_retry_time: k8s_openapi::jiff::Timestamp::from_second(now + backoff.as_secs() as i64)
            .ok()
            .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time),
        retries_remaining: max - done - 1,
        backoff_duration: format_duration(backoff),
    })
}

pub use dr_syncer_core::schedule::format_duration;

/// A stable jitter for one mapping: up to a tenth of the schedule's interval, at most 30 s, derived
/// from the mapping's uid so that mappings on the same schedule spread out but each keeps its slot.
pub fn jitter(uid: &str, interval: Option<Duration>) -> Duration {
    let Some(interval) = interval else {
        return Duration::ZERO;
    };
    let max = (interval.as_secs() / 10).min(30);
    if max == 0 {
        return Duration::ZERO;
    }
    let hash = uid.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    Duration::from_secs(hash % (max + 1))
}

#[cfg(test)]
mod tests;
