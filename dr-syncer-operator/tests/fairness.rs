//! Fair sync slots, against three control planes: with `--max-concurrent-syncs 2`, two slow full syncs
//! (a transformer plugin that takes 12 s per object) run one at a time, the other waiting in the queue the
//! metrics show, and a Continuous mapping's change batch gets the slot full syncs leave free: the change
//! reaches the DR side while neither slow sync has finished.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Env, T, mapping};
use dr_syncer_core::api::SyncPhase;
use dr_syncer_testenv::{apply_yaml, create_namespace, wait_for};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

/// A Crane plugin that answers its metadata at once and takes 12 s per object (changing nothing).
const SLOW: &str = r#"#!/bin/sh
input=$(cat)
if [ "$input" = '{}' ]; then
  echo '{"name":"slow","version":"v1","requestVersion":["v1"],"responseVersion":["v1"]}'
  exit 0
fi
sleep 12
echo '{"version":"v1","isWhiteOut":false,"patches":[]}'
"#;

fn setting(value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: setting}}\ndata: {{value: {value}}}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_batches_are_not_held_up_by_slow_full_syncs() {
    let env = Env::start("fairness").await;
    let plugins = tempfile::tempdir().unwrap();
    let slow = plugins.path().join("slow");
    std::fs::write(&slow, SLOW).unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();

    let live = create_namespace(&env.prod.client(), "live").await.unwrap();
    apply_yaml(&env.prod.client(), Some(&live), &setting("one"))
        .await
        .unwrap();
    let bulk = create_namespace(&env.prod.client(), "bulk").await.unwrap();
    apply_yaml(&env.prod.client(), Some(&bulk), &setting("bulk"))
        .await
        .unwrap();
    let op = env
        .operator(
            "dr-syncer-operator",
            &[
                "--plugin-dir",
                &plugins.path().display().to_string(),
                "--plugin-timeout",
                "60s",
                "--max-concurrent-syncs",
                "2",
            ],
        )
        .await;
    env.apply(&mapping(
        "live",
        &format!(
            "  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {live}\n  destinationNamespace: {live}-dr\n  \
             replicationMode: Continuous\n  resourceTypes: [configmaps]"
        ),
    ))
    .await;
    env.wait_status("live", "the continuous mapping's first sync", |s| {
        s.phase == Some(SyncPhase::Completed)
    })
    .await;

    // Two slow syncs asked for: one runs, the other waits (full syncs leave one of the two slots free).
    for name in ["bulk-a", "bulk-b"] {
        env.apply(&mapping(
            name,
            &format!(
                "  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {bulk}\n  destinationNamespace: {bulk}-{name}\n  \
                 replicationMode: Manual\n  resourceTypes: [configmaps]\n  transformPlugins:\n  - name: slow"
            ),
        ))
        .await;
        env.sync_now(name, "1").await;
    }
    let phases = || async {
        let mut out = Vec::new();
        for name in ["bulk-a", "bulk-b"] {
            let nm = env.nm_api().get(name).await.unwrap();
            out.push(nm.status.and_then(|s| s.phase));
        }
        out
    };
    wait_for(
        "one slow sync running, the other waiting for a slot",
        T,
        || async {
            let running = phases()
                .await
                .iter()
                .filter(|p| **p == Some(SyncPhase::Running))
                .count();
            let queued = op
                .metrics()
                .await
                .lines()
                .any(|l| l.starts_with("dr_syncer_sync_queue_depth{class=\"requested\"} 1"));
            Ok((running == 1 && queued).then_some(()))
        },
    )
    .await
    .unwrap();

    // A change of the continuous mapping's source goes through meanwhile.
    Api::<ConfigMap>::namespaced(env.prod.client(), &live)
        .patch(
            "setting",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"value": "two"}})),
        )
        .await
        .unwrap();
    let dr = Api::<ConfigMap>::namespaced(env.dr.client(), &format!("{live}-dr"));
    wait_for("the change on the DR side", T, || async {
        let cm = dr.get("setting").await?;
        Ok((cm.data.unwrap_or_default().get("value").map(String::as_str) == Some("two")).then_some(()))
    })
    .await
    .unwrap();
    let now = phases().await;
    assert!(
        !now.contains(&Some(SyncPhase::Completed)),
        "the change waited for a slow full sync to finish: {now:?}"
    );

    // Both slow syncs finish in turn.
    for name in ["bulk-a", "bulk-b"] {
        env.wait_status(name, "the slow sync done", |s| {
            s.phase == Some(SyncPhase::Completed)
        })
        .await;
    }
    assert!(
        op.log().contains("waited"),
        "the sync log line says how long it waited"
    );
}
