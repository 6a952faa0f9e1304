use dr_syncer_core::engine::KindStats;

use super::*;

#[test]
fn a_sync_shows_up_under_the_seed_names() {
    let m = Metrics::new();
    let mut report = SyncReport {
        source_namespace: "shop".into(),
        ..Default::default()
    };
    report.kinds.insert(
        "ConfigMap".into(),
        KindStats {
            created: 2,
            unchanged: 1,
            ..Default::default()
        },
    );
    m.record_sync(&report, None);
    m.sync_duration
        .get_or_create(&DurationLabels {
            mapping: "dr/shop".into(),
            mode: "full".into(),
        })
        .observe(0.5);
    let text = m.render();
    assert!(
        text.contains(r#"dr_syncer_sync_operations_total{namespace="shop",status="success"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"dr_syncer_resources_synced_total{namespace="shop",resource_type="ConfigMap",status="created"} 2"#
        ),
        "{text}"
    );
    assert!(text.contains("dr_syncer_sync_duration_seconds_bucket"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");
}

/// Every metric the shipped alerts use is one the operator exports (a renamed metric would leave an
/// alert that never fires).
#[test]
fn the_alerts_use_exported_metrics() {
    // (Families without samples are not rendered: compare with the registered names.)
    let registered = include_str!("../metrics.rs");
    let rules = include_str!("../../../deploy/prometheus-rule.yaml");
    let used: std::collections::BTreeSet<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("dr_syncer_"))
        .collect();
    assert!(used.len() >= 7, "{used:?}");
    for name in used {
        let family = name.strip_suffix("_total").unwrap_or(name);
        assert!(
            [name, family]
                .iter()
                .any(|n| registered.contains(&format!("\"{n}\""))),
            "alert metric {name} is not registered"
        );
    }
}
