use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use super::*;

const NOW: i64 = 1_795_000_000;

fn t(s: i64) -> Option<Time> {
    Some(Time(Timestamp::from_second(s).unwrap()))
}

struct Case {
    mode: ReplicationMode,
    status: NamespaceMappingStatus,
    synced_generation: Option<i64>,
    triggered: bool,
    watch: WatchState,
    halted: bool,
}

impl Case {
    fn new(mode: ReplicationMode) -> Self {
        Case {
            mode,
            status: NamespaceMappingStatus::default(),
            synced_generation: Some(1),
            triggered: false,
            watch: WatchState::default(),
            halted: false,
        }
    }
    fn synced_at(mut self, s: i64) -> Self {
        self.status.last_sync_time = t(s);
        self.status.phase = Some(SyncPhase::Completed);
        self
    }
    fn decide(&self, schedule: &str) -> Decision {
        let schedule = Schedule::parse(schedule).unwrap();
        decide(&Inputs {
            mode: self.mode,
            status: &self.status,
            generation: Some(1),
            synced_generation: self.synced_generation,
            triggered: self.triggered,
            schedule: Some(&schedule),
            jitter: Duration::ZERO,
            watch: self.watch,
            background_interval: Duration::from_secs(3600),
            halted: self.halted,
            now: NOW,
        })
    }
}

#[test]
fn scheduled_first_sync_is_immediate() {
    let d = Case::new(ReplicationMode::Scheduled).decide("*/5 * * * *");
    assert_eq!(d.sync, Some(Reason::Initial));
}

#[test]
fn scheduled_waits_for_the_next_run_and_reports_it() {
    // Synced 10 s ago on a 10-minute schedule that fired at a round time.
    let last = NOW - NOW % 600 + 1;
    let c = Case::new(ReplicationMode::Scheduled).synced_at(last);
    let d = c.decide("*/10 * * * *");
    assert_eq!(d.sync, None);
    let next = last - 1 + 600;
    assert_eq!(d.next_sync, Some(next));
    assert_eq!(d.requeue, Some(Duration::from_secs((next - NOW) as u64)));
}

#[test]
fn scheduled_runs_when_due() {
    let c = Case::new(ReplicationMode::Scheduled).synced_at(NOW - 3600);
    assert_eq!(c.decide("*/5 * * * *").sync, Some(Reason::Schedule));
}

#[test]
fn a_changed_spec_syncs_at_once() {
    let mut c = Case::new(ReplicationMode::Scheduled).synced_at(NOW - 1);
    c.synced_generation = Some(0);
    assert_eq!(c.decide("0 0 1 1 *").sync, Some(Reason::Initial));
}

#[test]
fn manual_mode_syncs_only_on_the_trigger() {
    let mut c = Case::new(ReplicationMode::Manual);
    let d = c.decide("*/5 * * * *");
    assert_eq!((d.sync, d.requeue), (None, None));
    c.triggered = true;
    assert_eq!(c.decide("*/5 * * * *").sync, Some(Reason::Manual));
}

#[test]
fn the_trigger_works_in_every_mode() {
    for mode in [ReplicationMode::Scheduled, ReplicationMode::Continuous] {
        let mut c = Case::new(mode).synced_at(NOW - 1);
        c.triggered = true;
        assert_eq!(c.decide("0 0 1 1 *").sync, Some(Reason::Manual));
    }
}

#[test]
fn an_interrupted_sync_resumes() {
    let mut c = Case::new(ReplicationMode::Manual).synced_at(NOW - 10);
    c.status.phase = Some(SyncPhase::Running);
    assert_eq!(c.decide("*/5 * * * *").sync, Some(Reason::Interrupted));
}

#[test]
fn retries_wait_for_their_time() {
    let mut c = Case::new(ReplicationMode::Scheduled).synced_at(NOW - 3600);
    c.status.phase = Some(SyncPhase::Failed);
    c.status.retry_status = Some(RetryStatus {
        next_retry_time: t(NOW + 20),
        retries_remaining: 3,
        backoff_duration: "20s".into(),
    });
    let d = c.decide("*/5 * * * *");
    assert_eq!(d.sync, None, "the schedule does not overtake a pending retry");
    assert_eq!(d.requeue, Some(Duration::from_secs(20)));
    c.status.retry_status.as_mut().unwrap().next_retry_time = t(NOW - 1);
    assert_eq!(c.decide("*/5 * * * *").sync, Some(Reason::Retry));
}

#[test]
fn halted_mappings_wait_for_a_change_or_trigger() {
    let mut c = Case::new(ReplicationMode::Scheduled).synced_at(NOW - 3600);
    c.halted = true;
    assert_eq!(c.decide("*/5 * * * *").sync, None);
    c.triggered = true;
    assert_eq!(c.decide("*/5 * * * *").sync, Some(Reason::Manual));
}

#[test]
fn continuous_follows_the_watches_and_the_background_interval() {
    let mut c = Case::new(ReplicationMode::Continuous).synced_at(NOW - 60);
    let d = c.decide("*/5 * * * *");
    assert_eq!(d.sync, None);
    assert_eq!(d.next_sync, Some(NOW - 60 + 3600));
    c.watch.changes = true;
    assert_eq!(c.decide("*/5 * * * *").sync, Some(Reason::Changes));
    c.watch.relisted = true;
    assert_eq!(c.decide("*/5 * * * *").sync, Some(Reason::Relisted));
    let c = Case::new(ReplicationMode::Continuous).synced_at(NOW - 7200);
    assert_eq!(c.decide("*/5 * * * *").sync, Some(Reason::Background));
}

#[test]
fn retry_backoff_follows_retry_config() {
    let config = RetryConfig {
        max_retries: 3,
        initial_backoff: "5s".into(),
        max_backoff: "12s".into(),
        backoff_multiplier: 200,
    };
    let first = next_retry(&config, None, FailureMode::RetryAndWait, NOW).unwrap();
    assert_eq!(
        (first.retries_remaining, first.backoff_duration.as_str()),
        (2, "5s")
    );
    assert_eq!(first.next_retry_time, t(NOW + 5));
    let second = next_retry(&config, Some(&first), FailureMode::RetryAndWait, NOW).unwrap();
    assert_eq!(
        (second.retries_remaining, second.backoff_duration.as_str()),
        (1, "10s")
    );
    let third = next_retry(&config, Some(&second), FailureMode::RetryOnly, NOW).unwrap();
    assert_eq!(
        (third.retries_remaining, third.backoff_duration.as_str()),
        (0, "12s")
    );
    assert_eq!(
        next_retry(&config, Some(&third), FailureMode::RetryAndWait, NOW),
        None
    );
    assert_eq!(next_retry(&config, None, FailureMode::WaitForNextSync, NOW), None);
    assert_eq!(next_retry(&config, None, FailureMode::FailFast, NOW), None);
}

#[test]
fn durations_match_the_schema_pattern() {
    let re = regex::Regex::new(dr_syncer_core::api::DURATION_PATTERN).unwrap();
    for (secs, want) in [(0, "0s"), (45, "45s"), (60, "1m"), (3723, "1h2m3s"), (7200, "2h")] {
        let s = format_duration(Duration::from_secs(secs));
        assert_eq!(s, want);
        assert!(re.is_match(&s));
    }
}

#[test]
fn jitter_is_stable_and_bounded() {
    let a = jitter("uid-a", Some(Duration::from_secs(300)));
    assert_eq!(a, jitter("uid-a", Some(Duration::from_secs(300))));
    assert!(a <= Duration::from_secs(30));
    assert_eq!(jitter("uid-a", Some(Duration::from_secs(2))), Duration::ZERO);
    assert_eq!(jitter("uid-a", None), Duration::ZERO);
    let spread: std::collections::BTreeSet<u64> = (0..50)
        .map(|i| jitter(&format!("uid-{i}"), Some(Duration::from_secs(3600))).as_secs())
        .collect();
    assert!(spread.len() > 10, "{spread:?}");
}

#[test]
fn only_time_driven_syncs_are_periodic() {
    for (reason, periodic) in [
        (Reason::Schedule, true),
        (Reason::Background, true),
        (Reason::Relisted, true),
        (Reason::Initial, false),
        (Reason::Manual, false),
        (Reason::Retry, false),
        (Reason::Interrupted, false),
        (Reason::Changes, false),
    ] {
        assert_eq!(reason.is_periodic(), periodic, "{reason:?}");
    }
}
