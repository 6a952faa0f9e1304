//! The operator binary: pause, deletion policies, namespace selection with cleanup, bad input as
//! conditions and events (without hot loops), metrics and probes, a crash mid-sync (drills while it runs:
//! `site.rs`).

mod common;

use std::time::Duration;

use common::{Env, NS, T, condition, mapping};
use dr_syncer_core::api::{RemoteCluster, SyncPhase};
use dr_syncer_testenv::{apply_yaml, create_namespace, wait_for};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;

const CMS: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {v: '1'}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata: {v: '1'}\n";

/// `paused` stops syncing; `deletionPolicy: DeleteSynced` removes only what the mapping synced;
/// `Retain` (the default) keeps everything.
#[tokio::test(flavor = "multi_thread")]
async fn pause_and_deletion_policies() {
    let env = Env::start("delete").await;
    let src = create_namespace(&env.prod.client(), "app").await.unwrap();
    apply_yaml(&env.prod.client(), Some(&src), CMS).await.unwrap();
    let _op = env.operator("dr-syncer-operator", &[]).await;
    for (name, policy) in [("keep", "Retain"), ("clean", "DeleteSynced")] {
        env.apply(&mapping(
            name,
            &format!(
                "  replicationMode: Manual\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  destinationNamespace: {src}-{name}\n  resourceTypes: [configmaps]\n  deletionPolicy: {policy}"
            ),
        ))
        .await;
        env.sync_now(name, "1").await;
        env.wait_status(name, "synced", |s| s.phase == Some(SyncPhase::Completed))
            .await;
    }
    let dr = env.dr.client();
    // Something on the DR side that dr-syncer did not create.
    apply_yaml(
        &dr,
        Some(&format!("{src}-clean")),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: local-only}\ndata: {v: '1'}\n",
    )
    .await
    .unwrap();

    // Paused: a trigger does nothing, and the mapping says so.
    env.nm_api()
        .patch(
            "keep",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}, "metadata": {"annotations": {"dr-syncer.io/sync-now": "2"}}})),
        )
        .await
        .unwrap();
    let nm = env
        .wait_status("keep", "paused condition", |s| {
            condition(s, "Paused").is_some_and(|c| c.0 == "True")
        })
        .await;
    assert_eq!(
        nm.annotations().get("dr-syncer.io/sync-now").map(String::as_str),
        Some("2"),
        "a paused mapping does not consume its trigger"
    );

    for name in ["keep", "clean"] {
        env.nm_api().delete(name, &DeleteParams::default()).await.unwrap();
    }
    let api = env.nm_api();
    wait_for("mappings gone (finalizer done)", T, || async {
        Ok((api.get_opt("keep").await?.is_none() && api.get_opt("clean").await?.is_none()).then_some(()))
    })
    .await
    .unwrap();
    let kept: Api<ConfigMap> = Api::namespaced(dr.clone(), &format!("{src}-keep"));
    assert!(
        kept.get_opt("a").await.unwrap().is_some(),
        "Retain keeps synced objects"
    );
    let cleaned: Api<ConfigMap> = Api::namespaced(dr.clone(), &format!("{src}-clean"));
    assert!(
        cleaned.get_opt("a").await.unwrap().is_none(),
        "DeleteSynced deletes synced objects"
    );
    assert!(cleaned.get_opt("b").await.unwrap().is_none());
    assert!(
        cleaned.get_opt("local-only").await.unwrap().is_some(),
        "objects dr-syncer did not sync are never deleted"
    );
    let namespaces: Api<Namespace> = Api::all(dr.clone());
    assert!(
        namespaces
            .get_opt(&format!("{src}-clean"))
            .await
            .unwrap()
            .is_some(),
        "a namespace holding someone else's object is kept"
    );
}

/// `namespaceSelector`: every labelled source namespace syncs to `<name><suffix>`, reported per namespace;
/// unlabelling one cleans its copy up with `cleanupOnUnlabel`.
#[tokio::test(flavor = "multi_thread")]
async fn namespace_selector_with_cleanup_on_unlabel() {
    let env = Env::start("selector").await;
    let prod = env.prod.client();
    let a = create_namespace(&prod, "team-a").await.unwrap();
    let b = create_namespace(&prod, "team-b").await.unwrap();
    let other = create_namespace(&prod, "other").await.unwrap();
    let namespaces: Api<Namespace> = Api::all(prod.clone());
    for ns in [&a, &b] {
        apply_yaml(&prod, Some(ns), CMS).await.unwrap();
        namespaces
            .patch(
                ns,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"dr": "yes"}}})),
            )
            .await
            .unwrap();
    }
    apply_yaml(&prod, Some(&other), CMS).await.unwrap();
    let _op = env.operator("dr-syncer-operator", &[]).await;
    env.apply(&mapping(
        "teams",
        "  replicationMode: Scheduled\n  schedule: \"*/2 * * * * *\"\n  sourceCluster: prod\n  destinationCluster: dr\n  resourceTypes: [configmaps]\n  namespaceSelector:\n    labelSelector: {matchLabels: {dr: \"yes\"}}\n    destinationSuffix: -dr\n    cleanupOnUnlabel: true",
    ))
    .await;
    let nm = env
        .wait_status("teams", "both namespaces synced", |s| {
            s.namespaces
                .as_ref()
                .is_some_and(|n| n.len() == 2 && n.iter().all(|e| e.phase == Some(SyncPhase::Completed)))
        })
        .await;
    let entries = nm.status.unwrap().namespaces.unwrap();
    assert_eq!(
        entries
            .iter()
            .map(|e| (e.source.clone(), e.destination.clone()))
            .collect::<Vec<_>>(),
        vec![(a.clone(), format!("{a}-dr")), (b.clone(), format!("{b}-dr"))]
    );
    let dr = env.dr.client();
    let dr_ns: Api<Namespace> = Api::all(dr.clone());
    assert!(dr_ns.get_opt(&format!("{other}-dr")).await.unwrap().is_none());
    let b_copy: Api<ConfigMap> = Api::namespaced(dr.clone(), &format!("{b}-dr"));
    assert!(b_copy.get_opt("a").await.unwrap().is_some());

    namespaces
        .patch(
            &b,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"dr": null}}})),
        )
        .await
        .unwrap();
    env.wait_status("teams", "b dropped", |s| {
        s.namespaces
            .as_ref()
            .is_some_and(|n| n.len() == 1 && n[0].source == a)
    })
    .await;
    wait_for("b's copy cleaned up", T, || async {
        Ok((b_copy.get_opt("a").await?.is_none() && b_copy.get_opt("b").await?.is_none()).then_some(()))
    })
    .await
    .unwrap();
    let a_copy: Api<ConfigMap> = Api::namespaced(dr.clone(), &format!("{a}-dr"));
    assert!(a_copy.get_opt("a").await.unwrap().is_some(), "a is untouched");
    env.wait_event("teams", "NamespaceCleanedUp").await;
}

/// Bad input: each gives a condition and an event with a clear message, no crash and no hot loop.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_reported_without_hot_loops() {
    let env = Env::start("bad").await;
    env.apply(&format!(
        r#"
apiVersion: dr-syncer.io/v1alpha1
kind: RemoteCluster
metadata: {{name: no-secret, namespace: {NS}}}
spec: {{kubeconfigSecretRef: {{name: missing, namespace: {NS}}}}}
---
apiVersion: dr-syncer.io/v1alpha1
kind: RemoteCluster
metadata: {{name: wrong-key, namespace: {NS}}}
spec: {{kubeconfigSecretRef: {{name: prod-kubeconfig, namespace: {NS}, key: nope}}}}
---
apiVersion: dr-syncer.io/v1alpha1
kind: RemoteCluster
metadata: {{name: garbage, namespace: {NS}}}
spec: {{kubeconfigSecretRef: {{name: garbage, namespace: {NS}}}}}
---
apiVersion: dr-syncer.io/v1alpha1
kind: RemoteCluster
metadata: {{name: bad-schedule, namespace: {NS}}}
spec: {{kubeconfigSecretRef: {{name: prod-kubeconfig, namespace: {NS}}}, defaultSchedule: "not a cron"}}
"#
    ))
    .await;
    apply_yaml(
        &env.controller.client(),
        Some(NS),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: garbage}\nstringData: {kubeconfig: 'this: is: not a kubeconfig'}\n",
    )
    .await
    .unwrap();
    env.apply(&mapping("bad-cron", "  replicationMode: Scheduled\n  schedule: \"61 * * * *\"\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: x"))
        .await;
    env.apply(&mapping(
        "unknown-cluster",
        "  sourceCluster: nowhere\n  destinationCluster: dr\n  sourceNamespace: x",
    ))
    .await;
    env.apply(&mapping(
        "contradictory",
        "  clusterMappingRef: {name: cm}\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: x",
    ))
    .await;
    env.apply(&mapping(
        "unknown-type",
        "  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: x\n  resourceTypes: [gizmos]",
    ))
    .await;

    let op = env.operator("dr-syncer-operator", &[]).await;
    let rcs: Api<RemoteCluster> = Api::namespaced(env.controller.client(), NS);
    for (name, ctype, reason) in [
        ("no-secret", "KubeconfigAvailable", "KubeconfigSecretNotFound"),
        ("wrong-key", "KubeconfigAvailable", "KubeconfigKeyNotFound"),
        ("garbage", "KubeconfigValid", "InvalidKubeconfig"),
        ("bad-schedule", "ScheduleValid", "InvalidSchedule"),
    ] {
        let rcs = rcs.clone();
        wait_for(&format!("{name}: {ctype} {reason}"), T, || {
            let rcs = rcs.clone();
            async move {
                let rc = rcs.get(name).await?;
                Ok((rc.status.is_some_and(|s| {
                    s.health.as_deref() == Some("Unhealthy")
                        && s.conditions
                            .iter()
                            .flatten()
                            .any(|c| c.type_ == ctype && c.status == "False" && c.reason == reason)
                }))
                .then_some(()))
            }
        })
        .await
        .unwrap();
        env.wait_event(name, reason).await;
    }
    for (name, reason, text) in [
        ("bad-cron", "InvalidSchedule", "61"),
        ("unknown-cluster", "RemoteClusterNotFound", "nowhere"),
        ("contradictory", "InvalidSpec", "clusterMappingRef"),
        ("unknown-type", "UnknownResourceType", "gizmos"),
    ] {
        let nm = env
            .wait_status(name, &format!("{name}: {reason}"), |s| {
                condition(s, "Synced").is_some_and(|c| c.0 == "False" && c.1 == reason)
            })
            .await;
        let c = condition(nm.status.as_ref().unwrap(), "Synced").unwrap();
        assert!(c.2.contains(text), "{name}: {c:?}");
        env.wait_event(name, reason).await;
    }
    // No hot loop: over a few seconds the operator makes a bounded number of requests.
    let before = env.controller.requests(&op.user).await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = env.controller.requests(&op.user).await.unwrap();
    let made = after.since(&before).total;
    assert!(
        made < 120,
        "{made} requests in 6 s with nothing to do: {:?}",
        after.since(&before)
    );
}

/// `/healthz`, `/readyz` and `/metrics` with the seed's metric names after a sync.
#[tokio::test(flavor = "multi_thread")]
async fn probes_and_metrics() {
    let env = Env::start("metrics").await;
    let src = create_namespace(&env.prod.client(), "app").await.unwrap();
    apply_yaml(&env.prod.client(), Some(&src), CMS).await.unwrap();
    let op = env.operator("dr-syncer-operator", &[]).await;
    env.apply(&mapping(
        "m",
        &format!("  replicationMode: Scheduled\n  schedule: \"*/2 * * * * *\"\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  resourceTypes: [configmaps]"),
    ))
    .await;
    env.wait_status("m", "synced", |s| s.phase == Some(SyncPhase::Completed))
        .await;
    wait_for("ready", T, || async {
        Ok((op
            .get(op.probe_port, "/readyz")
            .await
            .is_some_and(|(c, _)| c == 200))
        .then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(op.get(op.probe_port, "/healthz").await.unwrap().0, 200);
    let text = op.metrics().await;
    for needle in [
        format!(r#"dr_syncer_sync_operations_total{{namespace="{src}",status="success"}}"#),
        format!(
            r#"dr_syncer_resources_synced_total{{namespace="{src}",resource_type="ConfigMap",status="created"}} 2"#
        ),
        format!(r#"dr_syncer_replication_lag_seconds{{mapping="{NS}/m"}}"#),
        format!(r#"dr_syncer_sync_duration_seconds_count{{mapping="{NS}/m",mode="full"}}"#),
        "dr_syncer_leader 1".to_owned(),
    ] {
        assert!(text.contains(&needle), "missing {needle} in\n{text}");
    }
}

/// Killed (SIGKILL) in the middle of a sync and started again: the sync is redone and completes, and
/// the trigger is consumed exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_sync_and_restarted() {
    let env = Env::start("crash").await;
    let src = create_namespace(&env.prod.client(), "big").await.unwrap();
    let mut yaml = String::new();
    for i in 0..400 {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i:04}}}\ndata: {{v: '{i}'}}\n"
        ));
    }
    apply_yaml(&env.prod.client(), Some(&src), &yaml).await.unwrap();
    // Slow writes on the DR side (client-side limit), so the sync is still running when killed.
    let mut op = env
        .operator("dr-syncer-operator", &["--qps", "40", "--burst", "1"])
        .await;
    env.apply(&mapping(
        "big",
        &format!("  replicationMode: Manual\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  resourceTypes: [configmaps]"),
    ))
    .await;
    env.sync_now("big", "go").await;
    env.wait_status("big", "running", |s| s.phase == Some(SyncPhase::Running))
        .await;
    let dr_cms: Api<ConfigMap> = Api::namespaced(env.dr.client(), &src);
    wait_for("some objects written", T, || async {
        Ok((dr_cms
            .list(&Default::default())
            .await
            .map(|l| l.items.len())
            .unwrap_or(0)
            > 20)
            .then_some(()))
    })
    .await
    .unwrap();
    op.kill();
    let partial = dr_cms.list(&Default::default()).await.unwrap().items.len();
    assert!(
        partial < 400,
        "killed too late to be mid-sync ({partial} objects)"
    );

    let _op = env.operator("dr-syncer-operator", &[]).await;
    let nm = env
        .wait_status("big", "completed after restart", |s| {
            s.phase == Some(SyncPhase::Completed)
        })
        .await;
    assert!(!nm.annotations().contains_key("dr-syncer.io/sync-now"));
    assert_eq!(nm.status.unwrap().sync_stats.unwrap().successful_syncs, 400);
    // The cut-short sync was recorded as such (not left Running) before the retry.
    let events = env.wait_event("big", "SyncInterrupted").await;
    let note = &events.iter().find(|(r, _)| r == "SyncInterrupted").unwrap().1;
    assert!(note.contains("cut short") && note.contains("Retry in"), "{note}");
    // Exactly the 400 source ConfigMaps (the test control plane adds no kube-root-ca.crt).
    assert_eq!(dr_cms.list(&Default::default()).await.unwrap().items.len(), 400);
}

/// SIGTERM during a sync: no new work starts, the running sync finishes and writes its status (never
/// left half-written as Running), the process exits 0 and releases the leader lease.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_the_running_sync() {
    let env = Env::start("sigterm").await;
    let src = create_namespace(&env.prod.client(), "big").await.unwrap();
    let mut yaml = String::new();
    for i in 0..150 {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i:04}}}\ndata: {{v: '{i}'}}\n"
        ));
    }
    apply_yaml(&env.prod.client(), Some(&src), &yaml).await.unwrap();
    let mut op = env
        .operator(
            "dr-syncer-operator",
            &["--qps", "40", "--burst", "1", "--leader-elect"],
        )
        .await;
    env.apply(&mapping(
        "big",
        &format!("  replicationMode: Manual\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  resourceTypes: [configmaps]"),
    ))
    .await;
    env.sync_now("big", "go").await;
    env.wait_status("big", "running", |s| s.phase == Some(SyncPhase::Running))
        .await;
    let code = tokio::task::block_in_place(|| op.terminate(Duration::from_secs(90)));
    assert_eq!(code, Some(0), "{}", op.log());
    let nm = env.nm_api().get("big").await.unwrap();
    let s = nm.status.unwrap();
    assert_eq!(s.phase, Some(SyncPhase::Completed), "{s:#?}");
    assert_eq!(s.sync_stats.unwrap().successful_syncs, 150);
    assert!(
        s.sync_progress.is_none(),
        "progress is gone with the final status"
    );
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(env.controller.client(), NS);
    let holder = leases
        .get("dr-syncer.io")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert!(
        holder.as_deref().is_none_or(str::is_empty),
        "lease released: {holder:?}"
    );
}

/// ClusterMapping: a missing RemoteCluster fails with a backoff; once it exists the mapping connects and
/// the failure count resets.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_mapping_fails_then_connects_and_resets_its_backoff() {
    let env = Env::start("clmap").await;
    let _op = env.operator("dr-syncer-operator", &[]).await;
    env.apply(&format!(
        "apiVersion: dr-syncer.io/v1alpha1\nkind: ClusterMapping\nmetadata: {{name: to-later, namespace: {NS}}}\nspec: {{sourceCluster: prod, targetCluster: later}}\n"
    ))
    .await;
    let api: Api<dr_syncer_core::api::ClusterMapping> = Api::namespaced(env.controller.client(), NS);
    let failed = wait_for("failed with a count", T, || async {
        let cm = api.get("to-later").await?;
        Ok(cm.status.filter(|s| {
            s.phase == Some(dr_syncer_core::api::ClusterMappingPhase::Failed)
                && s.consecutive_failures.unwrap_or(0) >= 1
        }))
    })
    .await
    .unwrap();
    assert!(
        failed
            .message
            .unwrap()
            .contains("RemoteCluster dr-syncer/later not found")
    );
    let c = failed
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "TargetClusterAvailable")
        .unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "RemoteClusterNotFound")
    );
    env.apply(&format!(
        "apiVersion: dr-syncer.io/v1alpha1\nkind: RemoteCluster\nmetadata: {{name: later, namespace: {NS}}}\nspec: {{kubeconfigSecretRef: {{name: dr-kubeconfig, namespace: {NS}}}}}\n"
    ))
    .await;
    let connected = wait_for("connected", T, || async {
        let cm = api.get("to-later").await?;
        Ok(cm
            .status
            .filter(|s| s.phase == Some(dr_syncer_core::api::ClusterMappingPhase::Connected)))
    })
    .await
    .unwrap();
    assert_eq!(connected.consecutive_failures, Some(0));
    assert!(connected.last_verified.is_some());
}

/// A PVC whose StorageClass the DR cluster lacks is not created (its class could never change later);
/// `failureHandling.storageClassNotFound` (default WaitForNextSync) reports it and does not retry, and
/// the next sync after the class appears creates the claim.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_storage_class_waits_for_the_next_sync() {
    let env = Env::start("sclass").await;
    let src = create_namespace(&env.prod.client(), "db").await.unwrap();
    apply_yaml(
        &env.prod.client(),
        Some(&src),
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec: {accessModes: [ReadWriteOnce], storageClassName: gold, resources: {requests: {storage: 1Gi}}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {v: '1'}\n",
    )
    .await
    .unwrap();
    let _op = env.operator("dr-syncer-operator", &[]).await;
    env.apply(&mapping(
        "db",
        &format!("  replicationMode: Scheduled\n  schedule: \"*/2 * * * * *\"\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  resourceTypes: [configmaps, persistentvolumeclaims]"),
    ))
    .await;
    let nm = env
        .wait_status("db", "failed sync", |s| s.phase == Some(SyncPhase::Failed))
        .await;
    let s = nm.status.unwrap();
    assert_eq!(s.error_categories.unwrap()[0].category, "storageClassNotFound");
    assert!(s.retry_status.is_none(), "WaitForNextSync: no retry");
    assert!(
        s.last_error
            .unwrap()
            .message
            .contains("StorageClass gold does not exist")
    );
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = Api::namespaced(env.dr.client(), &src);
    assert!(
        pvcs.get_opt("data").await.unwrap().is_none(),
        "not created with a missing class"
    );
    let cms: Api<ConfigMap> = Api::namespaced(env.dr.client(), &src);
    assert!(cms.get_opt("c").await.unwrap().is_some(), "the rest is synced");
    apply_yaml(
        &env.dr.client(),
        None,
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: gold}\nprovisioner: example.com/fake\n",
    )
    .await
    .unwrap();
    env.wait_status("db", "the next scheduled sync creates the claim", |s| {
        s.phase == Some(SyncPhase::Completed)
    })
    .await;
    assert!(pvcs.get_opt("data").await.unwrap().is_some());
}
