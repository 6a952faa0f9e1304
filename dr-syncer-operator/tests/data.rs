//! PVC data replication by the operator, end to end: three test control planes, the source and DR
//! nodes simulated in network namespaces (the test plays kubelet, scheduler and DaemonSet controller),
//! the real agent binary with OpenSSH's sshd and rsync. The operator deploys the agents, finds them and
//! the volumes through pod status only, and runs mount and mover pods.

mod common;

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{Env, NS};
use dr_syncer_core::api::{ClusterMapping, RemoteCluster};
use dr_syncer_testenv::{
    agent_path,
    kubelet::{Kubelet, SimNetwork},
    wait_for, write_file,
};
use futures::StreamExt;
use k8s_openapi::api::{coordination::v1::Lease, core::v1::Pod};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

struct Nodes {
    _net: SimNetwork,
    prod: Kubelet,
    dr: Kubelet,
}

async fn nodes(env: &Env, subnet: u8) -> Nodes {
    let agent = agent_path().expect("the agent binary");
    let net = SimNetwork::create().unwrap();
    let prod = Kubelet::builder(&env.prod, &net)
        .node("prod-a", &format!("10.{subnet}.0.11"))
        .node("prod-b", &format!("10.{subnet}.0.12"))
        .image("dr-syncer-agent", &agent)
        .start()
        .await
        .unwrap();
    let dr = Kubelet::builder(&env.dr, &net)
        .node("dr-a", &format!("10.{subnet}.0.21"))
        .image("dr-syncer-agent", &agent)
        .start()
        .await
        .unwrap();
    Nodes { _net: net, prod, dr }
}

/// One PVC, `data`.
const DATA_PVC: &str = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n";

/// The source namespace: two PVCs, one mounted by a running pod on prod-b, one by nothing.
const APP: &str = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: db}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: media}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: Pod
metadata: {name: db-0}
spec:
  nodeName: prod-b
  containers: [{name: db, image: postgres, volumeMounts: [{name: data, mountPath: /var/lib/postgresql}]}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: db}}]
"#;

/// Namespace `ns` in prod, with `objects` (YAML documents) in it.
async fn prod_namespace(env: &Env, ns: &str, objects: &str) {
    let client = env.prod.client();
    dr_syncer_testenv::apply_yaml(
        &client,
        None,
        &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"),
    )
    .await
    .unwrap();
    dr_syncer_testenv::apply_yaml(&client, Some(ns), objects)
        .await
        .unwrap();
}

async fn source_namespace(env: &Env) {
    prod_namespace(env, "shop", APP).await;
}

async fn enable_pvc_sync(env: &Env, extra: &str) {
    env.apply(&format!(
        r#"
apiVersion: dr-syncer.io/v1alpha1
kind: RemoteCluster
metadata: {{name: prod, namespace: {NS}}}
spec:
  kubeconfigSecretRef: {{name: prod-kubeconfig, namespace: {NS}}}
  pvcSync:
    enabled: true
{extra}
"#
    ))
    .await;
}

/// The largest number of mover pods that existed at the same time (in the pods `api` lists).
fn max_concurrent_movers(api: Api<Pod>) -> Arc<Mutex<(BTreeSet<String>, usize)>> {
    let seen = Arc::new(Mutex::new((BTreeSet::new(), 0usize)));
    let out = seen.clone();
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default().labels("dr-syncer.io/role=mover"))
            .default_backoff()
            .boxed();
        while let Some(Ok(ev)) = stream.next().await {
            let mut s = seen.lock().unwrap();
            let key = |p: &Pod| format!("{:?}/{:?}", p.metadata.namespace, p.metadata.name);
            match ev {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                    s.0.insert(key(&p));
                }
                watcher::Event::Delete(p) => {
                    s.0.remove(&key(&p));
                }
                _ => {}
            }
            s.1 = s.1.max(s.0.len());
        }
    });
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_sync_moves_pvc_data_with_agents_locks_and_limits() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    let env = Env::start("op-data").await;
    let nodes = nodes(&env, 94).await;
    source_namespace(&env).await;
    let db = nodes.prod.bound_volume_dir("shop", "db", WAIT).await.unwrap();
    let media = nodes.prod.bound_volume_dir("shop", "media", WAIT).await.unwrap();
    write_file(&db, "base/1", b"first table");
    write_file(&db, "pg_wal/000001", vec![7u8; 256 * 1024]);
    write_file(&media, "img/logo.png", b"PNG...");

    let _op = env
        .operator("dr-syncer-operator", &["--data-wait-timeout", "60s"])
        .await;
    enable_pvc_sync(&env, "").await;

    // The agents are deployed and report ready on both source nodes, with the host key fingerprint.
    let rcs: Api<RemoteCluster> = Api::namespaced(env.controller.client(), NS);
    let rc = wait_for("agents running on prod", WAIT, || async {
        Ok(rcs
            .get("prod")
            .await?
            .status
            .and_then(|s| s.pvc_sync)
            .filter(|p| p.phase.as_deref() == Some("Running")))
    })
    .await
    .unwrap();
    let agents = rc.agent_status.unwrap();
    assert_eq!((agents.ready_nodes, agents.total_nodes), (2, 2));
    assert!(rc.host_key_fingerprint.unwrap().starts_with("SHA256:"));

    // A ClusterMapping is Connected only once movers in dr reach both source agents over SSH.
    env.apply(&format!(
        "apiVersion: dr-syncer.io/v1alpha1\nkind: ClusterMapping\nmetadata: {{name: prod-to-dr, namespace: {NS}}}\nspec: {{sourceCluster: prod, targetCluster: dr}}\n"
    ))
    .await;
    let cms: Api<ClusterMapping> = Api::namespaced(env.controller.client(), NS);
    let cm = wait_for("ClusterMapping connected over SSH", WAIT, || async {
        Ok(cms
            .get("prod-to-dr")
            .await?
            .status
            .and_then(|s| s.connection_status)
            .filter(|c| c.connected_agents == 2))
    })
    .await
    .unwrap();
    assert_eq!(cm.total_source_agents, 2);

    // Another holder's lock on the DR PVC "media": its data is skipped, the other PVC is copied.
    let dr_ns = "shop-dr";
    dr_syncer_testenv::apply_yaml(
        &env.dr.client(),
        None,
        &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {dr_ns}}}\n"),
    )
    .await
    .unwrap();
    let pair = dr_syncer_core::ops::PvcPair {
        source_namespace: "shop".into(),
        source_pvc: "media".into(),
        destination_namespace: dr_ns.into(),
        destination_pvc: "media".into(),
    };
    let leases: Api<Lease> = Api::namespaced(env.dr.client(), dr_ns);
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": dr_syncer_core::ops::lock_name(&pair)},
        "spec": {"holderIdentity": "another-operator", "leaseDurationSeconds": 3600,
                 "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now())},
    }))
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();

    let movers = max_concurrent_movers(Api::namespaced(env.dr.client(), dr_ns));
    env.apply(&format!(
        r#"
apiVersion: dr-syncer.io/v1alpha1
kind: NamespaceMapping
metadata: {{name: shop, namespace: {NS}, annotations: {{dr-syncer.io/sync-now: "1"}}}}
spec:
  replicationMode: Manual
  sourceCluster: prod
  destinationCluster: dr
  sourceNamespace: shop
  destinationNamespace: {dr_ns}
  resourceTypes: [persistentvolumeclaims]
  retryConfig: {{maxRetries: 0}}
  pvcConfig:
    syncData: true
    dataSyncConfig: {{concurrentSyncs: 1}}
"#
    ))
    .await;
    let nm = env
        .wait_status("shop", "data synced once", |s| {
            s.data_sync.as_ref().is_some_and(|v| {
                v.len() == 2 && v.iter().all(|x| x.phase == "Synced" || x.phase == "Skipped")
            }) && s.phase != Some(dr_syncer_core::api::SyncPhase::Running)
        })
        .await;
    let volumes = nm.status.unwrap().data_sync.unwrap();
    let db_status = volumes.iter().find(|v| v.source == "shop/db").unwrap();
    assert_eq!(db_status.phase, "Synced", "{volumes:?}");
    assert_eq!(db_status.node.as_deref(), Some("prod-b"));
    assert_eq!(db_status.percent, Some(100));
    assert!(db_status.bytes_transferred.unwrap() >= 256 * 1024);
    let media_status = volumes.iter().find(|v| v.source == "shop/media").unwrap();
    assert_eq!(media_status.phase, "Skipped", "{volumes:?}");
    assert!(
        media_status.message.as_deref().unwrap().contains("lock"),
        "{media_status:?}"
    );
    let dr_db = nodes.dr.bound_volume_dir(dr_ns, "db", WAIT).await.unwrap();
    assert_eq!(std::fs::read(dr_db.join("base/1")).unwrap(), b"first table");
    assert_eq!(
        std::fs::read(dr_db.join("pg_wal/000001")).unwrap().len(),
        256 * 1024
    );
    env.wait_events(
        "shop",
        "DataSyncSkipped, and DataSyncCompleted for shop/db",
        |events| {
            events.iter().any(|(r, _)| r == "DataSyncSkipped")
                && events
                    .iter()
                    .any(|(r, n)| r == "DataSyncCompleted" && n.contains("shop/db"))
        },
    )
    .await;

    // The lock released, a second trigger copies "media" through a read-only mount pod (no pod
    // mounts it), one PVC at a time (concurrentSyncs: 1).
    leases
        .delete(&dr_syncer_core::ops::lock_name(&pair), &DeleteParams::default())
        .await
        .unwrap();
    std::fs::remove_file(db.join("base/1")).unwrap();
    env.sync_now("shop", "2").await;
    let nm = env
        .wait_status("shop", "both PVCs synced", |s| {
            s.data_sync
                .as_ref()
                .is_some_and(|v| v.len() == 2 && v.iter().all(|x| x.phase == "Synced"))
                && s.phase != Some(dr_syncer_core::api::SyncPhase::Running)
        })
        .await;
    let volumes = nm.status.unwrap().data_sync.unwrap();
    let media_status = volumes.iter().find(|v| v.source == "shop/media").unwrap();
    assert!(
        media_status
            .node
            .as_deref()
            .is_some_and(|n| n.starts_with("prod-")),
        "{media_status:?}"
    );
    let dr_media = nodes.dr.bound_volume_dir(dr_ns, "media", WAIT).await.unwrap();
    assert_eq!(std::fs::read(dr_media.join("img/logo.png")).unwrap(), b"PNG...");
    assert!(!dr_db.join("base/1").exists(), "deletions are mirrored");
    assert_eq!(
        movers.lock().unwrap().1,
        1,
        "concurrentSyncs: 1 allows one mover at a time"
    );
    // Mount pods, movers, grants and locks are gone.
    let pods: Api<Pod> = Api::namespaced(env.prod.client(), "shop");
    wait_for("mount pod removed", WAIT, || async {
        Ok(pods
            .list(&Default::default())
            .await?
            .items
            .iter()
            .all(|p| p.metadata.name.as_deref() == Some("db-0"))
            .then_some(()))
    })
    .await
    .unwrap();
    assert!(leases.list(&Default::default()).await.unwrap().items.is_empty());
    let grants: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(env.prod.client(), "dr-syncer-system");
    let cm = grants.get("dr-syncer-agent-grants").await.unwrap();
    assert!(
        cm.data.unwrap_or_default().is_empty(),
        "grants are removed after each copy"
    );

    // Metrics named as in the Go project.
    let metrics = _op.metrics().await;
    for name in [
        "dr_syncer_pvc_sync_operations_total{namespace=\"shop\",pvc_name=\"db\",destination_namespace=\"shop-dr\",status=\"success\"} 2",
        "dr_syncer_pvc_sync_bytes_transferred_total{namespace=\"shop\",pvc_name=\"db\",destination_namespace=\"shop-dr\"}",
        "dr_syncer_pvc_sync_duration_seconds_count{namespace=\"shop\",pvc_name=\"media\",destination_namespace=\"shop-dr\",status=\"success\"} 1",
        "dr_syncer_pvc_sync_concurrent_count 0",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_data_sync_fails_visibly_retries_and_survives_key_rotation() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    let env = Env::start("op-data-retry").await;
    let nodes = nodes(&env, 95).await;
    source_namespace(&env).await;
    let db = nodes.prod.bound_volume_dir("shop", "db", WAIT).await.unwrap();
    write_file(&db, "base/1", b"first table");
    let _op = env
        .operator("dr-syncer-operator", &["--data-wait-timeout", "5s"])
        .await;
    // Agents only on prod-a: the node of db-0 (prod-b) has none, so its copy fails.
    enable_pvc_sync(
        &env,
        "    deployment: {nodeSelector: {kubernetes.io/hostname: prod-a}}",
    )
    .await;
    let rcs: Api<RemoteCluster> = Api::namespaced(env.controller.client(), NS);
    wait_for("one agent running on prod", WAIT, || async {
        Ok(rcs
            .get("prod")
            .await?
            .status
            .and_then(|s| s.pvc_sync)
            .and_then(|p| p.agent_status)
            .filter(|a| a.ready_nodes == 1))
    })
    .await
    .unwrap();
    env.apply(&format!(
        r#"
apiVersion: dr-syncer.io/v1alpha1
kind: NamespaceMapping
metadata: {{name: shop, namespace: {NS}}}
spec:
  replicationMode: Scheduled
  schedule: "0 3 * * *"
  sourceCluster: prod
  destinationCluster: dr
  sourceNamespace: shop
  destinationNamespace: shop
  resourceTypes: [persistentvolumeclaims]
  retryConfig: {{maxRetries: 10, initialBackoff: 2s, maxBackoff: 4s}}
  pvcConfig:
    syncData: true
    dataSyncConfig: {{bandwidthLimit: 1024}}
"#
    ))
    .await;
    // The first (immediate) sync: the failure is in status and Events, and a retry is scheduled.
    let nm = env
        .wait_status("shop", "the data copy failed", |s| {
            s.data_sync
                .as_ref()
                .is_some_and(|v| v.iter().any(|x| x.source == "shop/db" && x.phase == "Failed"))
                && s.retry_status.is_some()
        })
        .await;
    let status = nm.status.unwrap();
    let db_status = status
        .data_sync
        .unwrap()
        .into_iter()
        .find(|v| v.source == "shop/db")
        .unwrap();
    assert!(
        db_status
            .message
            .as_deref()
            .unwrap()
            .contains("no ready dr-syncer agent on node prod-b"),
        "{db_status:?}"
    );
    assert!(db_status.consecutive_failures.unwrap() >= 1);
    assert!(status.last_error.unwrap().message.contains("shop/db"));
    env.wait_event("shop", "DataSyncFailed").await;

    // The agents everywhere: the retry copies the data and clears the failure.
    enable_pvc_sync(&env, "").await;
    let nm = env
        .wait_status("shop", "the retry copied the data", |s| {
            s.data_sync
                .as_ref()
                .is_some_and(|v| v.iter().any(|x| x.source == "shop/db" && x.phase == "Synced"))
        })
        .await;
    let db_status = nm
        .status
        .unwrap()
        .data_sync
        .unwrap()
        .into_iter()
        .find(|v| v.source == "shop/db")
        .unwrap();
    assert_eq!(db_status.consecutive_failures, None);
    let dr_db = nodes.dr.bound_volume_dir("shop", "db", WAIT).await.unwrap();
    assert_eq!(std::fs::read(dr_db.join("base/1")).unwrap(), b"first table");

    // Key rotation while a copy runs (8 MiB at 1 MiB/s): the running copy completes, the next one uses
    // the new keys.
    let before = rcs.get("prod").await.unwrap().status.unwrap().pvc_sync.unwrap();
    write_file(&db, "big.bin", vec![42u8; 8 << 20]);
    env.sync_now("shop", "big").await;
    env.wait_status("shop", "the big copy running", |s| {
        s.data_sync
            .as_ref()
            .is_some_and(|v| v.iter().any(|x| x.source == "shop/db" && x.phase == "Syncing"))
    })
    .await;
    for rc in ["prod", "dr"] {
        rcs.patch(
            rc,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"dr-syncer.io/rotate-ssh-key": "r1"}}})),
        )
        .await
        .unwrap();
    }
    let rotated = wait_for("prod's keys rotated", WAIT, || async {
        Ok(rcs
            .get("prod")
            .await?
            .status
            .and_then(|s| s.pvc_sync)
            .filter(|p| p.last_key_rotation.is_some()))
    })
    .await
    .unwrap();
    assert_ne!(rotated.host_key_fingerprint, before.host_key_fingerprint);
    assert_ne!(rotated.client_key_fingerprint, before.client_key_fingerprint);
    let nm = env
        .wait_status("shop", "the big copy finished", |s| {
            s.data_sync
                .as_ref()
                .is_some_and(|v| v.iter().any(|x| x.source == "shop/db" && x.phase != "Syncing"))
                && s.phase != Some(dr_syncer_core::api::SyncPhase::Running)
        })
        .await;
    let db_status = nm
        .status
        .unwrap()
        .data_sync
        .unwrap()
        .into_iter()
        .find(|v| v.source == "shop/db")
        .unwrap();
    assert_eq!(
        db_status.phase, "Synced",
        "the running copy survives the rotation: {db_status:?}"
    );
    assert_eq!(std::fs::metadata(dr_db.join("big.bin")).unwrap().len(), 8 << 20);
    let rc_events = common::events_for(&env.controller.client(), NS, "prod").await;
    assert!(
        rc_events.iter().any(|(r, _)| r == "SSHKeysRotated"),
        "{rc_events:?}"
    );
    // After the grace window's start, a new copy logs in with the new keys.
    write_file(&db, "after-rotation", b"new keys");
    env.sync_now("shop", "after").await;
    wait_for("copied with the new keys", WAIT, || async {
        Ok(std::fs::read(dr_db.join("after-rotation"))
            .ok()
            .filter(|b| b == b"new keys"))
    })
    .await
    .unwrap();

    // Production's volume is wiped: the copy is refused (the DR copy untouched) and reported; a
    // go-ahead on the mapping mirrors it, once.
    for entry in std::fs::read_dir(&db).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }
    env.sync_now("shop", "wiped").await;
    let nm = env
        .wait_status("shop", "the wiped source refused", |s| {
            s.data_sync.as_ref().is_some_and(|v| {
                v.iter().any(|x| {
                    x.source == "shop/db"
                        && x.phase == "Failed"
                        && x.message.as_deref().is_some_and(|m| m.contains("looks wiped"))
                })
            })
        })
        .await;
    assert!(
        nm.status
            .unwrap()
            .last_error
            .unwrap()
            .message
            .contains("looks wiped"),
        "reported"
    );
    assert_eq!(std::fs::read(dr_db.join("base/1")).unwrap(), b"first table");
    assert_eq!(std::fs::metadata(dr_db.join("big.bin")).unwrap().len(), 8 << 20);
    env.nm_api()
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"dr-syncer.io/allow-wiped-source": "true"}}})),
        )
        .await
        .unwrap();
    env.sync_now("shop", "wiped-ok").await;
    wait_for("the emptied volume mirrored", WAIT, || async {
        Ok((!dr_db.join("big.bin").exists()).then_some(()))
    })
    .await
    .unwrap();
    wait_for("the go-ahead used up", WAIT, || async {
        let nm = env.nm_api().get("shop").await?;
        Ok((!nm
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("dr-syncer.io/allow-wiped-source"))
        .then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_mappings_copy_data_within_the_source_clusters_global_limit() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    let env = Env::start("op-data-global").await;
    let nodes = nodes(&env, 96).await;
    // Two namespaces of the same source cluster, one PVC each (2 MiB, copied at 1 MiB/s).
    for ns in ["shop", "blog"] {
        prod_namespace(&env, ns, DATA_PVC).await;
        let data = nodes.prod.bound_volume_dir(ns, "data", WAIT).await.unwrap();
        write_file(&data, "blob", vec![1u8; 2 << 20]);
    }
    let _op = env
        .operator("dr-syncer-operator", &["--data-wait-timeout", "60s"])
        .await;
    enable_pvc_sync(&env, "    globalConcurrencyLimit: 1").await;
    let all_movers = max_concurrent_movers(Api::all(env.dr.client()));
    for ns in ["shop", "blog"] {
        env.apply(&format!(
            r#"
apiVersion: dr-syncer.io/v1alpha1
kind: NamespaceMapping
metadata: {{name: {ns}, namespace: {NS}}}
spec:
  replicationMode: Continuous
  continuous: {{backgroundSyncInterval: 1h}}
  sourceCluster: prod
  destinationCluster: dr
  sourceNamespace: {ns}
  resourceTypes: [persistentvolumeclaims]
  pvcConfig:
    syncData: true
    dataSyncConfig: {{bandwidthLimit: 1024}}
"#
        ))
        .await;
    }
    for ns in ["shop", "blog"] {
        let nms = env.nm_api();
        let copied = wait_for("the first full sync copied the data", WAIT, || async {
            Ok(nms
                .get(ns)
                .await?
                .status
                .and_then(|s| s.data_sync)
                .filter(|v| v.len() == 1 && v[0].phase == "Synced"))
        })
        .await;
        let volumes = match copied {
            Ok(v) => v,
            Err(e) => {
                let mut dump = String::new();
                for cp in [&env.prod, &env.dr] {
                    let pods: Api<Pod> = Api::all(cp.client());
                    for p in pods.list(&Default::default()).await.unwrap().items {
                        dump.push_str(&format!(
                            "{} {:?}/{:?} {:?} node={:?}\n",
                            cp.name(),
                            p.metadata.namespace,
                            p.metadata.name,
                            p.status.as_ref().and_then(|s| s.phase.clone()),
                            p.spec.as_ref().and_then(|s| s.node_name.clone())
                        ));
                    }
                    dump.push_str(&cp.pod_logs_tail(60));
                }
                panic!("{ns}: {e}: {:?}\n{dump}", nms.get(ns).await.unwrap().status);
            }
        };
        assert_eq!(volumes[0].source, format!("{ns}/data"));
        let dr_data = nodes.dr.bound_volume_dir(ns, "data", WAIT).await.unwrap();
        assert_eq!(std::fs::metadata(dr_data.join("blob")).unwrap().len(), 2 << 20);
    }
    assert_eq!(
        all_movers.lock().unwrap().1,
        1,
        "globalConcurrencyLimit: 1 allows one copy from prod at a time across mappings"
    );
    let metrics = _op.metrics().await;
    assert!(
        metrics.contains("dr_syncer_pvc_sync_queue_wait_seconds_count 2"),
        "{metrics}"
    );
}

/// Continuous mode: a long PVC copy (part of a full sync) does not hold back the source's changes;
/// they reach the DR side while the copy runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_changes_reach_dr_while_pvc_data_is_still_copying() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    let env = Env::start("op-data-batches").await;
    let nodes = nodes(&env, 97).await;
    let client = env.prod.client();
    prod_namespace(
        &env,
        "shop",
        &format!("{DATA_PVC}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings}}\ndata: {{version: \"1\"}}\n"),
    )
    .await;
    // 8 MiB of pseudo-random bytes, copied at 256 KiB/s: about 32 s. Status shows a copy as Syncing up
    // to one progress interval (5 s) late; the change takes well under a second.
    let data = nodes.prod.bound_volume_dir("shop", "data", WAIT).await.unwrap();
    let blob = dr_syncer_testenv::random_bytes(97, 8 << 20);
    write_file(&data, "blob", &blob);
    let _op = env
        .operator("dr-syncer-operator", &["--data-wait-timeout", "60s"])
        .await;
    enable_pvc_sync(&env, "").await;
    env.apply(&format!(
        r#"
apiVersion: dr-syncer.io/v1alpha1
kind: NamespaceMapping
metadata: {{name: shop, namespace: {NS}}}
spec:
  replicationMode: Continuous
  continuous: {{backgroundSyncInterval: 1h}}
  sourceCluster: prod
  destinationCluster: dr
  sourceNamespace: shop
  resourceTypes: [persistentvolumeclaims, configmaps]
  pvcConfig:
    syncData: true
    dataSyncConfig: {{bandwidthLimit: 256}}
"#
    ))
    .await;
    let nms = env.nm_api();
    let phase = |nm: dr_syncer_core::api::NamespaceMapping| {
        nm.status
            .and_then(|s| s.data_sync)
            .and_then(|v| v.first().map(|d| d.phase.clone()))
    };
    wait_for("the first full sync copying the data", WAIT, || async {
        Ok(phase(nms.get("shop").await?).filter(|p| p == "Syncing"))
    })
    .await
    .unwrap();

    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), "shop");
    cms.patch(
        "settings",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"version": "2"}})),
    )
    .await
    .unwrap();
    let dr_cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(env.dr.client(), "shop");
    wait_for("the change on the DR side", WAIT, || async {
        Ok(dr_cms
            .get_opt("settings")
            .await?
            .filter(|c| c.data.as_ref().and_then(|d| d.get("version")).map(String::as_str) == Some("2")))
    })
    .await
    .unwrap();
    assert_eq!(
        phase(nms.get("shop").await.unwrap()).as_deref(),
        Some("Syncing"),
        "the change arrived while the copy still ran"
    );

    // The copy completes, and the sync with it.
    wait_for("the copy done", WAIT, || async {
        Ok(phase(nms.get("shop").await?).filter(|p| p == "Synced"))
    })
    .await
    .unwrap();
    let status = nms.get("shop").await.unwrap().status.unwrap();
    assert_eq!(status.phase, Some(dr_syncer_core::api::SyncPhase::Completed));
    assert!(status.last_error.is_none(), "{:?}", status.last_error);
    let dr_data = nodes.dr.bound_volume_dir("shop", "data", WAIT).await.unwrap();
    assert_eq!(std::fs::read(dr_data.join("blob")).unwrap(), blob);
}

/// While the DR side is live (a CLI cutover), the operator copies no data into it and starts no mover
/// there, and the production data written after the cutover stays out; a failback with
/// `--reverse-migrate-pvc-data` copies the live DR data (of PVCs the operator synced) back to production.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_data_into_a_live_dr_side_and_failback_copies_it_back() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    let env = Env::start("op-data-site").await;
    let nodes = nodes(&env, 97).await;
    prod_namespace(&env, "shop", DATA_PVC).await;
    let prod_data = nodes.prod.bound_volume_dir("shop", "data", WAIT).await.unwrap();
    write_file(&prod_data, "orders/1", b"before the cutover");
    let _op = env
        .operator("dr-syncer-operator", &["--data-wait-timeout", "60s"])
        .await;
    enable_pvc_sync(&env, "").await;
    env.apply(&format!(
        "apiVersion: dr-syncer.io/v1alpha1\nkind: NamespaceMapping\nmetadata: {{name: shop, namespace: {NS}, annotations: {{dr-syncer.io/sync-now: \"1\"}}}}\nspec:\n  replicationMode: Manual\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: shop\n  resourceTypes: [persistentvolumeclaims]\n  pvcConfig: {{syncData: true}}\n"
    ))
    .await;
    let synced = |n: usize| {
        move |s: &dr_syncer_core::api::NamespaceMappingStatus| {
            s.phase == Some(dr_syncer_core::api::SyncPhase::Completed)
                && s.data_sync.as_ref().is_some_and(|v| v.len() == n)
                && s.last_sync_time.is_some()
        }
    };
    env.wait_status("shop", "first copy", synced(1)).await;
    let dr_data = nodes.dr.bound_volume_dir("shop", "data", WAIT).await.unwrap();
    wait_for("the first copy", WAIT, || async {
        Ok(
            (std::fs::read(dr_data.join("orders/1")).ok().as_deref() == Some(&b"before the cutover"[..]))
                .then_some(()),
        )
    })
    .await
    .unwrap();

    // A CLI cutover (objects only); then the DR side is written to, and the stale production too.
    let reader = env.prod.identity("drill").await.unwrap();
    let writer = env.dr.identity("drill").await.unwrap();
    let drill = |args: &[&str]| {
        let mut all = vec!["--data-wait-timeout", "60s"];
        all.extend_from_slice(args);
        common::drill(&reader, &writer, "shop", "persistentvolumeclaims", &all).ok();
    };
    drill(&["cutover"]);
    write_file(&dr_data, "orders/2", b"written on the live DR side");
    write_file(&prod_data, "orders/stale", b"written on stale production");

    // The operator syncs again: no mover, no data, no write into the live side.
    let created = Arc::new(Mutex::new(0usize));
    {
        let created = created.clone();
        let api: Api<Pod> = Api::namespaced(env.dr.client(), "shop");
        tokio::spawn(async move {
            let mut stream = watcher(api, watcher::Config::default().labels("dr-syncer.io/role=mover"))
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(Ok(_)) = stream.next().await {
                *created.lock().unwrap() += 1;
            }
        });
    }
    let before = env
        .dr
        .requests("dr-syncer-operator")
        .await
        .unwrap()
        .stored_writes();
    env.sync_now("shop", "2").await;
    let nm = env
        .wait_status("shop", "the second sync held", |s| {
            s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "DestinationActive" && c.status == "True")
        })
        .await;
    assert_eq!(
        nm.status.unwrap().phase,
        Some(dr_syncer_core::api::SyncPhase::Completed)
    );
    wait_for("the trigger consumed", WAIT, || async {
        let nm = env.nm_api().get("shop").await?;
        Ok((!nm
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("dr-syncer.io/sync-now"))
        .then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(
        *created.lock().unwrap(),
        0,
        "no mover pod in the live DR namespace"
    );
    assert_eq!(
        env.dr
            .requests("dr-syncer-operator")
            .await
            .unwrap()
            .stored_writes()
            - before,
        0,
        "nothing written into the live DR side"
    );
    assert!(
        !dr_data.join("orders/stale").exists(),
        "stale production data stays out"
    );
    assert!(
        dr_data.join("orders/2").exists(),
        "the live side's data is intact"
    );

    // Failback with the data: the live DR side's volume goes back to production.
    drill(&["failback", "--reverse-migrate-pvc-data"]);
    assert_eq!(
        std::fs::read(prod_data.join("orders/2")).unwrap(),
        b"written on the live DR side"
    );
    assert!(
        !prod_data.join("orders/stale").exists(),
        "production becomes a copy of the live side"
    );
}

/// A cutover while the operator is copying PVC data into the DR side: once the DR namespace is marked
/// active the cutover stops that copy (its mover pod goes, its lock is released) before it activates the
/// DR workloads, so nothing of the stale side keeps writing into the live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cutover_stops_a_data_copy_still_writing_into_the_dr_side() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    let env = Env::start("op-data-stop").await;
    let nodes = nodes(&env, 98).await;
    prod_namespace(&env, "shop", DATA_PVC).await;
    let prod_data = nodes.prod.bound_volume_dir("shop", "data", WAIT).await.unwrap();
    write_file(&prod_data, "big.bin", dr_syncer_testenv::random_bytes(3, 8 << 20));
    let _op = env
        .operator("dr-syncer-operator", &["--data-wait-timeout", "60s"])
        .await;
    enable_pvc_sync(&env, "").await;
    // A slow copy (bandwidth limit), so that it is still running when the cutover comes.
    env.apply(&format!(
        "apiVersion: dr-syncer.io/v1alpha1\nkind: NamespaceMapping\nmetadata: {{name: shop, namespace: {NS}, annotations: {{dr-syncer.io/sync-now: \"1\"}}}}\nspec:\n  replicationMode: Manual\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: shop\n  resourceTypes: [persistentvolumeclaims]\n  pvcConfig: {{syncData: true, dataSyncConfig: {{bandwidthLimit: 256}}}}\n"
    ))
    .await;
    let movers: Api<Pod> = Api::namespaced(env.dr.client(), "shop");
    let lp = kube::api::ListParams::default().labels("dr-syncer.io/role=mover");
    wait_for("the operator's mover to copy", WAIT, || async {
        Ok(movers
            .list(&lp)
            .await?
            .items
            .iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .then_some(()))
    })
    .await
    .unwrap();

    let reader = env.prod.identity("drill").await.unwrap();
    let writer = env.dr.identity("drill").await.unwrap();
    let out = common::drill(
        &reader,
        &writer,
        "shop",
        "persistentvolumeclaims",
        &["--wait", "60s", "-o", "json", "cutover"],
    );
    out.ok();
    let stdout = &out.stdout;
    let report: serde_json::Value = serde_json::from_str(stdout).unwrap();
    assert!(
        report["notes"].as_array().is_some_and(|n| n
            .iter()
            .any(|n| n.as_str().unwrap_or_default().starts_with("stopped 1 data cop"))),
        "{stdout}"
    );
    // No copy writes into the live side any more: no mover, no held lock.
    assert!(
        movers
            .list(&lp)
            .await
            .unwrap()
            .items
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_some())
    );
    wait_for("the mover gone", WAIT, || async {
        Ok(movers.list(&lp).await?.items.is_empty().then_some(()))
    })
    .await
    .unwrap();
    let leases: Api<Lease> = Api::namespaced(env.dr.client(), "shop");
    assert!(
        leases
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .all(|l| l
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref())
                .is_none_or(str::is_empty)),
        "no copy lock held"
    );
}

/// A slow PVC copy (256 KiB/s) of `size` random bytes (from `seed`) out of a fresh `shop` namespace,
/// moving data when this returns: the nodes, the operator and the content. `spec` adds lines to the mapping's
/// spec, `data_config` fields to its `dataSyncConfig`.
async fn a_slow_copy_running(
    env: &Env,
    subnet: u8,
    (seed, size): (u64, usize),
    spec: &str,
    data_config: &str,
) -> (Nodes, common::Operator, Vec<u8>) {
    let nodes = nodes(env, subnet).await;
    prod_namespace(env, "shop", DATA_PVC).await;
    let prod_data = nodes.prod.bound_volume_dir("shop", "data", WAIT).await.unwrap();
    let content = dr_syncer_testenv::random_bytes(seed, size);
    write_file(&prod_data, "big.bin", &content);
    let op = env
        .operator("dr-syncer-operator", &["--data-wait-timeout", "60s"])
        .await;
    enable_pvc_sync(env, "").await;
    env.apply(&format!(
        "apiVersion: dr-syncer.io/v1alpha1\nkind: NamespaceMapping\nmetadata: {{name: shop, namespace: {NS}, annotations: {{dr-syncer.io/sync-now: \"1\"}}}}\nspec:\n  replicationMode: Manual\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: shop\n  resourceTypes: [persistentvolumeclaims]\n{spec}  pvcConfig: {{syncData: true, dataSyncConfig: {{bandwidthLimit: 256{data_config}}}}}\n"
    ))
    .await;
    env.wait_status("shop", "the copy running", |s| {
        s.data_sync
            .as_ref()
            .is_some_and(|v| v.iter().any(|x| x.phase == "Syncing"))
    })
    .await;
    // Data moving: the mover has its grant and rsync writes (not only the mover pod started).
    let dr_data = nodes.dr.bound_volume_dir("shop", "data", WAIT).await.unwrap();
    wait_for("data arriving", WAIT, || async {
        let writing = std::fs::read_dir(&dr_data)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .any(|e| e.metadata().is_ok_and(|m| m.is_file() && m.len() > 0));
        Ok(writing.then_some(()))
    })
    .await
    .unwrap();
    (nodes, op, content)
}

/// While a copy runs: its grant names a key generated for this transfer (not the DR cluster's client
/// key, which the agents accept for probes only), with an expiry and the mover's address (`mover_ip`)
/// as the only `from`; the mover's Secret in the DR namespace holds exactly that key's pair and the
/// pinned host key. Returns the key's public line.
async fn the_transfer_has_a_key_of_its_own(env: &Env, mover_ip: &str) -> String {
    use dr_syncer_core::{
        keys::{CLIENT_KEY_FILE, KeyPair, KeySecrets, PINNED_HOST_KEYS_FILE},
        pvc::{DEFAULT_AGENT_NAMESPACE, GRANTS_CONFIGMAP, TransferGrant, grant_name},
    };
    let grants: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(env.prod.client(), DEFAULT_AGENT_NAMESPACE);
    let cm = grants.get(GRANTS_CONFIGMAP).await.unwrap();
    let mut data = cm.data.unwrap_or_default();
    let value = data
        .remove(&grant_name("shop", "data", ("shop", "data")))
        .unwrap_or_else(|| panic!("the running copy's grant: {data:?}"));
    let grant = TransferGrant::parse(&value).unwrap();
    assert_eq!(grant.binding.from, vec![mover_ip.to_string()], "{value}");
    let left = grant
        .binding
        .not_after
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(left <= dr_syncer_core::ops::GRANT_WINDOW, "{value}");

    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(env.dr.client(), "shop");
    let lp = kube::api::ListParams::default().labels("dr-syncer.io/role=mover");
    let mut list = secrets.list(&lp).await.unwrap().items;
    assert_eq!(list.len(), 1, "one mover key Secret");
    let data = list.remove(0).data.unwrap_or_default();
    let names: Vec<&str> = data.keys().map(String::as_str).collect();
    let public_name = format!("{CLIENT_KEY_FILE}.pub");
    assert_eq!(
        names,
        [CLIENT_KEY_FILE, public_name.as_str(), PINNED_HOST_KEYS_FILE],
        "only the transfer's pair and the pins"
    );
    let pair = KeyPair::parse(std::str::from_utf8(&data[CLIENT_KEY_FILE].0).unwrap()).unwrap();
    assert_eq!(
        pair.public_key().blob(),
        grant.binding.key.blob(),
        "the Secret holds the grant's key"
    );

    // The agents' probe keys (the DR cluster's client key among them) are other keys.
    let agent_secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(env.prod.client(), DEFAULT_AGENT_NAMESPACE);
    let authorized = agent_secrets
        .get(&KeySecrets::for_remote_cluster("prod").authorized_keys())
        .await
        .unwrap();
    let text: String = authorized
        .data
        .unwrap_or_default()
        .values()
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .collect();
    let transfer = grant.binding.key.to_openssh();
    let blob = transfer.split_whitespace().nth(1).unwrap().to_string();
    assert!(text.contains("ssh-ed25519"), "the probe keys: {text}");
    assert!(!text.contains(&blob), "the transfer key is not a cluster key");
    blob
}

/// The operator is killed (SIGKILL) while it copies PVC data: after a restart the cut-short sync is
/// recorded (`SyncInterrupted`), the copy is made again and completes with the data byte for byte, and
/// no mover pod is left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_during_a_data_copy_completes_it_after_a_restart() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    let env = Env::start("op-data-kill").await;
    // A slow copy (bandwidth limit), so that it is still running when the operator dies.
    let (nodes, mut op, content) = a_slow_copy_running(
        &env,
        99,
        (5, 4 << 20),
        "  retryConfig: {maxRetries: 10, initialBackoff: 1s, maxBackoff: 2s}\n",
        "",
    )
    .await;
    op.kill();

    let _op = env
        .operator("dr-syncer-operator", &["--data-wait-timeout", "60s"])
        .await;
    env.wait_event("shop", "SyncInterrupted").await;
    let nm = env
        .wait_status("shop", "the copy made again", |s| {
            s.phase == Some(dr_syncer_core::api::SyncPhase::Completed)
                && s.data_sync
                    .as_ref()
                    .is_some_and(|v| v.iter().any(|x| x.phase == "Synced"))
        })
        .await;
    assert!(nm.status.unwrap().last_error.is_none());
    let dr_data = nodes.dr.bound_volume_dir("shop", "data", WAIT).await.unwrap();
    assert!(
        std::fs::read(dr_data.join("big.bin")).unwrap() == content,
        "the data byte for byte"
    );
    let movers: Api<Pod> = Api::namespaced(env.dr.client(), "shop");
    let lp = kube::api::ListParams::default().labels("dr-syncer.io/role=mover");
    wait_for("no mover left", WAIT, || async {
        Ok(movers.list(&lp).await?.items.is_empty().then_some(()))
    })
    .await
    .unwrap();
}

/// A network partition of the DR node during the operator's PVC copy: the copy fails cleanly within its
/// time limit (reported, no partial file in place of the real one, no mover left), and once the network
/// is back the next copy completes with the data byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_during_a_data_copy_fails_it_cleanly_and_the_next_completes() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    let env = Env::start("op-data-part").await;
    let (nodes, _op, content) = a_slow_copy_running(&env, 100, (7, 2 << 20), "", ", timeout: 20s").await;
    let transfer_key = the_transfer_has_a_key_of_its_own(&env, "10.100.0.21").await;
    let dr_node = nodes.dr.netns("dr-a");
    dr_syncer_testenv::kubelet::set_links(&dr_node, false).unwrap();
    let nm = env
        .wait_status("shop", "the partitioned copy failed", |s| {
            s.data_sync
                .as_ref()
                .is_some_and(|v| v.iter().any(|x| x.phase == "Failed"))
                && s.phase != Some(dr_syncer_core::api::SyncPhase::Running)
        })
        .await;
    let volume = nm.status.unwrap().data_sync.unwrap().remove(0);
    assert!(
        volume.message.as_deref().is_some_and(|m| m.contains("timed out")),
        "{volume:?}"
    );
    let dr_data = nodes.dr.bound_volume_dir("shop", "data", WAIT).await.unwrap();
    assert!(!dr_data.join("big.bin").exists(), "no partial file in place");
    let movers: Api<Pod> = Api::namespaced(env.dr.client(), "shop");
    let lp = kube::api::ListParams::default().labels("dr-syncer.io/role=mover");
    wait_for("no mover left", WAIT, || async {
        Ok(movers.list(&lp).await?.items.is_empty().then_some(()))
    })
    .await
    .unwrap();
    // The transfer's key left with it: no Secret in the DR namespace, no grant naming it.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(env.dr.client(), "shop");
    let lp = kube::api::ListParams::default().labels("dr-syncer.io/role=mover");
    assert!(
        secrets.list(&lp).await.unwrap().items.is_empty(),
        "the mover's key Secret is gone"
    );
    let grants: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(env.prod.client(), dr_syncer_core::pvc::DEFAULT_AGENT_NAMESPACE);
    let left = grants.get(dr_syncer_core::pvc::GRANTS_CONFIGMAP).await.unwrap();
    assert!(
        !format!("{:?}", left.data).contains(&transfer_key),
        "no grant names the transfer's key"
    );

    // The network is back: the next copy completes.
    dr_syncer_testenv::kubelet::set_links(&dr_node, true).unwrap();
    env.sync_now("shop", "healed").await;
    env.wait_status("shop", "copied after the partition", |s| {
        s.data_sync
            .as_ref()
            .is_some_and(|v| v.iter().any(|x| x.phase == "Synced"))
    })
    .await;
    assert!(
        std::fs::read(dr_data.join("big.bin")).unwrap() == content,
        "the data byte for byte"
    );
}
