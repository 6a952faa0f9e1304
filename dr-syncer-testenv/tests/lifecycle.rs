//! Namespace lifecycle, garbage collection, deletion propagation, eviction and graceful pod deletion on
//! the test control plane.

use std::time::Duration;

use dr_syncer_testenv::{ControlPlane, api_status, apply_yaml, create_namespace, init_tracing, wait_for};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Namespace, Pod},
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, EvictParams, Patch, PatchParams, PostParams, PropagationPolicy},
};
use serde_json::json;

const T: Duration = Duration::from_secs(60);

async fn gone<K>(api: &Api<K>, name: &str) -> dr_syncer_testenv::Result<Option<()>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api.get_opt(name).await?.is_none().then_some(()))
}

#[tokio::test]
async fn deleting_a_namespace_removes_its_contents_then_the_namespace() {
    init_tracing();
    let cp = ControlPlane::start("ns-delete").await.unwrap();
    let client = cp.client();
    apply_yaml(
        &client,
        None,
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: gadgets.example.io}\nspec:\n  group: example.io\n  scope: Namespaced\n  names: {plural: gadgets, singular: gadget, kind: Gadget}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}\n",
    )
    .await
    .unwrap();
    let ns = create_namespace(&client, "doomed").await.unwrap();
    apply_yaml(
        &client,
        Some(&ns),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [example.io/hold]\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: nginx}]\n",
    )
    .await
    .unwrap();
    wait_for("the Gadget kind to be served", T, || {
        let (client, ns) = (client.clone(), ns.clone());
        async move {
            Ok(apply_yaml(
                &client,
                Some(&ns),
                "apiVersion: example.io/v1\nkind: Gadget\nmetadata: {name: g}\n",
            )
            .await
            .ok()
            .map(|_| ()))
        }
    })
    .await
    .unwrap();

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.delete(&ns, &DeleteParams::default()).await.unwrap();
    let terminating = namespaces.get(&ns).await.unwrap();
    assert_eq!(terminating.status.unwrap().phase.as_deref(), Some("Terminating"));
    assert!(terminating.metadata.deletion_timestamp.is_some());

    // Contents go (the Deployment, the Secret and the custom resource), except what a finalizer holds.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_for("the deployment to be deleted", T, || gone(&deployments, "web"))
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    wait_for("the held configmap to be marked deleted", T, || {
        let cms = cms.clone();
        async move { Ok(cms.get("held").await?.metadata.deletion_timestamp.map(|_| ())) }
    })
    .await
    .unwrap();

    // While terminating, nothing new may be created in it.
    let err = cms
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: kube::api::ObjectMeta {
                    name: Some("late".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    let status = api_status(&err).unwrap();
    assert_eq!(status.code, 403, "{status:?}");
    assert!(
        status.message.contains("because it is being terminated"),
        "{}",
        status.message
    );
    assert!(
        namespaces.get_opt(&ns).await.unwrap().is_some(),
        "namespace waits for its contents"
    );

    // Releasing the finalizer lets the namespace go.
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    wait_for("the namespace to disappear", T, || gone(&namespaces, &ns))
        .await
        .unwrap();
}

fn owned_cm(name: &str, owner: &ConfigMap, finalizer: bool) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "finalizers": if finalizer { json!(["example.io/hold"]) } else { json!(null) },
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "ConfigMap", "name": owner.name_any(),
                "uid": owner.uid().unwrap(), "blockOwnerDeletion": true
            }]
        }
    }))
    .unwrap()
}

async fn owner_and_dependent(client: &kube::Client, ns: &str, finalizer: bool) -> Api<ConfigMap> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let owner = api
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: kube::api::ObjectMeta {
                    name: Some("owner".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    api.create(&PostParams::default(), &owned_cm("dependent", &owner, finalizer))
        .await
        .unwrap();
    api
}

#[tokio::test]
async fn dependents_of_a_deleted_owner_are_garbage_collected() {
    init_tracing();
    let cp = ControlPlane::start("gc").await.unwrap();
    let ns = create_namespace(&cp.client(), "gc").await.unwrap();
    let api = owner_and_dependent(&cp.client(), &ns, false).await;
    api.delete("owner", &DeleteParams::default()).await.unwrap();
    assert!(
        api.get_opt("owner").await.unwrap().is_none(),
        "background deletion removes the owner at once"
    );
    wait_for("the dependent to be collected", T, || gone(&api, "dependent"))
        .await
        .unwrap();
}

#[tokio::test]
async fn foreground_deletion_keeps_the_owner_until_dependents_are_gone() {
    init_tracing();
    let cp = ControlPlane::start("foreground").await.unwrap();
    let ns = create_namespace(&cp.client(), "fg").await.unwrap();
    let api = owner_and_dependent(&cp.client(), &ns, true).await;
    api.delete(
        "owner",
        &DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let owner = api.get("owner").await.unwrap();
    assert!(owner.metadata.deletion_timestamp.is_some());
    assert!(
        owner.finalizers().contains(&"foregroundDeletion".to_owned()),
        "{:?}",
        owner.finalizers()
    );
    wait_for("the dependent to be marked deleted", T, || {
        let api = api.clone();
        async move {
            Ok(api
                .get("dependent")
                .await?
                .metadata
                .deletion_timestamp
                .map(|_| ()))
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        api.get_opt("owner").await.unwrap().is_some(),
        "owner waits for its blocking dependent"
    );

    api.patch(
        "dependent",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    wait_for("the owner to be deleted", T, || gone(&api, "owner"))
        .await
        .unwrap();
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_without_the_owner_reference() {
    init_tracing();
    let cp = ControlPlane::start("orphan").await.unwrap();
    let ns = create_namespace(&cp.client(), "orphan").await.unwrap();
    let api = owner_and_dependent(&cp.client(), &ns, false).await;
    api.delete(
        "owner",
        &DeleteParams {
            propagation_policy: Some(PropagationPolicy::Orphan),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    wait_for("the owner to be deleted", T, || gone(&api, "owner"))
        .await
        .unwrap();
    let dependent = api.get("dependent").await.unwrap();
    assert!(
        dependent.owner_references().is_empty(),
        "{:?}",
        dependent.owner_references()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        api.get_opt("dependent").await.unwrap().is_some(),
        "an orphan is never collected"
    );
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: NAME\n  labels: {app: web}\nspec:\n  containers: [{name: c, image: \"app:1\"}]\n";

async fn ready_pod(client: &kube::Client, ns: &str, name: &str) {
    apply_yaml(client, Some(ns), &POD.replace("NAME", name))
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}),
        ),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn eviction_respects_pod_disruption_budgets() {
    init_tracing();
    let cp = ControlPlane::start("evict").await.unwrap();
    let client = cp.client();
    let ns = create_namespace(&client, "evict").await.unwrap();
    ready_pod(&client, &ns, "a").await;
    apply_yaml(
        &client,
        Some(&ns),
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: pdb}\nspec:\n  minAvailable: 1\n  selector: {matchLabels: {app: web}}\n",
    )
    .await
    .unwrap();
    // kube's default client retries 429 answers; this test must see them.
    let pods: Api<Pod> = Api::namespaced(cp.client_without_retries().await.unwrap(), &ns);

    let err = pods.evict("a", &EvictParams::default()).await.unwrap_err();
    let status = api_status(&err).unwrap();
    assert_eq!(status.code, 429, "{status:?}");
    assert!(status.message.contains("disruption budget"), "{}", status.message);
    assert!(pods.get_opt("a").await.unwrap().is_some());

    // With a second ready pod the budget allows one disruption.
    ready_pod(&client, &ns, "b").await;
    pods.evict("a", &EvictParams::default()).await.unwrap();
    wait_for("the evicted pod to be deleted", T, || gone(&pods, "a"))
        .await
        .unwrap();
    let err = pods.evict("b", &EvictParams::default()).await.unwrap_err();
    assert_eq!(api_status(&err).unwrap().code, 429);
}

#[tokio::test]
async fn eviction_without_a_budget_deletes_the_pod() {
    init_tracing();
    let cp = ControlPlane::start("evict-free").await.unwrap();
    let client = cp.client();
    let ns = create_namespace(&client, "evict").await.unwrap();
    ready_pod(&client, &ns, "a").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.evict("a", &EvictParams::default()).await.unwrap();
    wait_for("the evicted pod to be deleted", T, || gone(&pods, "a"))
        .await
        .unwrap();
}

/// The pod's `deletionTimestamp` (set or not) and `deletionGracePeriodSeconds`.
async fn deletion(pods: &Api<Pod>, name: &str) -> Option<(bool, Option<i64>)> {
    pods.get_opt(name).await.unwrap().map(|p| {
        (
            p.metadata.deletion_timestamp.is_some(),
            p.metadata.deletion_grace_period_seconds,
        )
    })
}

fn grace(secs: i64) -> DeleteParams {
    DeleteParams {
        grace_period_seconds: Some(u32::try_from(secs).unwrap()),
        ..Default::default()
    }
}

#[tokio::test]
async fn bound_pods_are_deleted_gracefully_until_deleted_with_grace_period_zero() {
    init_tracing();
    let cp = ControlPlane::start("graceful").await.unwrap();
    let client = cp.client();
    let ns = create_namespace(&client, "graceful").await.unwrap();
    apply_yaml(
        &client,
        None,
        "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n",
    )
    .await
    .unwrap();
    let pod = |name: &str, spec: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{{spec}containers: [{{name: c, image: app}}]}}\n---\n"
        )
    };
    let yaml = [
        pod("bound", "nodeName: n1, terminationGracePeriodSeconds: 7, "),
        pod("defaulted", "nodeName: n1, "),
        pod("forced", "nodeName: n1, "),
        pod("evicted", "nodeName: n1, "),
        pod("done", "nodeName: n1, "),
        pod("unbound", ""),
        pod("orphan", "nodeName: no-such-node, "),
    ]
    .concat();
    apply_yaml(&client, Some(&ns), &yaml).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    // A pod bound to a node stays, with deletionTimestamp and its grace period, for its kubelet to finish.
    pods.delete("bound", &DeleteParams::default()).await.unwrap();
    assert_eq!(deletion(&pods, "bound").await, Some((true, Some(7))));
    let generation = pods.get("bound").await.unwrap().metadata.generation;
    assert_eq!(generation, Some(2), "a graceful deletion bumps the generation");
    // A later DELETE may shorten the grace period, not lengthen it.
    pods.delete("bound", &grace(60)).await.unwrap();
    assert_eq!(deletion(&pods, "bound").await, Some((true, Some(7))));
    pods.delete("bound", &grace(2)).await.unwrap();
    assert_eq!(deletion(&pods, "bound").await, Some((true, Some(2))));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        deletion(&pods, "bound").await.is_some(),
        "nothing in the server ends a grace period: the kubelet deletes the pod"
    );
    // The kubelet's delete, with grace period 0, removes it.
    pods.delete("bound", &grace(0)).await.unwrap();
    assert_eq!(deletion(&pods, "bound").await, None);

    // terminationGracePeriodSeconds defaults to 30.
    pods.delete("defaulted", &DeleteParams::default()).await.unwrap();
    assert_eq!(deletion(&pods, "defaulted").await, Some((true, Some(30))));
    // gracePeriodSeconds 0 deletes at once (kubectl delete --force --grace-period=0).
    pods.delete("forced", &grace(0)).await.unwrap();
    assert_eq!(deletion(&pods, "forced").await, None);
    // An eviction deletes gracefully too.
    pods.evict("evicted", &EvictParams::default()).await.unwrap();
    assert_eq!(deletion(&pods, "evicted").await, Some((true, Some(30))));
    // A pod in a terminal phase and a pod on no node go at once.
    pods.patch_status(
        "done",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
    )
    .await
    .unwrap();
    pods.delete("done", &DeleteParams::default()).await.unwrap();
    assert_eq!(deletion(&pods, "done").await, None);
    pods.delete("unbound", &DeleteParams::default()).await.unwrap();
    assert_eq!(deletion(&pods, "unbound").await, None);
    // A pod bound to a node that does not exist has no kubelet: the pod GC finishes its deletion.
    pods.delete("orphan", &DeleteParams::default()).await.unwrap();
    wait_for("the pod GC to delete the pod of a missing node", T, || {
        gone(&pods, "orphan")
    })
    .await
    .unwrap();

    // A terminating namespace waits for its bound pods, then goes once they are deleted.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.delete(&ns, &DeleteParams::default()).await.unwrap();
    wait_for("the namespace to report the remaining pods", T, || {
        let namespaces = namespaces.clone();
        let ns = ns.clone();
        async move {
            let conditions = namespaces
                .get(&ns)
                .await?
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default();
            Ok(conditions
                .iter()
                .any(|c| {
                    c.type_ == "NamespaceContentRemaining"
                        && c.status == "True"
                        && c.message
                            .as_deref()
                            .is_some_and(|m| m.contains("pods. has 2 resource instances"))
                })
                .then_some(()))
        }
    })
    .await
    .unwrap();
    for name in ["defaulted", "evicted"] {
        pods.delete(name, &grace(0)).await.unwrap();
    }
    wait_for("the namespace to disappear", T, || gone(&namespaces, &ns))
        .await
        .unwrap();
}
