//! Validation the test control plane performs like kube-apiserver: immutable fields (one case per field),
//! selector rules, NodePort allocation and namespace existence.

use dr_syncer_testenv::{ControlPlane, apply_yaml, create_namespace, init_tracing, status_of};
use kube::{
    Api,
    api::{DynamicObject, GroupVersionKind, Patch, PatchParams},
    discovery,
};
use rstest::rstest;
use serde_json::{Value, json};

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n";
const NODE_PORT: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: np}\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports: [{name: http, port: 80, nodePort: 30080}]\n";
const NODE_PORT_AUTO: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: npa}\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports: [{name: http, port: 80}]\n";
const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web, tier: fe}}\n    spec:\n      containers: [{name: web, image: \"nginx:1.25\"}]\n";
const REPLICASET: &str = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web, tier: fe}}\n    spec:\n      containers: [{name: web, image: \"nginx:1.25\"}]\n";
const DAEMONSET: &str = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent}\nspec:\n  selector: {matchLabels: {app: agent}}\n  template:\n    metadata: {labels: {app: agent, tier: sys}}\n    spec:\n      containers: [{name: agent, image: \"agent:1\"}]\n";
const STATEFULSET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db, tier: data}}
    spec:
      containers: [{name: db, image: "postgres:16"}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
"#;
const JOB: &str = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: once}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: job, image: \"job:1\"}]\n";
const PVC: &str = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  storageClassName: fast\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 2Gi}}\n";
const PVC_UNBOUND: &str = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 2Gi}}\n";
const IMMUTABLE_CM: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: frozen}\nimmutable: true\ndata: {k: v}\n";
const IMMUTABLE_SECRET: &str =
    "apiVersion: v1\nkind: Secret\nmetadata: {name: frozen}\nimmutable: true\nstringData: {k: v}\n";
const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {k: v}\n";

/// Create `manifest`, then merge-patch it with `patch`; the server must answer 422 mentioning `needle`.
#[rstest]
#[case::service_cluster_ip(SERVICE, json!({"spec": {"clusterIP": "10.96.200.200", "clusterIPs": ["10.96.200.200"]}}), "may not change once set")]
#[case::service_cluster_ips(SERVICE, json!({"spec": {"clusterIPs": ["10.96.200.201"]}}), "clusterIPs")]
#[case::deployment_selector(DEPLOYMENT, json!({"spec": {"selector": {"matchLabels": {"app": "web", "tier": "fe"}}}}), "field is immutable")]
#[case::replicaset_selector(REPLICASET, json!({"spec": {"selector": {"matchLabels": {"app": "web", "tier": "fe"}}}}), "field is immutable")]
#[case::daemonset_selector(DAEMONSET, json!({"spec": {"selector": {"matchLabels": {"app": "agent", "tier": "sys"}}}}), "field is immutable")]
#[case::statefulset_selector(STATEFULSET, json!({"spec": {"selector": {"matchLabels": {"app": "db", "tier": "data"}}}}), "updates to statefulset spec for fields other than")]
#[case::statefulset_service_name(STATEFULSET, json!({"spec": {"serviceName": "other"}}), "updates to statefulset spec for fields other than")]
#[case::statefulset_volume_claim_templates(STATEFULSET, json!({"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}}]}}), "updates to statefulset spec for fields other than")]
#[case::statefulset_pod_management(STATEFULSET, json!({"spec": {"podManagementPolicy": "Parallel"}}), "updates to statefulset spec for fields other than")]
#[case::job_template(JOB, json!({"spec": {"template": {"spec": {"containers": [{"name": "job", "image": "job:2"}]}}}}), "field is immutable")]
#[case::job_selector(JOB, json!({"spec": {"selector": {"matchLabels": {"x": "y"}}}}), "field is immutable")]
#[case::pvc_shrink(PVC, json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}}}), "can not be less than previous value")]
#[case::pvc_storage_class(PVC, json!({"spec": {"storageClassName": "slow"}}), "spec is immutable after creation except resources.requests")]
#[case::pvc_access_modes(PVC, json!({"spec": {"accessModes": ["ReadWriteMany"]}}), "spec is immutable after creation except resources.requests")]
#[case::pvc_volume_mode(PVC, json!({"spec": {"volumeMode": "Block"}}), "spec is immutable after creation except resources.requests")]
#[case::configmap_immutable_data(IMMUTABLE_CM, json!({"data": {"k": "changed"}}), "field is immutable when `immutable` is set")]
#[case::configmap_unset_immutable(IMMUTABLE_CM, json!({"immutable": false}), "field is immutable when `immutable` is set")]
#[case::secret_immutable_data(IMMUTABLE_SECRET, json!({"stringData": {"k": "changed"}}), "field is immutable when `immutable` is set")]
#[case::secret_unset_immutable(IMMUTABLE_SECRET, json!({"immutable": false}), "field is immutable when `immutable` is set")]
#[case::secret_type(SECRET, json!({"type": "kubernetes.io/tls"}), "field is immutable")]
#[tokio::test]
async fn immutable_field_change_is_rejected(
    #[case] manifest: &str,
    #[case] patch: Value,
    #[case] needle: &str,
) {
    init_tracing();
    let cp = ControlPlane::start("immutable").await.unwrap();
    let client = cp.client();
    let ns = create_namespace(&client, "immutable").await.unwrap();
    let obj = apply_yaml(&client, Some(&ns), manifest).await.unwrap().remove(0);
    let api = api_for(&client, &ns, &obj).await;
    let err = api
        .patch(
            obj.metadata.name.as_deref().unwrap(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect_err("the change must be refused");
    let status = dr_syncer_testenv::api_status(&err).unwrap_or_else(|| panic!("not an API error: {err}"));
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains(needle),
        "message {:?} lacks {needle:?}",
        status.message
    );
}

/// Create `manifest`, then merge-patch it with `patch`: accepted, and `pointer` reads `want`.
#[rstest]
#[case::pvc_volume_name_set_once(PVC_UNBOUND, json!({"spec": {"volumeName": "pv-1"}}), "/spec/volumeName", json!("pv-1"))]
#[case::statefulset_replicas(STATEFULSET, json!({"spec": {"replicas": 3}}), "/spec/replicas", json!(3))]
#[case::statefulset_template(STATEFULSET, json!({"spec": {"template": {"spec": {"containers": [{"name": "db", "image": "postgres:17"}]}}}}), "/spec/template/spec/containers/0/image", json!("postgres:17"))]
#[case::deployment_template(DEPLOYMENT, json!({"spec": {"replicas": 0, "template": {"metadata": {"labels": {"app": "web", "tier": "fe", "v": "2"}}}}}), "/spec/replicas", json!(0))]
#[case::configmap_mutable_metadata(IMMUTABLE_CM, json!({"metadata": {"labels": {"a": "b"}}}), "/metadata/labels/a", json!("b"))]
#[case::node_port_kept_when_omitted(NODE_PORT, json!({"spec": {"ports": [{"name": "http", "port": 80}]}}), "/spec/ports/0/nodePort", json!(30080))]
#[case::cluster_ip_kept_when_omitted(SERVICE, json!({"spec": {"clusterIP": null, "clusterIPs": null}}), "/spec/clusterIP", Value::Null)]
#[tokio::test]
async fn allowed_change_is_accepted(
    #[case] manifest: &str,
    #[case] patch: Value,
    #[case] pointer: &str,
    #[case] want: Value,
) {
    init_tracing();
    let cp = ControlPlane::start("mutable").await.unwrap();
    let client = cp.client();
    let ns = create_namespace(&client, "mutable").await.unwrap();
    let obj = apply_yaml(&client, Some(&ns), manifest).await.unwrap().remove(0);
    let before = serde_json::to_value(&obj).unwrap();
    let api = api_for(&client, &ns, &obj).await;
    let after = api
        .patch(
            obj.metadata.name.as_deref().unwrap(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let after = serde_json::to_value(&after).unwrap();
    if want.is_null() {
        // Null means "unchanged": an allocated value survives an update that omits it.
        assert_eq!(after.pointer(pointer), before.pointer(pointer), "{pointer}");
        assert!(
            after
                .pointer(pointer)
                .is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty()))
        );
    } else {
        assert_eq!(after.pointer(pointer), Some(&want), "{pointer} in {after:#}");
    }
}

#[tokio::test]
async fn pvc_storage_grows_only_once_the_claim_is_bound() {
    init_tracing();
    let cp = ControlPlane::start("pvc-growth").await.unwrap();
    let client = cp.client();
    let ns = create_namespace(&client, "pvc").await.unwrap();
    let pvc = apply_yaml(&client, Some(&ns), PVC).await.unwrap().remove(0);
    let api = api_for(&client, &ns, &pvc).await;
    let grow = json!({"spec": {"resources": {"requests": {"storage": "3Gi"}}}});
    // Like kube-apiserver: an unbound claim cannot be resized.
    let err = api
        .patch("data", &PatchParams::default(), &Patch::Merge(&grow))
        .await
        .unwrap_err();
    assert_eq!(
        dr_syncer_testenv::api_status(&err).map(|s| s.code),
        Some(422),
        "{err}"
    );
    api.patch(
        "data",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"volumeName": "pv-1"}})),
    )
    .await
    .unwrap();
    api.patch_status(
        "data",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Bound"}})),
    )
    .await
    .unwrap();
    let grown = api
        .patch("data", &PatchParams::default(), &Patch::Merge(&grow))
        .await
        .unwrap();
    assert_eq!(grown.data["spec"]["resources"]["requests"]["storage"], "3Gi");
}

#[tokio::test]
async fn node_port_is_kept_when_an_update_omits_it() {
    init_tracing();
    let cp = ControlPlane::start("nodeport-kept").await.unwrap();
    let client = cp.client();
    let ns = create_namespace(&client, "np").await.unwrap();
    let svc = apply_yaml(&client, Some(&ns), NODE_PORT_AUTO)
        .await
        .unwrap()
        .remove(0);
    let port = svc.data["spec"]["ports"][0]["nodePort"].clone();
    assert!(port.as_u64().is_some(), "{svc:?}");
    let api = api_for(&client, &ns, &svc).await;
    let patched = api
        .patch(
            "npa",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ports": [{"name": "http", "port": 80}]}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data["spec"]["ports"][0]["nodePort"], port);
}

#[tokio::test]
async fn duplicate_node_port_is_rejected_and_released_on_delete() {
    init_tracing();
    let cp = ControlPlane::start("nodeport-dup").await.unwrap();
    let client = cp.client();
    let ns = create_namespace(&client, "np").await.unwrap();
    apply_yaml(&client, Some(&ns), NODE_PORT).await.unwrap();
    let second = NODE_PORT.replace("name: np", "name: np2");
    let err = apply_yaml(&client, Some(&ns), &second).await.unwrap_err();
    let status = status_of(&err).unwrap_or_else(|| panic!("{err}"));
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains("provided port is already allocated"),
        "{}",
        status.message
    );

    // Deleting the first Service releases its port.
    let svc = kube::Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), &ns);
    svc.delete("np", &Default::default()).await.unwrap();
    dr_syncer_testenv::wait_for("node port release", std::time::Duration::from_secs(20), || {
        let client = client.clone();
        let (ns, second) = (ns.clone(), second.clone());
        async move { Ok(apply_yaml(&client, Some(&ns), &second).await.ok().map(|_| ())) }
    })
    .await
    .unwrap();
}

#[rstest]
#[case::selector_must_match_labels(
    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {app: one}}\n  template:\n    metadata: {labels: {app: two}}\n    spec:\n      containers: [{name: c, image: i}]\n",
    "selector` does not match template `labels`"
)]
#[case::selector_required(
    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    metadata: {labels: {app: two}}\n    spec:\n      containers: [{name: c, image: i}]\n",
    "spec.selector: Required value"
)]
#[case::statefulset_selector_must_match(
    "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: s}\nspec:\n  serviceName: s\n  selector: {matchLabels: {app: one}}\n  template:\n    metadata: {labels: {app: two}}\n    spec:\n      containers: [{name: c, image: i}]\n",
    "selector` does not match template `labels`"
)]
#[case::daemonset_selector_must_match(
    "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {app: one}}\n  template:\n    metadata: {labels: {app: two}}\n    spec:\n      containers: [{name: c, image: i}]\n",
    "selector` does not match template `labels`"
)]
#[case::containers_required(
    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {app: one}}\n  template:\n    metadata: {labels: {app: one}}\n    spec:\n      containers: []\n",
    "containers: Required value"
)]
#[tokio::test]
async fn invalid_object_is_rejected_on_create(#[case] manifest: &str, #[case] needle: &str) {
    init_tracing();
    let cp = ControlPlane::start("invalid").await.unwrap();
    let ns = create_namespace(&cp.client(), "invalid").await.unwrap();
    let err = apply_yaml(&cp.client(), Some(&ns), manifest).await.unwrap_err();
    let status = status_of(&err).unwrap_or_else(|| panic!("{err}"));
    assert_eq!(status.code, 422, "{status:?}");
    assert!(
        status.message.contains(needle),
        "message {:?} lacks {needle:?}",
        status.message
    );
}

#[tokio::test]
async fn creating_in_a_missing_namespace_is_not_found() {
    init_tracing();
    let cp = ControlPlane::start("missing-ns").await.unwrap();
    let err = apply_yaml(
        &cp.client(),
        Some("does-not-exist"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    )
    .await
    .unwrap_err();
    let status = status_of(&err).unwrap_or_else(|| panic!("{err}"));
    assert_eq!(status.code, 404, "{status:?}");
    assert!(status.message.contains("does-not-exist"), "{}", status.message);
}

async fn api_for(client: &kube::Client, ns: &str, obj: &DynamicObject) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::try_from(obj.types.as_ref().unwrap()).unwrap();
    let (ar, _) = discovery::pinned_kind(client, &gvk).await.unwrap();
    Api::namespaced_with(client.clone(), ns, &ar)
}
