//! When a mapping syncs next, and when a continuous batch's status may wait.

use std::time::Duration;

use dr_syncer_core::{
    api::{NamespaceMapping, ReplicationMode, RetryConfig},
    schedule::Schedule,
};
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::ResourceExt;
use serde_json::json;

use crate::namespace_mapping::{due, status::Outcome};

/// When the next sync runs: a Scheduled mapping's next time (with its jitter), a Continuous mapping's
/// background sync; none for a Manual one, or one whose retries are exhausted (halted).
pub(super) fn next_sync_time(
    nm: &NamespaceMapping,
    schedule: Option<&Schedule>,
    outcome: &Outcome,
    background: Duration,
) -> Option<Time> {
    let finished = outcome.finished.0.as_second();
    match nm.spec.replication_mode {
        ReplicationMode::Scheduled if !outcome.halted => schedule
            .and_then(|s| s.next_after_unix(finished))
            .map(|n| n + due::jitter(&nm.uid().unwrap_or_default(), s_interval(schedule)).as_secs() as i64),
        ReplicationMode::Continuous if !outcome.halted => Some(finished + background.as_secs() as i64),
        _ => None,
    }
    .and_then(|s| Timestamp::from_second(s).ok())
    .map(Time)
}

/// How often continuous mode's batches refresh the times in status when nothing else changed.
pub(in crate::namespace_mapping) const TIMES_REFRESH: i64 = 5;

/// Whether `new` differs from `old` only in the times every continuous batch moves (last sync, last
/// watch event, next background sync, duration) and those were written less than [`TIMES_REFRESH`]
/// seconds ago: such a batch does not write status (at 100 changes/s it would write it 10 times a second).
pub(super) fn only_times_moved(
    old: &dr_syncer_core::api::NamespaceMappingStatus,
    new: &dr_syncer_core::api::NamespaceMappingStatus,
) -> bool {
    let recent = match (&old.last_sync_time, &new.last_sync_time) {
        (Some(a), Some(b)) => b.0.as_second() - a.0.as_second() < TIMES_REFRESH,
        _ => false,
    };
    let strip = |s: &dr_syncer_core::api::NamespaceMappingStatus| {
        let mut s = s.clone();
        s.last_sync_time = None;
        s.last_successful_sync_time = None;
        s.last_watch_event = None;
        s.next_sync_time = None;
        if let Some(stats) = s.sync_stats.as_mut() {
            stats.last_sync_duration = String::new();
        }
        s
    };
    let first_event = old.last_watch_event.is_none() && new.last_watch_event.is_some();
    recent && !first_event && strip(old) == strip(new)
}

pub(in crate::namespace_mapping) fn s_interval(schedule: Option<&Schedule>) -> Option<Duration> {
    schedule.and_then(|s| s.interval_after(chrono::Utc::now()))
}

/// The Go operator's retry defaults.
pub(in crate::namespace_mapping) fn default_retry() -> RetryConfig {
    serde_json::from_value(json!({})).unwrap_or(RetryConfig {
        max_retries: 5,
        initial_backoff: "5s".into(),
        max_backoff: "5m".into(),
        backoff_multiplier: 200,
    })
}
