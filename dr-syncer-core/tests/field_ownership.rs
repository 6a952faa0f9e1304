//! Field ownership of objects the first copy created by POST: a field the source drops later is removed
//! on the DR side with one write (including fields inside lists and labels), fields other managers own on
//! the DR side are kept, and after that takeover the object is server-side applied as any other.
//! Write counts come from the destination server's request accounting.

mod common;

use common::pair;
use k8s_openapi::{
    api::{apps::v1::Deployment, core::v1::ConfigMap},
    apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;

const FIXTURE: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {app: shop, tier: web}
data: {A: "1", B: "2", C: "3", D: "4"}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.example/web:1
        env:
        - {name: KEEP, value: "1"}
        - {name: DROP, value: "2"}
      - name: sidecar
        image: registry.example/sidecar:1
"#;

/// dr-syncer's managedFields entries of `obj`, as (operation, field set).
fn dr_syncer_entries<K: Resource>(obj: &K) -> Vec<(String, serde_json::Value)> {
    obj.meta()
        .managed_fields
        .iter()
        .flatten()
        .filter(|e: &&ManagedFieldsEntry| e.manager.as_deref() == Some("dr-syncer"))
        .map(|e| {
            (
                e.operation.clone().unwrap_or_default(),
                e.fields_v1.as_ref().map(|f| f.0.clone()).unwrap_or_default(),
            )
        })
        .collect()
}

fn operations<K: Resource>(obj: &K) -> Vec<String> {
    let mut ops: Vec<String> = dr_syncer_entries(obj).into_iter().map(|(op, _)| op).collect();
    ops.sort();
    ops
}

#[tokio::test]
async fn fields_dropped_at_the_source_leave_objects_created_by_post_with_one_write() {
    let p = pair("ownership").await;
    let src_ns = p.source_namespace("shop", FIXTURE).await;
    let dst_ns = format!("{src_ns}-dr");
    let target = p
        .target(
            &src_ns,
            &dst_ns,
            json!({"resourceTypes": ["configmaps", "deployments"]}),
        )
        .await;
    let report = p.engine.sync(&target).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failures);

    let src_cm: Api<ConfigMap> = Api::namespaced(p.src_client.clone(), &src_ns);
    let dst_cm: Api<ConfigMap> = Api::namespaced(p.dst_client.clone(), &dst_ns);
    let src_deploy: Api<Deployment> = Api::namespaced(p.src_client.clone(), &src_ns);
    let dst_deploy: Api<Deployment> = Api::namespaced(p.dst_client.clone(), &dst_ns);

    // The first copy created both objects by POST: their fields belong to dr-syncer's Update entry.
    let cm = dst_cm.get("settings").await.unwrap();
    assert_eq!(operations(&cm), ["Update"]);
    assert_eq!(operations(&dst_deploy.get("web").await.unwrap()), ["Update"]);

    // Someone on the DR side adds a label of their own: not dr-syncer's, so never removed by it.
    dst_cm
        .patch(
            "settings",
            &PatchParams {
                field_manager: Some("ops-team".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"metadata": {"labels": {"dr-note": "checked"}}})),
        )
        .await
        .unwrap();

    // A value changes at the source: one write (an apply), the Update entry stays for the rest.
    src_cm
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"A": "10"}})),
        )
        .await
        .unwrap();
    let (r, writes) = p.sync_counting_writes(&target).await;
    assert!(r.is_success(), "{:#?}", r.failures);
    assert_eq!(writes, 1);
    let cm = dst_cm.get("settings").await.unwrap();
    assert_eq!(cm.data.as_ref().unwrap()["A"], "10");
    assert_eq!(operations(&cm), ["Apply", "Update"]);

    // Data keys and every label dropped at the source — A (owned through the Apply entry since its
    // change), B (still through the Update entry) and both labels: removed on the DR side with one
    // write; the label another manager added stays.
    src_cm
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": null}, "data": {"A": null, "B": null}})),
        )
        .await
        .unwrap();
    let (r, writes) = p.sync_counting_writes(&target).await;
    assert!(r.is_success(), "{:#?}", r.failures);
    assert_eq!(writes, 1);
    let cm = dst_cm.get("settings").await.unwrap();
    let data = cm.data.clone().unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["C", "D"]);
    assert_eq!(cm.labels().keys().collect::<Vec<_>>(), ["dr-note"]);
    assert_eq!(
        cm.labels()["dr-note"],
        "checked",
        "another manager's label is kept"
    );
    // The data fields dr-syncer created now belong to its Apply entry.
    let apply = dr_syncer_entries(&cm)
        .into_iter()
        .find(|(op, _)| op == "Apply")
        .expect("Apply entry")
        .1;
    assert!(apply.pointer("/f:data/f:C").is_some(), "{apply}");

    // A later drop goes the plain way: one apply, and the field is gone.
    src_cm
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"C": null}})),
        )
        .await
        .unwrap();
    let (r, writes) = p.sync_counting_writes(&target).await;
    assert!(r.is_success(), "{:#?}", r.failures);
    assert_eq!(writes, 1);
    let cm = dst_cm.get("settings").await.unwrap();
    assert_eq!(cm.data.as_ref().unwrap().keys().collect::<Vec<_>>(), ["D"]);
    assert_eq!(cm.labels()["dr-note"], "checked");

    // Nothing is left to do.
    let (r, writes) = p.sync_counting_writes(&target).await;
    assert!(r.is_success(), "{:#?}", r.failures);
    assert_eq!(writes, 0, "{:#?}", r.changes);

    // Inside lists: someone on the DR side adds an env var of their own to a container; then an env var
    // and a whole container are dropped at the source. A merge patch would replace the container list
    // whole and lose the DR side's env var, so this takeover is two writes (the managedFields, then an
    // apply, which merges the list item by item).
    dst_deploy
        .patch(
            "web",
            &PatchParams {
                field_manager: Some("ops-team".into()),
                ..Default::default()
            },
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "env": [{"name": "OPS", "value": "on"}]}
            ]}}}})),
        )
        .await
        .unwrap();
    let mut deploy = src_deploy.get("web").await.unwrap();
    let pod = deploy.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
    pod.containers.retain(|c| c.name == "web");
    pod.containers[0]
        .env
        .as_mut()
        .unwrap()
        .retain(|e| e.name == "KEEP");
    deploy.metadata.managed_fields = None;
    src_deploy
        .replace("web", &Default::default(), &deploy)
        .await
        .unwrap();
    let (r, writes) = p.sync_counting_writes(&target).await;
    assert!(r.is_success(), "{:#?}", r.failures);
    assert_eq!(writes, 2);
    let live = dst_deploy.get("web").await.unwrap();
    let pod = live.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(
        pod.containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["web"]
    );
    let mut env: Vec<&str> = pod.containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    env.sort();
    assert_eq!(env, ["KEEP", "OPS"]);
    // The rest of the object is as before: the DR copy is quiet (0 replicas) with the source's image.
    assert_eq!(live.spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(pod.containers[0].image.as_deref(), Some("registry.example/web:1"));
}

const SIDECARS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  replicas: 1
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      tolerations:
      - {key: dedicated, operator: Exists}
      containers:
      - name: api
        image: registry.example/api:1
        env:
        - {name: KEEP, value: "1"}
        - {name: NEXT, value: "$(KEEP)"}
"#;

/// The container `api`'s env vars, as (name, value), in order.
fn api_env(live: &Deployment) -> Vec<(String, Option<String>)> {
    let pod = live.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let api = pod.containers.iter().find(|c| c.name == "api").unwrap();
    api.env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect()
}

/// What other managers add on the DR side to lists keyed by name (a sidecar container, an env var), a
/// server-side apply never removes; so they are not a difference, and cost no write on later syncs. An
/// atomic list (tolerations) edited by hand is still repaired, and then costs nothing either.
#[tokio::test]
async fn items_other_managers_add_to_keyed_lists_cost_no_writes() {
    let p = pair("keyed-lists").await;
    let src_ns = p.source_namespace("api", SIDECARS).await;
    let dst_ns = format!("{src_ns}-dr");
    let target = p
        .target(&src_ns, &dst_ns, json!({"resourceTypes": ["deployments"]}))
        .await;
    let report = p.engine.sync(&target).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failures);
    let dst_deploy: Api<Deployment> = Api::namespaced(p.dst_client.clone(), &dst_ns);
    let ops = PatchParams {
        field_manager: Some("ops-team".into()),
        ..Default::default()
    };

    // A mesh injects a sidecar and an env var on the DR side.
    dst_deploy
        .patch(
            "api",
            &ops,
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "api", "env": [{"name": "MESH", "value": "on"}]},
                {"name": "mesh-proxy", "image": "registry.example/proxy:1"}
            ]}}}})),
        )
        .await
        .unwrap();
    for round in 0..2 {
        let (r, writes) = p.sync_counting_writes(&target).await;
        assert!(r.is_success(), "{:#?}", r.failures);
        assert_eq!(writes, 0, "round {round}: {:#?}", r.changes);
    }
    let live = dst_deploy.get("api").await.unwrap();
    let pod = live.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["api", "mesh-proxy"]);
    let mut env: Vec<String> = api_env(&live).into_iter().map(|(n, _)| n).collect();
    env.sort();
    assert_eq!(env, ["KEEP", "MESH", "NEXT"]);

    // A value dr-syncer owns inside a keyed list item, changed by hand: repaired with one write; the
    // mesh's items stay.
    dst_deploy
        .patch(
            "api",
            &ops,
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "api", "env": [{"name": "KEEP", "value": "edited"}]}
            ]}}}})),
        )
        .await
        .unwrap();
    let (r, writes) = p.sync_counting_writes(&target).await;
    assert!(r.is_success(), "{:#?}", r.failures);
    assert_eq!(writes, 1, "{:#?}", r.changes);
    let live = dst_deploy.get("api").await.unwrap();
    let pod = live.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.containers.len(), 2);
    let mut env = api_env(&live);
    env.sort();
    let var = |n: &str, v: &str| (n.to_owned(), Some(v.to_owned()));
    assert_eq!(env, [var("KEEP", "1"), var("MESH", "on"), var("NEXT", "$(KEEP)")]);

    // An item dr-syncer owns, removed by hand: repaired with one write.
    dst_deploy
        .patch(
            "api",
            &ops,
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "api", "env": [{"name": "KEEP", "$patch": "delete"}]}
            ]}}}})),
        )
        .await
        .unwrap();
    assert!(
        !api_env(&dst_deploy.get("api").await.unwrap())
            .iter()
            .any(|(n, _)| n == "KEEP")
    );
    let (r, writes) = p.sync_counting_writes(&target).await;
    assert!(r.is_success(), "{:#?}", r.failures);
    assert_eq!(writes, 1, "{:#?}", r.changes);
    assert!(api_env(&dst_deploy.get("api").await.unwrap()).contains(&var("KEEP", "1")));

    // dr-syncer's items reordered by hand (NEXT refers to KEEP, so the order matters): repaired with
    // one write, which restores their order; then nothing is left to do.
    let env = api_env(&dst_deploy.get("api").await.unwrap());
    let at = |n: &str| env.iter().position(|(m, _)| m == n).unwrap();
    let (keep, next) = (at("KEEP"), at("NEXT"));
    assert!(keep < next, "{env:?}");
    let moved = json!([{
        "op": "move",
        "from": format!("/spec/template/spec/containers/0/env/{next}"),
        "path": format!("/spec/template/spec/containers/0/env/{keep}"),
    }]);
    dst_deploy
        .patch(
            "api",
            &ops,
            &Patch::Json::<()>(serde_json::from_value(moved).unwrap()),
        )
        .await
        .unwrap();
    let order = |env: Vec<(String, Option<String>)>| -> Vec<String> {
        env.into_iter().map(|(n, _)| n).filter(|n| n != "MESH").collect()
    };
    assert_eq!(
        order(api_env(&dst_deploy.get("api").await.unwrap())),
        ["NEXT", "KEEP"]
    );
    let (r, writes) = p.sync_counting_writes(&target).await;
    assert!(r.is_success(), "{:#?}", r.failures);
    assert_eq!(writes, 1, "{:#?}", r.changes);
    assert_eq!(
        order(api_env(&dst_deploy.get("api").await.unwrap())),
        ["KEEP", "NEXT"]
    );
    let (r, writes) = p.sync_counting_writes(&target).await;
    assert!(r.is_success(), "{:#?}", r.failures);
    assert_eq!(writes, 0, "{:#?}", r.changes);

    // A second KEEP added by hand (the last one wins at runtime): repaired with one write, which leaves
    // one KEEP with dr-syncer's value; then nothing is left to do.
    let dup = json!([{
        "op": "add",
        "path": "/spec/template/spec/containers/0/env/-",
        "value": {"name": "KEEP", "value": "evil"},
    }]);
    dst_deploy
        .patch(
            "api",
            &ops,
            &Patch::Json::<()>(serde_json::from_value(dup).unwrap()),
        )
        .await
        .unwrap();
    let keeps = |env: Vec<(String, Option<String>)>| -> Vec<Option<String>> {
        env.into_iter()
            .filter(|(n, _)| n == "KEEP")
            .map(|(_, v)| v)
            .collect()
    };
    assert_eq!(keeps(api_env(&dst_deploy.get("api").await.unwrap())).len(), 2);
    let (r, writes) = p.sync_counting_writes(&target).await;
    assert!(r.is_success(), "{:#?}", r.failures);
    assert_eq!(writes, 1, "{:#?}", r.changes);
    assert_eq!(
        keeps(api_env(&dst_deploy.get("api").await.unwrap())),
        [Some("1".to_owned())]
    );
    let (r, writes) = p.sync_counting_writes(&target).await;
    assert!(r.is_success(), "{:#?}", r.failures);
    assert_eq!(writes, 0, "{:#?}", r.changes);

    // Tolerations are an atomic list: a hand edit of it is a difference, repaired by the next sync.
    dst_deploy
        .patch(
            "api",
            &ops,
            &Patch::Merge(json!({"spec": {"template": {"spec": {"tolerations": [
                {"key": "dedicated", "operator": "Exists"},
                {"key": "spot", "operator": "Exists"}
            ]}}}})),
        )
        .await
        .unwrap();
    let (r, writes) = p.sync_counting_writes(&target).await;
    assert!(r.is_success(), "{:#?}", r.failures);
    assert_eq!(writes, 1, "{:#?}", r.changes);
    let live = dst_deploy.get("api").await.unwrap();
    let pod = live.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let keys: Vec<&str> = pod
        .tolerations
        .iter()
        .flatten()
        .filter_map(|t| t.key.as_deref())
        .collect();
    assert_eq!(keys, ["dedicated"]);
    let (r, writes) = p.sync_counting_writes(&target).await;
    assert!(r.is_success(), "{:#?}", r.failures);
    assert_eq!(writes, 0, "{:#?}", r.changes);
}

/// A source object whose keyed list repeats a key (the API server takes that from a create or an update,
/// with a warning; a server-side apply would refuse it): copied as it is, and no difference afterwards.
#[tokio::test]
async fn a_key_the_source_repeats_costs_no_writes() {
    let p = pair("dup-keys").await;
    let src_ns = p
        .source_namespace(
            "dups",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: marker}\n",
        )
        .await;
    let dst_ns = format!("{src_ns}-dr");
    let deploy: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "dups"},
        "spec": {
            "selector": {"matchLabels": {"app": "dups"}},
            "template": {
                "metadata": {"labels": {"app": "dups"}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1", "env": [
                    {"name": "F", "value": "a"},
                    {"name": "F", "value": "$(F)b"}
                ]}]}
            }
        }
    }))
    .unwrap();
    let src_deploy: Api<Deployment> = Api::namespaced(p.src_client.clone(), &src_ns);
    src_deploy.create(&Default::default(), &deploy).await.unwrap();
    let target = p
        .target(&src_ns, &dst_ns, json!({"resourceTypes": ["deployments"]}))
        .await;
    let report = p.engine.sync(&target).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failures);
    let dst_deploy: Api<Deployment> = Api::namespaced(p.dst_client.clone(), &dst_ns);
    let live = dst_deploy.get("dups").await.unwrap();
    let pod = live.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let env: Vec<(&str, Option<&str>)> = pod.containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e.value.as_deref()))
        .collect();
    assert_eq!(env, [("F", Some("a")), ("F", Some("$(F)b"))]);
    for round in 0..2 {
        let (r, writes) = p.sync_counting_writes(&target).await;
        assert!(r.is_success(), "{:#?}", r.failures);
        assert_eq!(writes, 0, "round {round}: {:#?}", r.changes);
    }
}
