use dr_syncer_core::{
    api::ReplicationMode,
    engine::{ObjectFailure, WorkloadScale},
};
use k8s_openapi::jiff::Timestamp;

use super::*;

fn time(s: i64) -> Time {
    Time(Timestamp::from_second(s).unwrap())
}

fn report(ns: &str) -> SyncReport {
    let mut r = SyncReport {
        source_namespace: ns.into(),
        destination_namespace: format!("{ns}-dr"),
        ..Default::default()
    };
    r.kinds.insert(
        "ConfigMap".into(),
        KindStats {
            created: 2,
            failed: 1,
            skipped: 2,
            excluded: 1,
            ..Default::default()
        },
    );
    r.kinds.insert(
        "Deployment.apps".into(),
        KindStats {
            unchanged: 1,
            ..Default::default()
        },
    );
    r.failures.push(ObjectFailure {
        object: format!("ConfigMap/{ns}-dr/bad"),
        kind: "ApplyFailed".into(),
        category: FailureCategory::ValidationFailure,
        message: format!("ConfigMap/{ns}-dr/bad: ConfigMap \"bad\" is invalid (422)"),
        transient: false,
    });
    r.workloads.push(WorkloadScale {
        kind: "Deployment".into(),
        name: "web".into(),
        source_replicas: 3,
    });
    r
}

fn outcome(reports: Vec<SyncReport>) -> Outcome {
    Outcome {
        reason: Reason::Schedule,
        reports,
        run_errors: Vec::new(),
        finished: time(1000),
        duration: Duration::from_secs(3),
        retry: None,
        halted: false,
        clusters: ("prod".into(), "dr".into()),
        selected: None,
        last_watch_event: None,
        both_active: Vec::new(),
        recent_deletions: Vec::new(),
    }
}

#[test]
fn one_rejected_object_gives_exact_counts() {
    let s = after_sync(&Default::default(), &outcome(vec![report("shop")]), Some(4));
    assert_eq!(s.phase, Some(SyncPhase::Failed));
    let stats = s.sync_stats.as_ref().unwrap();
    // ConfigMaps: 2 created + 1 failed + 1 immutable-skipped (the other skip was excluded); 1 Deployment.
    assert_eq!(
        (stats.total_resources, stats.successful_syncs, stats.failed_syncs),
        (5, 3, 1)
    );
    assert_eq!(stats.last_sync_duration, "3s");
    let groups = s.resource_groups.as_ref().unwrap();
    let cm = groups.iter().find(|g| g.group_kind == "ConfigMap").unwrap();
    assert_eq!(
        (cm.total_count, cm.synced_count, cm.failed_count, cm.pending_count),
        (4, 2, 1, 1)
    );
    let last = s.last_error.as_ref().unwrap();
    assert_eq!(last.resource.as_deref(), Some("ConfigMap/shop-dr/bad"));
    assert!(last.message.contains("bad"));
    let rs = &s.resource_status.as_ref().unwrap()[0];
    assert_eq!(
        (rs.kind.as_str(), rs.namespace.as_deref(), rs.name.as_str()),
        ("ConfigMap", Some("shop-dr"), "bad")
    );
    assert_eq!(
        s.error_categories.as_ref().unwrap()[0].category,
        "validationFailure"
    );
    let synced = s
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Synced")
        .unwrap();
    assert_eq!(
        (synced.status.as_str(), synced.reason.as_str()),
        ("False", "SyncFailed")
    );
    assert_eq!(synced.observed_generation, Some(4));
    assert_eq!(s.deployment_scales.as_ref().unwrap()[0].original_replicas, 3);
}

#[test]
fn success_clears_errors_and_keeps_the_scale_timestamp() {
    let first = after_sync(&Default::default(), &outcome(vec![report("shop")]), Some(1));
    let mut ok = report("shop");
    ok.failures.clear();
    ok.kinds.get_mut("ConfigMap").unwrap().failed = 0;
    let mut o = outcome(vec![ok]);
    o.finished = time(2000);
    let s = after_sync(&first, &o, Some(1));
    assert_eq!(s.phase, Some(SyncPhase::Completed));
    assert!(s.last_error.is_none() && s.error_categories.is_none() && s.resource_status.is_none());
    assert_eq!(s.last_sync_time, Some(time(2000)));
    assert_eq!(
        s.deployment_scales.as_ref().unwrap()[0].last_synced_at,
        Some(time(1000)),
        "unchanged replicas keep their timestamp"
    );
    let synced = s
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Synced")
        .unwrap();
    assert_eq!(synced.reason, "SyncCompleted");
    assert_eq!(
        synced.message,
        "Resources successfully synced from cluster prod to cluster dr"
    );
}

#[test]
fn incremental_batches_keep_the_full_counts() {
    let full = after_sync(&Default::default(), &outcome(vec![report("shop")]), Some(1));
    let mut small = SyncReport {
        source_namespace: "shop".into(),
        ..Default::default()
    };
    small.kinds.insert(
        "ConfigMap".into(),
        KindStats {
            updated: 1,
            ..Default::default()
        },
    );
    let mut o = outcome(vec![small]);
    o.reason = Reason::Changes;
    o.last_watch_event = Some(time(999));
    let s = after_sync(&full, &o, Some(1));
    assert_eq!(s.sync_stats.as_ref().unwrap().total_resources, 5);
    assert_eq!(s.resource_groups, full.resource_groups);
    assert_eq!(s.last_watch_event, Some(time(999)));
    assert_eq!(s.phase, Some(SyncPhase::Completed));
}

#[test]
fn active_destinations_are_held_idle_and_keep_the_last_counts() {
    let full = after_sync(&Default::default(), &outcome(vec![report("shop")]), Some(1));
    // The next sync finds the DR namespace active: nothing compared, nothing written.
    let held = SyncReport {
        source_namespace: "shop".into(),
        destination_namespace: "shop-dr".into(),
        destination_active: true,
        ..Default::default()
    };
    let s = after_sync(&full, &outcome(vec![held]), Some(2));
    let cond = |t: &str| {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .cloned()
            .unwrap()
    };
    let c = cond("DestinationActive");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "DestinationActive")
    );
    assert!(c.message.contains("shop-dr"), "{}", c.message);
    let synced = cond("Synced");
    assert_eq!(
        (synced.status.as_str(), synced.reason.as_str()),
        ("True", "DestinationActive"),
        "healthy and idle"
    );
    assert_eq!(s.phase, Some(SyncPhase::Completed));
    assert_eq!(s.sync_stats, full.sync_stats, "the last full sync's counts stay");
    assert_eq!(s.resource_groups, full.resource_groups);
    assert!(s.last_error.is_none());

    // Production back, running, unfenced: both sites active.
    let mut o = outcome(vec![SyncReport {
        destination_active: true,
        ..Default::default()
    }]);
    o.both_active = vec!["shop-dr (running on production: Deployment/web)".into()];
    let s = after_sync(&full, &o, Some(2));
    let c = s
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "BothSitesActive")
        .unwrap();
    assert_eq!(c.status, "True");
    assert!(
        c.message.contains("Deployment/web") && c.message.contains("fence"),
        "{}",
        c.message
    );
    // Fenced: the condition goes.
    let s = after_sync(&s, &outcome(vec![SyncReport::default()]), Some(2));
    assert!(
        s.conditions
            .unwrap()
            .iter()
            .all(|c| c.type_ != "BothSitesActive" && c.type_ != "DestinationActive")
    );
}

#[test]
fn retries_and_exhaustion_are_explained() {
    let mut o = outcome(vec![report("shop")]);
    o.retry = Some(RetryStatus {
        next_retry_time: Some(time(1010)),
        retries_remaining: 4,
        backoff_duration: "10s".into(),
    });
    let s = after_sync(&Default::default(), &o, None);
    let c = s
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Synced")
        .unwrap();
    assert!(
        c.message.contains("Retry scheduled in 10s (4 retries remaining)"),
        "{}",
        c.message
    );
    o.retry = None;
    o.halted = true;
    let s = after_sync(&Default::default(), &o, None);
    let c = s
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Synced")
        .unwrap();
    assert_eq!(c.reason, "RetriesExhausted");
}

#[test]
fn selected_namespaces_each_get_an_entry() {
    let mut o = outcome(vec![report("a")]);
    o.run_errors.push(RunError {
        source_namespace: "b".into(),
        destination_namespace: "b-dr".into(),
        kind: "SourceFailed".into(),
        category: FailureCategory::ResourceNotFound,
        message: "namespace b: not found".into(),
    });
    o.selected = Some(vec![("a".into(), "a-dr".into()), ("b".into(), "b-dr".into())]);
    let s = after_sync(&Default::default(), &o, None);
    let ns = s.namespaces.as_ref().unwrap();
    assert_eq!(ns.len(), 2);
    assert_eq!((ns[0].source.as_str(), ns[0].destination.as_str()), ("a", "a-dr"));
    assert_eq!(ns[0].phase, Some(SyncPhase::Failed));
    assert_eq!(ns[1].message.as_deref(), Some("namespace b: not found"));
    assert_eq!(
        s.last_error.as_ref().unwrap().resource.as_deref(),
        Some("Namespace/b")
    );
}

/// A sync cut short is recorded as failed with a retry; one cut short again backs off further, until
/// the retries are used up.
#[test]
fn interrupted_syncs_back_off_more_each_time() {
    let retry = RetryConfig {
        max_retries: 3,
        initial_backoff: "5s".into(),
        max_backoff: "1m".into(),
        backoff_multiplier: 200,
    };
    let running = NamespaceMappingStatus {
        phase: Some(SyncPhase::Running),
        ..Default::default()
    };
    let first = after_interruption(&running, &retry, 1000, Some(2));
    assert_eq!(first.phase, Some(SyncPhase::Failed));
    let r = first.retry_status.clone().unwrap();
    assert_eq!((r.backoff_duration.as_str(), r.retries_remaining), ("5s", 2));
    assert_eq!(r.next_retry_time.unwrap().0.as_second(), 1005);
    let synced = first
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == "Synced")
        .unwrap();
    assert_eq!(
        (synced.status.as_str(), synced.reason.as_str()),
        ("False", "SyncInterrupted")
    );
    assert!(first.last_error.unwrap().message.contains("cut short"));

    let again = NamespaceMappingStatus {
        phase: Some(SyncPhase::Running),
        ..after_interruption(&running, &retry, 1000, Some(2))
    };
    let second = after_interruption(&again, &retry, 2000, Some(2));
    assert_eq!(second.retry_status.as_ref().unwrap().backoff_duration, "10s");
    let third = after_interruption(
        &NamespaceMappingStatus {
            phase: Some(SyncPhase::Running),
            ..second
        },
        &retry,
        3000,
        Some(2),
    );
    assert_eq!(third.retry_status.as_ref().unwrap().backoff_duration, "20s");
    let used_up = after_interruption(&third, &retry, 4000, Some(2));
    assert!(used_up.retry_status.is_none());
}

fn fresh(mode: ReplicationMode) -> Freshness {
    Freshness {
        mode,
        period: Some(Duration::from_secs(60)),
        pending: None,
        background: Duration::from_secs(3600),
        created: Some(0),
        now: 10_000,
        periods: 3,
        after: Duration::from_secs(600),
    }
}

fn with_synced(ok: bool, last_success: i64) -> NamespaceMappingStatus {
    let mut conds = Vec::new();
    conditions::set(&mut conds, "Synced", ok, "X", "x", None);
    NamespaceMappingStatus {
        last_successful_sync_time: Some(time(last_success)),
        conditions: Some(conds),
        ..Default::default()
    }
}

#[test]
fn scheduled_mappings_are_stale_after_three_periods_without_success() {
    let f = fresh(ReplicationMode::Scheduled);
    let (stale, next) = staleness(&with_synced(true, 10_000 - 100), &f);
    assert_eq!((stale, next), (None, Some(10_000 - 100 + 180 + 1)));
    let (stale, _) = staleness(&with_synced(false, 10_000 - 200), &f);
    let stale = stale.expect("stale after 200 s > 3 × 60 s");
    assert!(
        stale.contains("no successful sync for 3m20s (more than 3m)"),
        "{stale}"
    );

    // A DR side that is the live site, a Manual mapping: never stale.
    let mut active = with_synced(true, 0);
    let mut conds = active.conditions.take().unwrap();
    conditions::set(&mut conds, "DestinationActive", true, "X", "x", None);
    active.conditions = Some(conds);
    assert_eq!(staleness(&active, &f), (None, None));
    assert_eq!(
        staleness(&with_synced(false, 0), &fresh(ReplicationMode::Manual)),
        (None, None)
    );
}

#[test]
fn continuous_mappings_are_stale_when_a_change_waits_or_syncs_keep_failing() {
    let quiet = fresh(ReplicationMode::Continuous);
    // Healthy and quiet for an hour: not stale (nothing is waiting).
    assert_eq!(staleness(&with_synced(true, 10_000 - 3000), &quiet).0, None);
    let waiting = Freshness {
        pending: Some(Duration::from_secs(700)),
        ..quiet.clone()
    };
    let stale = staleness(&with_synced(true, 10_000 - 3000), &waiting).0.unwrap();
    assert!(stale.contains("a source change has waited 11m40s"), "{stale}");
    let short = Freshness {
        pending: Some(Duration::from_secs(100)),
        ..quiet.clone()
    };
    assert_eq!(
        staleness(&with_synced(true, 10_000), &short),
        (None, Some(10_000 + 500 + 1))
    );
    let failing = staleness(&with_synced(false, 10_000 - 700), &quiet).0.unwrap();
    assert!(failing.contains("no successful sync for 11m40s"), "{failing}");
}

#[test]
fn pvc_data_not_copied_for_too_long_is_stale() {
    let mut s = with_synced(true, 10_000);
    s.data_sync = Some(vec![
        dr_syncer_core::api::VolumeSyncStatus {
            destination: "shop/data".into(),
            phase: "Failed".into(),
            last_sync_time: Some(time(10_000 - 400)),
            ..Default::default()
        },
        dr_syncer_core::api::VolumeSyncStatus {
            destination: "shop/logs".into(),
            phase: "Synced".into(),
            last_sync_time: Some(time(10_000 - 10)),
            ..Default::default()
        },
    ]);
    let stale = staleness(&s, &fresh(ReplicationMode::Scheduled)).0.unwrap();
    assert!(
        stale.contains("PVC data") && stale.contains("shop/data") && !stale.contains("shop/logs"),
        "{stale}"
    );
}
