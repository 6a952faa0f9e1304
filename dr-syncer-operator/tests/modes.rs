//! The operator binary against three control planes: Scheduled, Manual and Continuous mode, with the
//! transformations, filters and exact status values.

mod common;

use std::time::Duration;

use common::{Env, NS, T};
use dr_syncer_core::api::SyncPhase;
use dr_syncer_testenv::{apply_yaml, create_namespace, wait_for};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, PersistentVolumeClaim, Service},
};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;

const APP: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, labels: {app: shop}}
data: {LOG_LEVEL: info}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored, labels: {app: shop, dr-syncer.io/ignore: "true"}}
data: {a: "1"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: scratch-cache, labels: {app: shop}}
data: {a: "1"}
---
apiVersion: v1
kind: Secret
metadata: {name: db, labels: {app: shop}}
type: Opaque
stringData: {password: s3cret}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: shop}}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: worker, labels: {app: shop, dr-syncer.io/scale-override: "2"}}
spec:
  replicas: 5
  selector: {matchLabels: {app: worker}}
  template:
    metadata: {labels: {app: worker}}
    spec: {containers: [{name: w, image: busybox}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, labels: {app: shop}}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: clash, labels: {app: shop}}
spec: {type: NodePort, selector: {app: web}, ports: [{port: 80, nodePort: 30080}]}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, labels: {app: shop}}
spec: {accessModes: [ReadWriteOnce], storageClassName: premium, resources: {requests: {storage: 1Gi}}}
"#;

fn mapping(name: &str, mode: &str, src: &str, dst: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: dr-syncer.io/v1alpha1
kind: NamespaceMapping
metadata: {{name: {name}, namespace: {NS}}}
spec:
  replicationMode: {mode}
  sourceCluster: prod
  destinationCluster: dr
  sourceNamespace: {src}
  destinationNamespace: {dst}
{extra}
"#
    )
}

/// Scheduled mode: first sync at once, then on a 6-field schedule; every transformation; a DR-side
/// rejection gives exact counts and a lastError naming the object; fixing it completes the next sync.
#[tokio::test(flavor = "multi_thread")]
async fn scheduled_mode_transforms_filters_and_reports_exact_status() {
    let env = Env::start("sched").await;
    let src = create_namespace(&env.prod.client(), "shop").await.unwrap();
    apply_yaml(&env.prod.client(), Some(&src), APP).await.unwrap();
    let dst = format!("{src}-dr");
    // The DR side: the mapped StorageClass exists, and a Service nobody synced holds NodePort 30080.
    let dr = env.dr.client();
    apply_yaml(
        &dr,
        None,
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: dr-standard}\nprovisioner: example.com/fake\n",
    )
    .await
    .unwrap();
    let local = create_namespace(&dr, "local").await.unwrap();
    apply_yaml(
        &dr,
        Some(&local),
        "apiVersion: v1\nkind: Service\nmetadata: {name: holder}\nspec: {type: NodePort, selector: {a: b}, ports: [{port: 80, nodePort: 30080}]}\n",
    )
    .await
    .unwrap();

    let op = env.operator("dr-syncer-operator", &[]).await;
    env.apply(&mapping(
        "shop",
        "Scheduled",
        &src,
        &dst,
        r#"  schedule: "*/3 * * * * *"
  resourceTypes: [configmaps, secrets, deployments, services, persistentvolumeclaims]
  excludeResources: [{kind: ConfigMap, name: "scratch-*"}]
  pvcConfig:
    storageClassMappings: [{from: premium, to: dr-standard}]
  failureHandling: {validationFailure: WaitForNextSync}"#,
    ))
    .await;

    let nm = env
        .wait_status("shop", "first sync done", |s| s.phase == Some(SyncPhase::Failed))
        .await;
    let s = nm.status.unwrap();
    // configmaps settings (+ kube-root-ca.crt is skipped by the built-ins), secret db, 2 deployments,
    // services web + clash, pvc data: 7 objects tried, 1 rejected.
    let stats = s.sync_stats.clone().unwrap();
    assert_eq!(
        (stats.total_resources, stats.successful_syncs, stats.failed_syncs),
        (7, 6, 1),
        "{s:#?}"
    );
    let groups = s.resource_groups.clone().unwrap();
    let svc = groups.iter().find(|g| g.group_kind == "Service").unwrap();
    assert_eq!(
        (
            svc.total_count,
            svc.synced_count,
            svc.failed_count,
            svc.pending_count
        ),
        (2, 1, 1, 0)
    );
    let dep = groups.iter().find(|g| g.group_kind == "Deployment.apps").unwrap();
    assert_eq!((dep.total_count, dep.synced_count), (2, 2));
    let last = s.last_error.clone().unwrap();
    assert_eq!(
        last.resource.as_deref(),
        Some(format!("Service/{dst}/clash").as_str()),
        "{last:?}"
    );
    assert!(last.message.contains("30080"), "{last:?}");
    assert!(s.next_sync_time.is_some());
    assert!(s.retry_status.is_none(), "WaitForNextSync: no retry");
    let scales = s.deployment_scales.clone().unwrap();
    assert_eq!(
        scales
            .iter()
            .map(|d| (d.name.as_str(), d.original_replicas))
            .collect::<Vec<_>>(),
        vec![("web", 3), ("worker", 5)]
    );

    // What arrived, transformed.
    let deploys: Api<Deployment> = Api::namespaced(dr.clone(), &dst);
    let web = deploys.get("web").await.unwrap();
    assert_eq!(web.spec.unwrap().replicas, Some(0), "scaleToZero");
    assert_eq!(
        web.metadata.annotations.unwrap()["dr-syncer.io/original-replicas"],
        "3"
    );
    assert_eq!(
        deploys.get("worker").await.unwrap().spec.unwrap().replicas,
        Some(2),
        "scale-override"
    );
    let cms: Api<ConfigMap> = Api::namespaced(dr.clone(), &dst);
    let settings = cms.get("settings").await.unwrap();
    assert_eq!(
        settings.metadata.annotations.unwrap()["dr-syncer.io/synced-by"],
        format!("{NS}/shop")
    );
    assert!(
        cms.get_opt("ignored").await.unwrap().is_none(),
        "dr-syncer.io/ignore"
    );
    assert!(
        cms.get_opt("scratch-cache").await.unwrap().is_none(),
        "excludeResources"
    );
    let pvc: Api<PersistentVolumeClaim> = Api::namespaced(dr.clone(), &dst);
    assert_eq!(
        pvc.get("data")
            .await
            .unwrap()
            .spec
            .unwrap()
            .storage_class_name
            .as_deref(),
        Some("dr-standard")
    );
    let svcs: Api<Service> = Api::namespaced(dr.clone(), &dst);
    assert!(svcs.get_opt("clash").await.unwrap().is_none());

    env.wait_events("shop", "SyncStarted and SyncFailed naming clash", |events| {
        events.iter().any(|(r, _)| r == "SyncStarted")
            && events
                .iter()
                .any(|(r, n)| r == "SyncFailed" && n.contains("clash"))
    })
    .await;

    // The next scheduled sync after the clash is gone completes.
    let first_sync = s.last_sync_time.clone().unwrap();
    Api::<Service>::namespaced(dr.clone(), &local)
        .delete("holder", &DeleteParams::default())
        .await
        .unwrap();
    let nm = env
        .wait_status("shop", "a later scheduled sync completes", |s| {
            s.phase == Some(SyncPhase::Completed)
                && s.last_sync_time.as_ref().is_some_and(|t| t.0 > first_sync.0)
        })
        .await;
    let s = nm.status.unwrap();
    assert_eq!(s.sync_stats.unwrap().failed_syncs, 0);
    assert!(s.last_error.is_none());
    assert!(svcs.get_opt("clash").await.unwrap().is_some());
    let synced = s
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Synced")
        .unwrap();
    assert_eq!(
        (synced.status.as_str(), synced.reason.as_str()),
        ("True", "SyncCompleted")
    );

    // The schedule is honoured: every 3 s means about 3 syncs in 9 s — neither a hot loop nor none.
    let syncs = |text: String| -> u64 {
        text.lines()
            .filter(|l| l.starts_with("dr_syncer_sync_operations_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let before = syncs(op.metrics().await);
    tokio::time::sleep(Duration::from_secs(9)).await;
    let made = syncs(op.metrics().await) - before;
    assert!(
        (2..=4).contains(&made),
        "{made} syncs in 9 s on a 3-second schedule"
    );
}

/// Manual mode: nothing until `dr-syncer.io/sync-now`; one sync per trigger; the trigger is removed.
#[tokio::test(flavor = "multi_thread")]
async fn manual_mode_syncs_once_per_trigger_and_removes_it() {
    let env = Env::start("manual").await;
    let src = create_namespace(&env.prod.client(), "shop").await.unwrap();
    apply_yaml(&env.prod.client(), Some(&src), APP).await.unwrap();
    let dst = format!("{src}-copy");
    let _op = env.operator("dr-syncer-operator", &[]).await;
    env.apply(&mapping(
        "shop",
        "Manual",
        &src,
        &dst,
        "  resourceTypes: [configmaps]",
    ))
    .await;
    env.wait_status("shop", "pending", |s| s.phase == Some(SyncPhase::Pending))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = env.dr.requests(&env.dr_id.user).await.unwrap();
    assert_eq!(before.stored_writes(), 0, "no sync without a trigger");

    env.sync_now("shop", "first").await;
    let api = env.nm_api();
    wait_for("synced and trigger removed", T, || {
        let api = api.clone();
        async move {
            let nm = api.get("shop").await?;
            let removed = !nm
                .metadata
                .annotations
                .unwrap_or_default()
                .contains_key("dr-syncer.io/sync-now");
            Ok((removed && nm.status.is_some_and(|s| s.phase == Some(SyncPhase::Completed))).then_some(()))
        }
    })
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(env.dr.client(), &dst);
    assert!(cms.get_opt("settings").await.unwrap().is_some());
    // The summary condition: `kubectl wait --for=condition=Ready` works on the mapping and its
    // clusters, and `kubectl get` shows it.
    for object in ["namespacemapping/shop", "remotecluster/prod", "remotecluster/dr"] {
        let out = env
            .controller
            .kubectl()
            .unwrap()
            .args(["-n", NS, "wait", "--for=condition=Ready", "--timeout=60s", object])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{object}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let table = env
        .controller
        .kubectl()
        .unwrap()
        .args(["-n", NS, "get", "namespacemappings"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    // (Columns are aligned: the value starts where its header does.)
    let header = table.lines().next().unwrap_or_default();
    let row = table.lines().nth(1).unwrap_or_default();
    let at = header.find("READY").expect("a READY column");
    assert!(row.get(at..).is_some_and(|v| v.starts_with("True")), "{table}");
    let after = env.dr.requests(&env.dr_id.user).await.unwrap();
    // Namespace + settings + scratch-cache (no exclusions here).
    assert_eq!(
        after.since(&before).stored_writes(),
        3,
        "{:?}",
        after.since(&before)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = env.dr.requests(&env.dr_id.user).await.unwrap();
    assert_eq!(later.since(&after).stored_writes(), 0, "no further syncs");
}

/// Continuous mode: creates, updates and deletes (prune) reach the DR side within seconds; exactly one
/// watch set per mapping, stopped when the mode changes.
#[tokio::test(flavor = "multi_thread")]
async fn continuous_mode_propagates_and_keeps_one_watch_set() {
    let env = Env::start("cont").await;
    let src = create_namespace(&env.prod.client(), "shop").await.unwrap();
    apply_yaml(&env.prod.client(), Some(&src), APP).await.unwrap();
    let dst = format!("{src}-dr");
    let _op = env.operator("dr-syncer-operator", &[]).await;
    env.apply(&mapping(
        "live",
        "Continuous",
        &src,
        &dst,
        "  resourceTypes: [configmaps, secrets, deployments]\n  prune: true",
    ))
    .await;
    env.wait_status("live", "initial sync", |s| s.phase == Some(SyncPhase::Completed))
        .await;
    let prod_cms: Api<ConfigMap> = Api::namespaced(env.prod.client(), &src);
    let dr_cms: Api<ConfigMap> = Api::namespaced(env.dr.client(), &dst);
    assert!(dr_cms.get_opt("settings").await.unwrap().is_some());

    // Create.
    apply_yaml(
        &env.prod.client(),
        Some(&src),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fresh}\ndata: {v: '1'}\n",
    )
    .await
    .unwrap();
    wait_for("create propagated", T, || async {
        Ok((dr_cms.get_opt("fresh").await?.is_some()).then_some(()))
    })
    .await
    .unwrap();
    // Update.
    prod_cms
        .patch(
            "fresh",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": "2"}})),
        )
        .await
        .unwrap();
    wait_for("update propagated", T, || async {
        Ok((dr_cms
            .get_opt("fresh")
            .await?
            .and_then(|c| c.data)
            .is_some_and(|d| d["v"] == "2"))
        .then_some(()))
    })
    .await
    .unwrap();
    // Delete (prune is on).
    prod_cms.delete("fresh", &DeleteParams::default()).await.unwrap();
    wait_for("delete propagated", T, || async {
        Ok((dr_cms.get_opt("fresh").await?.is_none()).then_some(()))
    })
    .await
    .unwrap();
    let nm = env.nm_api().get("live").await.unwrap();
    assert!(nm.status.unwrap().last_watch_event.is_some());

    // One watch set: one open watch per type (3) on the source, and none after leaving continuous mode.
    let user = env.prod_id.user.clone();
    assert_eq!(
        env.prod.open_watches(&user).await.unwrap(),
        3,
        "one watch per type of the one mapping"
    );
    // After a forced expiry (410) the set is re-established, not duplicated, and still propagates.
    env.prod.expire_watches().await.unwrap();
    wait_for("watches resumed", T, || async {
        apply_yaml(
            &env.prod.client(),
            Some(&src),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: after-expiry}\ndata: {v: '1'}\n",
        )
        .await?;
        Ok((dr_cms.get_opt("after-expiry").await?.is_some()).then_some(()))
    })
    .await
    .unwrap();
    // Every watch of the set comes back (each on its own after the 410), and only once.
    wait_for("the watch set re-established", T, || async {
        Ok((env.prod.open_watches(&user).await? == 3).then_some(()))
    })
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(env.prod.open_watches(&user).await.unwrap(), 3);
    env.nm_api()
        .patch(
            "live",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicationMode": "Manual"}})),
        )
        .await
        .unwrap();
    wait_for("watches stopped", T, || async {
        Ok((env.prod.open_watches(&user).await? == 0).then_some(()))
    })
    .await
    .unwrap();
}
