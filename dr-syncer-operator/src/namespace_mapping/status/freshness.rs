//! The `Stale` condition: whether the DR copy is older than its mode lets it be (pure).

use std::time::Duration;

use dr_syncer_core::api::{NamespaceMappingStatus, ReplicationMode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use dr_syncer_core::schedule::format_duration;

use crate::conditions;

/// What the `Stale` condition is measured against.
#[derive(Debug, Clone)]
pub struct Freshness {
    /// The mapping's mode (Manual mappings are never stale: a person decides when they sync).
    pub mode: ReplicationMode,
    /// Scheduled: the schedule's period.
    pub period: Option<Duration>,
    /// Continuous: how long the oldest source change not on the DR side yet has waited.
    pub pending: Option<Duration>,
    /// Continuous: the interval of the full syncs (PVC data is copied with them).
    pub background: Duration,
    /// When the mapping was created (Unix seconds).
    pub created: Option<i64>,
    /// Now (Unix seconds).
    pub now: i64,
    /// Scheduled: stale after this many periods.
    pub periods: u32,
    /// Continuous: stale after this long.
    pub after: Duration,
}

fn secs_of(t: &Time) -> i64 {
    t.0.as_second()
}

/// Whether the DR copy is stale (see the `Stale` condition): `(message when stale, when to look again)`.
/// Objects: Scheduled, no successful sync for `periods` schedule periods; Continuous, a source change
/// waiting longer than `after`, or no successful sync for `after` while the syncs fail. PVC data: a
/// volume whose last successful copy is older than the same number of periods (Continuous: of full
/// syncs). A DR side that is the live site (`DestinationActive`) is not stale: nothing is meant to reach
/// it.
pub fn staleness(s: &NamespaceMappingStatus, f: &Freshness) -> (Option<String>, Option<i64>) {
    let is_true = |t: &str| {
        s.conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == t && c.status == "True")
    };
    if f.mode == ReplicationMode::Manual || is_true("DestinationActive") {
        return (None, None);
    }
    let synced_ok = is_true("Synced");
    let last_ok = s
        .last_successful_sync_time
        .as_ref()
        .or(s.last_sync_time.as_ref().filter(|_| synced_ok))
        .map(secs_of)
        .or(f.created);
    let mut problems = Vec::new();
    let mut next: Option<i64> = None;
    let mut look_at = |t: i64| next = Some(next.map_or(t, |n| n.min(t)));
    let (objects_after, data_after) = match f.mode {
        ReplicationMode::Scheduled => {
            let t = f.period.map(|p| p * f.periods);
            (t, t)
        }
        _ => (Some(f.after), Some(f.background * f.periods)),
    };
    if let (Some(limit), Some(last)) = (objects_after, last_ok) {
        let limit_s = limit.as_secs() as i64;
        let age = f.now - last;
        let waiting = f.pending.filter(|_| f.mode == ReplicationMode::Continuous);
        if let Some(p) = waiting.filter(|p| *p > limit) {
            problems.push(format!(
                "a source change has waited {} to reach the DR side (more than {})",
                format_duration(p),
                format_duration(limit)
            ));
        } else if (f.mode == ReplicationMode::Scheduled || !synced_ok) && age > limit_s {
            problems.push(format!(
                "no successful sync for {} (more than {})",
                format_duration(Duration::from_secs(age as u64)),
                format_duration(limit)
            ));
        } else {
            if f.mode == ReplicationMode::Scheduled || !synced_ok {
                look_at(last + limit_s + 1);
            }
            if let Some(p) = waiting {
                look_at(f.now + (limit.saturating_sub(p)).as_secs() as i64 + 1);
            }
        }
    }
    if let Some(limit) = data_after {
        let limit_s = limit.as_secs() as i64;
        let mut old = Vec::new();
        for v in s.data_sync.iter().flatten().filter(|v| v.phase != "Skipped") {
            let Some(last) = v.last_sync_time.as_ref().map(secs_of).or(f.created) else {
                continue;
            };
            if f.now - last > limit_s {
                old.push(v.destination.clone());
            } else {
                look_at(last + limit_s + 1);
            }
        }
        if !old.is_empty() {
            problems.push(format!(
                "PVC data not copied successfully for more than {}: {}",
                format_duration(limit),
                old.join(", ")
            ));
        }
    }
    if problems.is_empty() {
        (None, next)
    } else {
        (Some(problems.join("; ")), None)
    }
}

/// Set the `Stale` condition (True with what is stale, else False) on `s`; returns when to look again.
pub fn set_staleness(s: &mut NamespaceMappingStatus, f: &Freshness, generation: Option<i64>) -> Option<i64> {
    let (stale, next) = staleness(s, f);
    let mut conds = s.conditions.take().unwrap_or_default();
    match stale {
        Some(message) => conditions::set(&mut conds, "Stale", true, "Stale", message, generation),
        None if f.mode == ReplicationMode::Manual => conditions::remove(&mut conds, "Stale"),
        None => conditions::set(
            &mut conds,
            "Stale",
            false,
            "Fresh",
            "the DR copy is within its staleness threshold",
            generation,
        ),
    }
    s.conditions = Some(conds);
    next
}
