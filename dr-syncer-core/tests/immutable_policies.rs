//! Each `immutableResourceConfig` policy on a change the DR server refuses as immutable (a Deployment's
//! selector; a PVC's storage class), on two test control planes.

mod common;

use std::sync::{Arc, Mutex};

use common::{Pair, pair};
use dr_syncer_core::apply::ApplyAction;
use dr_syncer_testenv::{apply_yaml, wait_for};
use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Event, PersistentVolumeClaim, Pod},
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
    runtime::watcher,
};
use rstest::rstest;
use serde_json::json;

fn deployment(app: &str, version: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, labels: {{version: '{version}'}}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {app}}}}}\n  template:\n    metadata: {{labels: {{app: {app}}}}}\n    spec: {{containers: [{{name: web, image: nginx}}]}}\n"
    )
}

/// Source namespace with Deployment `web` (selector app=web), synced once with `policy`; then the source
/// Deployment is recreated with another selector (and label), which the DR server refuses to update.
async fn selector_changed(
    p: &Pair,
    policy: serde_json::Value,
) -> (String, String, dr_syncer_core::engine::SyncTarget) {
    let src_ns = p.source_namespace("imm", &deployment("web", "1")).await;
    let dst_ns = format!("{src_ns}-dr");
    let target = p
        .target(
            &src_ns,
            &dst_ns,
            json!({"resourceTypes": ["deployments"], "immutableResourceConfig": policy}),
        )
        .await;
    let r = p.engine.sync(&target).await.unwrap();
    assert!(r.is_success(), "{r:#?}");
    let src: Api<Deployment> = Api::namespaced(p.src_client.clone(), &src_ns);
    src.delete("web", &DeleteParams::default()).await.unwrap();
    wait_for("source deployment gone", common::T, || async {
        Ok(src.get_opt("web").await?.is_none().then_some(()))
    })
    .await
    .unwrap();
    apply_yaml(&p.src_client, Some(&src_ns), &deployment("web2", "2"))
        .await
        .unwrap();
    (src_ns, dst_ns, target)
}

fn selector_app(d: &Deployment) -> String {
    d.spec.as_ref().unwrap().selector.match_labels.as_ref().unwrap()["app"].clone()
}

#[rstest]
#[case::recreate("Recreate")]
#[case::force_update("ForceUpdate")]
#[tokio::test]
async fn recreating_policies_replace_the_object(#[case] policy: &str) {
    let p = pair(&format!("imm-{}", policy.to_lowercase())).await;
    let (_, dst_ns, target) = selector_changed(&p, json!({"defaultHandling": policy})).await;
    let dst: Api<Deployment> = Api::namespaced(p.dst_client.clone(), &dst_ns);
    let old_uid = dst.get("web").await.unwrap().uid();
    let r = p.engine.sync(&target).await.unwrap();
    assert!(r.is_success(), "{r:#?}");
    assert_eq!(r.kinds["Deployment.apps"].recreated, 1, "{r:#?}");
    let now = dst.get("web").await.unwrap();
    assert_ne!(now.uid(), old_uid, "recreated");
    assert_eq!(selector_app(&now), "web2");
    // Settled: the next sync writes nothing.
    let before = p.dst_writes().await;
    p.engine.sync(&target).await.unwrap();
    assert_eq!(p.dst_writes().await - before, 0);
}

#[tokio::test]
async fn no_change_leaves_the_object_and_warns_once() {
    let p = pair("imm-nochange").await;
    let (_, dst_ns, target) = selector_changed(&p, json!({"defaultHandling": "NoChange"})).await;
    let dst: Api<Deployment> = Api::namespaced(p.dst_client.clone(), &dst_ns);
    let old = dst.get("web").await.unwrap();
    for _ in 0..2 {
        let r = p.engine.sync(&target).await.unwrap();
        assert_eq!(r.kinds["Deployment.apps"].skipped, 1, "{r:#?}");
        assert!(
            r.skipped.iter().any(|s| s.reason.contains("immutable")),
            "{:#?}",
            r.skipped
        );
    }
    let now = dst.get("web").await.unwrap();
    assert_eq!(now.uid(), old.uid());
    assert_eq!(selector_app(&now), "web");
    // The rejection stands: later syncs skip it without a request.
    let before = p.dst_writes().await;
    p.engine.sync(&target).await.unwrap();
    assert_eq!(p.dst_writes().await - before, 0);
    let events: Api<Event> = Api::namespaced(p.dst_client.clone(), &dst_ns);
    let warnings: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ImmutableFieldChanged"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one Warning event per desired state: {warnings:#?}"
    );
    assert_eq!(warnings[0].type_.as_deref(), Some("Warning"));
    assert_eq!(warnings[0].involved_object.name.as_deref(), Some("web"));
}

#[tokio::test]
async fn partial_update_applies_everything_but_the_immutable_fields() {
    let p = pair("imm-partial").await;
    let cm = |data: &str, version: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: frozen, labels: {{version: '{version}'}}}}\nimmutable: true\ndata: {{a: '{data}'}}\n"
        )
    };
    let src_ns = p.source_namespace("partial", &cm("1", "1")).await;
    let dst_ns = format!("{src_ns}-dr");
    let target = p
        .target(
            &src_ns,
            &dst_ns,
            json!({"resourceTypes": ["configmaps"], "immutableResourceConfig": {"defaultHandling": "PartialUpdate"}}),
        )
        .await;
    assert!(p.engine.sync(&target).await.unwrap().is_success());
    // The source replaces its immutable ConfigMap with new data and a new label.
    let src: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(p.src_client.clone(), &src_ns);
    src.delete("frozen", &DeleteParams::default()).await.unwrap();
    apply_yaml(&p.src_client, Some(&src_ns), &cm("2", "2"))
        .await
        .unwrap();

    let dst: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(p.dst_client.clone(), &dst_ns);
    let old_uid = dst.get("frozen").await.unwrap().uid();
    let r = p.engine.sync(&target).await.unwrap();
    assert!(r.is_success(), "{r:#?}");
    assert_eq!(r.kinds["ConfigMap"].updated, 1, "{r:#?}");
    let now = dst.get("frozen").await.unwrap();
    assert_eq!(now.uid(), old_uid, "not recreated");
    assert_eq!(now.data.as_ref().unwrap()["a"], "1", "immutable data kept");
    assert_eq!(now.labels()["version"], "2", "mutable change applied");
    // Settled: the next sync neither retries the rejected change nor writes.
    let before = p.dst_writes().await;
    let r = p.engine.sync(&target).await.unwrap();
    assert_eq!(r.kinds["ConfigMap"].unchanged, 1, "{r:#?}");
    assert_eq!(p.dst_writes().await - before, 0);
}

type Deletions = Arc<Mutex<Vec<(String, u64)>>>;

/// Record the resourceVersion at which each pod and Deployment of `ns` is deleted (etcd revisions form one
/// global sequence, so they order the deletions). Returns once both watches have listed.
async fn record_deletions(p: &Pair, ns: &str) -> Deletions {
    let seen: Deletions = Arc::new(Mutex::new(Vec::new()));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(2);
    fn spawn<K>(api: Api<K>, label: &'static str, seen: Deletions, ready: tokio::sync::mpsc::Sender<()>)
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    {
        tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default()).boxed();
            while let Some(Ok(e)) = events.next().await {
                match e {
                    watcher::Event::InitDone => {
                        let _ = ready.send(()).await;
                    }
                    watcher::Event::Delete(o) => {
                        let rv = o.resource_version().and_then(|v| v.parse().ok()).unwrap_or(0);
                        seen.lock()
                            .unwrap()
                            .push((format!("{label}/{}", o.name_any()), rv));
                    }
                    _ => {}
                }
            }
        });
    }
    spawn(
        Api::<Pod>::namespaced(p.dst_client.clone(), ns),
        "pod",
        seen.clone(),
        ready_tx.clone(),
    );
    spawn(
        Api::<Deployment>::namespaced(p.dst_client.clone(), ns),
        "deployment",
        seen.clone(),
        ready_tx,
    );
    for _ in 0..2 {
        ready_rx.recv().await.expect("watch ready");
    }
    seen
}

async fn running_pods(p: &Pair, ns: &str, n: usize) {
    let pods: Api<Pod> = Api::namespaced(p.dst_client.clone(), ns);
    for i in 0..n {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("web-{i}"), "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
}

#[tokio::test]
async fn recreate_with_pod_drain_evicts_the_pods_first() {
    let p = pair("imm-drain").await;
    let (_, dst_ns, target) = selector_changed(&p, json!({"defaultHandling": "RecreateWithPodDrain"})).await;
    running_pods(&p, &dst_ns, 2).await;
    let deletions = record_deletions(&p, &dst_ns).await;
    let before = p.dst.requests(common::WRITER).await.unwrap();

    let r = p.engine.sync(&target).await.unwrap();
    assert!(r.is_success(), "{r:#?}");
    assert_eq!(r.kinds["Deployment.apps"].recreated, 1, "{r:#?}");

    let counts = p.dst.requests(common::WRITER).await.unwrap().since(&before);
    let evictions: u64 = counts
        .by_resource
        .iter()
        .filter(|(k, _)| k.contains("pods/eviction"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(evictions, 2, "{:#?}", counts.by_resource);
    let pods: Api<Pod> = Api::namespaced(p.dst_client.clone(), &dst_ns);
    assert!(pods.list(&ListParams::default()).await.unwrap().items.is_empty());
    wait_for("deletions observed", common::T, || async {
        Ok((deletions.lock().unwrap().len() >= 3).then_some(()))
    })
    .await
    .unwrap();
    let seen = deletions.lock().unwrap().clone();
    let deploy_rv = seen
        .iter()
        .find(|(n, _)| n == "deployment/web")
        .expect("deployment deleted")
        .1;
    for (name, rv) in seen.iter().filter(|(n, _)| n.starts_with("pod/")) {
        assert!(
            rv < &deploy_rv,
            "{name} deleted at {rv}, after the deployment ({deploy_rv}): {seen:?}"
        );
    }
    let dst: Api<Deployment> = Api::namespaced(p.dst_client.clone(), &dst_ns);
    assert_eq!(selector_app(&dst.get("web").await.unwrap()), "web2");
}

#[tokio::test]
async fn a_pod_disruption_budget_stops_the_drain_and_the_recreate() {
    let p = pair("imm-pdb").await;
    let (_, dst_ns, target) = selector_changed(
        &p,
        json!({"defaultHandling": "RecreateWithPodDrain", "drainTimeout": "2s"}),
    )
    .await;
    running_pods(&p, &dst_ns, 1).await;
    apply_yaml(
        &p.dst_client,
        Some(&dst_ns),
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}\nspec: {minAvailable: 1, selector: {matchLabels: {app: web}}}\n",
    )
    .await
    .unwrap();
    let dst: Api<Deployment> = Api::namespaced(p.dst_client.clone(), &dst_ns);
    let old_uid = dst.get("web").await.unwrap().uid();
    let r = p.engine.sync(&target).await.unwrap();
    assert_eq!(r.failures.len(), 1, "{r:#?}");
    assert!(r.failures[0].message.contains("draining"), "{:?}", r.failures[0]);
    assert!(r.failures[0].transient);
    assert_eq!(
        dst.get("web").await.unwrap().uid(),
        old_uid,
        "not deleted while pods could not be evicted"
    );
    let pods: Api<Pod> = Api::namespaced(p.dst_client.clone(), &dst_ns);
    assert_eq!(pods.list(&ListParams::default()).await.unwrap().items.len(), 1);
}

const PVC: &str = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec: {accessModes: [ReadWriteOnce], storageClassName: standard, resources: {requests: {storage: 1Gi}}}\n";

#[rstest]
#[case::default_recreate_spares_pvcs(json!({"defaultHandling": "Recreate"}), false)]
#[case::default_force_update_spares_pvcs(json!({"defaultHandling": "ForceUpdate"}), false)]
#[case::explicit_override_recreates(json!({"defaultHandling": "NoChange", "resourceOverrides": {"persistentvolumeclaims": "Recreate"}}), true)]
#[tokio::test]
async fn pvcs_are_recreated_only_when_an_override_names_them(
    #[case] policy: serde_json::Value,
    #[case] recreated: bool,
) {
    let p = pair("imm-pvc").await;
    let src_ns = p.source_namespace("pvc", PVC).await;
    let dst_ns = format!("{src_ns}-dr");
    let spec = |to: &str| {
        json!({"resourceTypes": ["persistentvolumeclaims"], "immutableResourceConfig": policy.clone(),
               "pvcConfig": {"storageClassMappings": [{"from": "standard", "to": to}]}})
    };
    let first = p.target(&src_ns, &dst_ns, spec("fast")).await;
    assert!(p.engine.sync(&first).await.unwrap().is_success());
    let dst: Api<PersistentVolumeClaim> = Api::namespaced(p.dst_client.clone(), &dst_ns);
    let old_uid = dst.get("data").await.unwrap().uid();

    // The mapping now sends the claim to another storage class: immutable on the DR side.
    let second = p.target(&src_ns, &dst_ns, spec("slow")).await;
    let r = p.engine.sync(&second).await.unwrap();
    let now = dst.get("data").await.unwrap();
    let class = now.spec.as_ref().unwrap().storage_class_name.clone();
    if recreated {
        assert_eq!(r.kinds["PersistentVolumeClaim"].recreated, 1, "{r:#?}");
        assert_ne!(now.uid(), old_uid);
        assert_eq!(class.as_deref(), Some("slow"));
    } else {
        assert_eq!(r.kinds["PersistentVolumeClaim"].skipped, 1, "{r:#?}");
        assert_eq!(
            now.uid(),
            old_uid,
            "a PVC is never recreated without an explicit override"
        );
        assert_eq!(class.as_deref(), Some("fast"));
    }
    let action = r
        .changes
        .iter()
        .chain(std::iter::empty())
        .find(|c| c.object.ends_with("/data"))
        .map(|c| c.action.clone());
    if recreated {
        assert_eq!(action, Some(ApplyAction::Recreated));
    }
}
