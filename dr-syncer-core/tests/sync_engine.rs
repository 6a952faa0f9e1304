//! The sync engine against two test control planes: a realistic namespace copied with every
//! transformation, no-op re-syncs that make no write request, single-write updates and repairs, prune,
//! failure isolation, the active-site rule (no write into a live DR namespace) and a 500-object namespace. Write counts come from the
//! destination server's request accounting.

mod common;

use std::collections::BTreeMap;

use common::{T, pair};
use dr_syncer_core::apply::ApplyAction;
use dr_syncer_testenv::{apply_yaml, create_namespace, wait_for};
use k8s_openapi::{
    api::{
        apps::v1::{DaemonSet, Deployment, StatefulSet},
        batch::v1::CronJob,
        core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service},
        networking::v1::Ingress,
        rbac::v1::RoleBinding,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, ResourceExt,
    api::{DynamicObject, Patch, PatchParams, PostParams},
    core::ApiResource,
};
use serde_json::json;

fn ann<K: ResourceExt>(obj: &K, key: &str) -> Option<String> {
    obj.annotations().get(key).cloned()
}

#[tokio::test]
async fn realistic_namespace_is_replicated_then_resynced_without_writes() {
    let p = pair("realistic").await;
    p.widget_crd().await;
    let src_ns = create_namespace(&p.src_client, "shop").await.unwrap();
    // Labels and annotations of the source namespace are carried over (namespaceConfig defaults).
    let ns_api: Api<Namespace> = Api::all(p.src_client.clone());
    ns_api
        .patch(
            &src_ns,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"team": "shop"}, "annotations": {"owner": "shop-team"}}}),
            ),
        )
        .await
        .unwrap();
    let yaml = include_str!("fixtures/realistic.yaml").replace("NAMESPACE", &src_ns);
    wait_for("fixture applied (Widget kind in discovery)", T, || async {
        Ok(apply_yaml(&p.src_client, Some(&src_ns), &yaml)
            .await
            .ok()
            .map(|_| ()))
    })
    .await
    .unwrap();
    let dst_ns = format!("{src_ns}-dr");
    let target = p
        .target(
            &src_ns,
            &dst_ns,
            json!({
                "resourceTypes": ["*"],
                "syncCRDs": true,
                "ingressConfig": {"transformHosts": true, "hostSuffix": "-dr.example.com"},
                "pvcConfig": {"storageClassMappings": [{"from": "standard", "to": "dr-standard"}]},
            }),
        )
        .await;

    let report = p.engine.sync(&target).await.unwrap();
    assert!(report.is_success(), "{:#?}", report.failures);
    let created = |gk: &str| report.kinds.get(gk).map(|k| k.created).unwrap_or(0);
    for (gk, n) in [
        ("ConfigMap", 1),
        ("Secret", 1),
        ("ServiceAccount", 1),
        ("Role.rbac.authorization.k8s.io", 1),
        ("RoleBinding.rbac.authorization.k8s.io", 1),
        ("PersistentVolumeClaim", 1),
        ("Deployment.apps", 1),
        ("StatefulSet.apps", 1),
        ("DaemonSet.apps", 1),
        ("CronJob.batch", 1),
        ("Service", 4),
        ("Ingress.networking.k8s.io", 1),
        ("Widget.example.com", 1),
        ("CustomResourceDefinition.apiextensions.k8s.io", 1),
        ("Namespace", 1),
    ] {
        assert_eq!(created(gk), n, "{gk}: {:#?}", report.kinds);
    }
    // kube-root-ca.crt (published into every namespace by the source cluster) is never copied.
    let root_ca = Api::<ConfigMap>::namespaced(p.src_client.clone(), &src_ns)
        .get_opt("kube-root-ca.crt")
        .await
        .unwrap();
    if root_ca.is_some() {
        assert!(
            report
                .skipped
                .iter()
                .any(|s| s.object.ends_with("/kube-root-ca.crt")),
            "{:#?}",
            report.skipped
        );
    }
    assert_eq!(p.src_writes().await, 0, "a sync never writes to the source");

    // Every expected transformation, as the DR server stores it.
    let c = p.dst_client.clone();
    let ns: Namespace = Api::all(c.clone()).get(&dst_ns).await.unwrap();
    assert_eq!(ns.labels().get("team").map(String::as_str), Some("shop"));
    assert_eq!(ann(&ns, "owner").as_deref(), Some("shop-team"));
    assert_eq!(ann(&ns, "dr-syncer.io/synced-by"), Some(target.synced_by.clone()));

    let cm: ConfigMap = Api::namespaced(c.clone(), &dst_ns).get("settings").await.unwrap();
    assert_eq!(cm.data.as_ref().unwrap()["LOG_LEVEL"], "info");
    assert_eq!(ann(&cm, "dr-syncer.io/source-cluster").as_deref(), Some("prod"));
    assert_eq!(ann(&cm, "dr-syncer.io/source-namespace"), Some(src_ns.clone()));
    assert!(ann(&cm, "dr-syncer.io/last-synced").is_some());
    assert!(cm.metadata.owner_references.is_none());
    let secret: Secret = Api::namespaced(c.clone(), &dst_ns)
        .get("db-credentials")
        .await
        .unwrap();
    assert_eq!(secret.data.unwrap()["password"].0, b"s3cret");

    let deploy: Deployment = Api::namespaced(c.clone(), &dst_ns)
        .get("storefront")
        .await
        .unwrap();
    assert_eq!(deploy.spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(
        ann(&deploy, "dr-syncer.io/original-replicas").as_deref(),
        Some("3")
    );
    let env = deploy.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    assert_eq!(env[0].value.as_deref(), Some("db.dr.internal"));
    let sts: StatefulSet = Api::namespaced(c.clone(), &dst_ns).get("db").await.unwrap();
    assert_eq!(sts.spec.unwrap().replicas, Some(0));
    let ds: DaemonSet = Api::namespaced(c.clone(), &dst_ns)
        .get("log-agent")
        .await
        .unwrap();
    let sel = ds.spec.unwrap().template.spec.unwrap().node_selector.unwrap();
    assert_eq!(sel.get("dr-syncer.io/quiet").map(String::as_str), Some("true"));
    assert_eq!(sel.get("pool").map(String::as_str), Some("general"));
    let cron: CronJob = Api::namespaced(c.clone(), &dst_ns)
        .get("nightly-report")
        .await
        .unwrap();
    assert_eq!(cron.spec.suspend, Some(true));

    let svc_api: Api<Service> = Api::namespaced(c.clone(), &dst_ns);
    let src_svc: Service = Api::namespaced(p.src_client.clone(), &src_ns)
        .get("storefront")
        .await
        .unwrap();
    let svc = svc_api.get("storefront").await.unwrap().spec.unwrap();
    assert!(
        svc.cluster_ip.is_some(),
        "the DR server allocates its own ClusterIP"
    );
    // Allocated by each server on its own (the two servers may pick the same address by chance, but the
    // DR object's field is not owned by dr-syncer).
    let _ = src_svc;
    let headless = svc_api.get("db").await.unwrap().spec.unwrap();
    assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
    let node_port = svc_api.get("storefront-public").await.unwrap().spec.unwrap();
    assert_eq!(node_port.ports.unwrap()[0].node_port, Some(30480));
    let external = svc_api.get("payments").await.unwrap().spec.unwrap();
    assert_eq!(external.external_name.as_deref(), Some("payments.example.com"));

    let ing: Ingress = Api::namespaced(c.clone(), &dst_ns)
        .get("storefront")
        .await
        .unwrap();
    let ing_spec = ing.spec.unwrap();
    assert_eq!(
        ing_spec.rules.unwrap()[0].host.as_deref(),
        Some("shop-dr.example.com")
    );
    assert_eq!(
        ing_spec.tls.unwrap()[0].hosts.as_ref().unwrap()[0],
        "shop-dr.example.com"
    );

    let pvc: PersistentVolumeClaim = Api::namespaced(c.clone(), &dst_ns).get("data").await.unwrap();
    let pvc_spec = pvc.spec.unwrap();
    assert_eq!(pvc_spec.storage_class_name.as_deref(), Some("dr-standard"));
    assert_eq!(pvc_spec.volume_name, None);

    let rb: RoleBinding = Api::namespaced(c.clone(), &dst_ns)
        .get("config-reader")
        .await
        .unwrap();
    assert_eq!(
        rb.subjects.unwrap()[0].namespace.as_deref(),
        Some(dst_ns.as_str())
    );

    let crd: CustomResourceDefinition = Api::all(c.clone()).get("widgets.example.com").await.unwrap();
    assert!(
        crd.status
            .unwrap()
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );
    let widget_ar = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let widget: DynamicObject = Api::namespaced_with(c.clone(), &dst_ns, &widget_ar)
        .get("gadget")
        .await
        .unwrap();
    assert_eq!(widget.data["spec"]["size"], 3);

    // A second sync of the unchanged namespace: zero write requests.
    let before = p.dst_writes().await;
    let again = p.engine.sync(&target).await.unwrap();
    assert!(again.is_success(), "{:#?}", again.failures);
    assert_eq!(
        p.dst_writes().await - before,
        0,
        "no-op re-sync wrote: {:#?}",
        again.changes
    );
    let t = again.totals();
    assert_eq!((t.created, t.updated, t.recreated, t.deleted), (0, 0, 0, 0));
    assert!(t.unchanged >= 17, "{t:?}");

    // One changed source object: exactly one write.
    let src_cm: Api<ConfigMap> = Api::namespaced(p.src_client.clone(), &src_ns);
    src_cm
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"LOG_LEVEL": "debug"}})),
        )
        .await
        .unwrap();
    let before = p.dst_writes().await;
    let r = p.engine.sync(&target).await.unwrap();
    assert_eq!(p.dst_writes().await - before, 1, "{:#?}", r.changes);
    assert_eq!(r.kinds["ConfigMap"].updated, 1);
    let cm: ConfigMap = Api::namespaced(c.clone(), &dst_ns).get("settings").await.unwrap();
    assert_eq!(cm.data.unwrap()["LOG_LEVEL"], "debug");

    // A DR object edited by hand: repaired with one write.
    let dst_deploy: Api<Deployment> = Api::namespaced(c.clone(), &dst_ns);
    dst_deploy
        .patch(
            "storefront",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "evil:latest"}]}}}})),
        )
        .await
        .unwrap();
    let before = p.dst_writes().await;
    let r = p.engine.sync(&target).await.unwrap();
    assert_eq!(p.dst_writes().await - before, 1, "{:#?}", r.changes);
    let repaired = dst_deploy.get("storefront").await.unwrap();
    assert_eq!(
        repaired.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("registry.example/shop/storefront:1.4")
    );

    // A field removed at the source is removed on the DR side (the desired-state fingerprint changed).
    src_cm
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"FEATURE_X": null}})),
        )
        .await
        .unwrap();
    let before = p.dst_writes().await;
    p.engine.sync(&target).await.unwrap();
    assert_eq!(p.dst_writes().await - before, 1);
    let cm: ConfigMap = Api::namespaced(c.clone(), &dst_ns).get("settings").await.unwrap();
    assert!(!cm.data.unwrap().contains_key("FEATURE_X"));

    // Plan mode reports a change and writes nothing.
    src_cm
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"NEW": "1"}})),
        )
        .await
        .unwrap();
    let before = p.dst_writes().await;
    let plan = p.engine.plan(&target).await.unwrap();
    assert_eq!(p.dst_writes().await - before, 0);
    let change = plan
        .changes
        .iter()
        .find(|c| c.object.ends_with("/settings"))
        .expect("planned change");
    assert_eq!(change.action, ApplyAction::Updated);
    assert!(
        change
            .diff
            .as_ref()
            .unwrap()
            .changes
            .iter()
            .any(|f| f.path == "/data/NEW"),
        "{change:#?}"
    );
}

#[tokio::test]
async fn prune_deletes_only_this_mappings_objects_whose_source_is_gone() {
    let p = pair("prune").await;
    let src_ns = p
        .source_namespace(
            "prune",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: keep}\ndata: {a: '1'}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: goes}\ndata: {a: '1'}\n",
        )
        .await;
    let dst_ns = format!("{src_ns}-dr");
    let target = p
        .target(&src_ns, &dst_ns, json!({"resourceTypes": ["configmaps"]}))
        .await;
    p.engine.sync(&target).await.unwrap();
    // On the DR side: an object nobody synced, and one another mapping synced.
    apply_yaml(
        &p.dst_client,
        Some(&dst_ns),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: local-only}\ndata: {a: '1'}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: other-mapping, annotations: {dr-syncer.io/synced-by: dr-syncer/other}}\ndata: {a: '1'}\n",
    )
    .await
    .unwrap();
    Api::<ConfigMap>::namespaced(p.src_client.clone(), &src_ns)
        .delete("goes", &Default::default())
        .await
        .unwrap();

    // prune off (the default): nothing is deleted.
    let r = p.engine.sync(&target).await.unwrap();
    assert_eq!(r.totals().deleted, 0);
    let dst: Api<ConfigMap> = Api::namespaced(p.dst_client.clone(), &dst_ns);
    for name in ["keep", "goes", "local-only", "other-mapping"] {
        assert!(
            dst.get_opt(name).await.unwrap().is_some(),
            "{name} deleted without prune"
        );
    }

    // prune on: exactly the synced object whose source is gone.
    let mut pruning = p
        .target(
            &src_ns,
            &dst_ns,
            json!({"resourceTypes": ["configmaps"], "prune": true}),
        )
        .await;
    pruning.synced_by = target.synced_by.clone();
    let before = p.dst_writes().await;
    let r = p.engine.sync(&pruning).await.unwrap();
    assert_eq!(r.kinds["ConfigMap"].deleted, 1, "{r:#?}");
    assert_eq!(p.dst_writes().await - before, 1);
    assert!(dst.get_opt("goes").await.unwrap().is_none());
    for name in ["keep", "local-only", "other-mapping"] {
        assert!(
            dst.get_opt(name).await.unwrap().is_some(),
            "{name} must survive prune"
        );
    }
    // Plan mode reports the deletion without making it.
    Api::<ConfigMap>::namespaced(p.src_client.clone(), &src_ns)
        .delete("keep", &Default::default())
        .await
        .unwrap();
    let plan = p.engine.plan(&pruning).await.unwrap();
    assert!(
        plan.changes
            .iter()
            .any(|c| c.object.ends_with("/keep") && c.action == ApplyAction::Deleted)
    );
    assert!(dst.get_opt("keep").await.unwrap().is_some());
}

#[tokio::test]
async fn one_failing_object_is_reported_and_the_rest_applied() {
    let p = pair("failure").await;
    let mut yaml = String::new();
    for i in 0..5 {
        yaml.push_str(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}}}\ndata: {{a: '1'}}\n---\n"
        ));
    }
    yaml.push_str("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: broken}\ndata: {a: '1'}\n");
    let src_ns = p.source_namespace("failure", &yaml).await;
    let dst_ns = format!("{src_ns}-dr");
    // A transform rule that turns exactly one object into something the DR server rejects.
    let target = p
        .target(
            &src_ns,
            &dst_ns,
            json!({
                "resourceTypes": ["configmaps"],
                "transformRules": [{"match": {"kind": "ConfigMap", "name": "^broken$"},
                                    "patches": [{"op": "add", "path": "/data/a", "value": 42}]}]
            }),
        )
        .await;
    let r = p.engine.sync(&target).await.unwrap();
    assert_eq!(r.failures.len(), 1, "{r:#?}");
    assert!(r.failures[0].object.ends_with("/broken"), "{:?}", r.failures[0]);
    assert_eq!(r.failures[0].kind, "ApplyFailed");
    assert_eq!(r.kinds["ConfigMap"].created, 5);
    assert_eq!(r.kinds["ConfigMap"].failed, 1);
    let dst: Api<ConfigMap> = Api::namespaced(p.dst_client.clone(), &dst_ns);
    assert_eq!(
        dst.list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .filter(|c| c.name_any().starts_with("cm-"))
            .count(),
        5
    );
}

#[tokio::test]
async fn an_active_dr_namespace_takes_no_write_from_the_source() {
    let p = pair("active").await;
    let src_ns = p
        .source_namespace(
            "active",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx}]}\n---\napiVersion: batch/v1\nkind: CronJob\nmetadata: {name: job}\nspec:\n  schedule: '* * * * *'\n  jobTemplate: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: j, image: busybox}]}}}}\n",
        )
        .await;
    let dst_ns = format!("{src_ns}-dr");
    let target = p
        .target(
            &src_ns,
            &dst_ns,
            json!({"resourceTypes": ["deployments", "cronjobs"], "prune": true}),
        )
        .await;
    p.engine.sync(&target).await.unwrap();
    // A cutover activates the DR side (with its own field manager) and marks the namespace.
    let deploy: Api<Deployment> = Api::namespaced(p.dst_client.clone(), &dst_ns);
    let cron: Api<CronJob> = Api::namespaced(p.dst_client.clone(), &dst_ns);
    deploy
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    cron.patch(
        "job",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .unwrap();
    Api::<Namespace>::all(p.dst_client.clone())
        .patch(
            &dst_ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"dr-syncer.io/active": "true"}}})),
        )
        .await
        .unwrap();

    // Production changes meanwhile (a stale site after a failover): a new image, a deleted CronJob.
    let src_deploy: Api<Deployment> = Api::namespaced(p.src_client.clone(), &src_ns);
    src_deploy
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:stale"}]}}}})),
        )
        .await
        .unwrap();
    Api::<CronJob>::namespaced(p.src_client.clone(), &src_ns)
        .delete("job", &Default::default())
        .await
        .unwrap();

    for round in 0..2 {
        let before = p.dst_writes().await;
        let r = p.engine.sync(&target).await.unwrap();
        assert_eq!(
            p.dst_writes().await - before,
            0,
            "round {round}: no write into the live site"
        );
        assert!(r.destination_active);
        assert!(r.is_success(), "{r:#?}");
        assert_eq!(
            r.held.as_ref().map(|h| h.reason.as_str()),
            Some("DestinationActive"),
            "{r:#?}"
        );
        let image = deploy
            .get("web")
            .await
            .unwrap()
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers[0]
            .image
            .clone();
        assert_eq!(image.as_deref(), Some("nginx"), "the stale image is not synced");
        assert_eq!(
            deploy.get("web").await.unwrap().spec.unwrap().replicas,
            Some(5),
            "round {round}"
        );
        assert_eq!(
            cron.get("job").await.unwrap().spec.suspend,
            Some(false),
            "round {round}: not pruned, not quieted"
        );
        let ns = Api::<Namespace>::all(p.dst_client.clone())
            .get(&dst_ns)
            .await
            .unwrap();
        assert_eq!(ann(&ns, "dr-syncer.io/active").as_deref(), Some("true"));
    }
}

#[tokio::test]
async fn a_500_object_namespace_is_copied_and_resynced_without_writes() {
    let p = pair("large").await;
    let src_ns = create_namespace(&p.src_client, "large").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(p.src_client.clone(), &src_ns);
    let creates = (0..500).map(|i| {
        let api = api.clone();
        async move {
            let cm = ConfigMap {
                metadata: kube::api::ObjectMeta {
                    name: Some(format!("cm-{i:03}")),
                    labels: Some(BTreeMap::from([("batch".into(), (i % 7).to_string())])),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([("i".into(), i.to_string())])),
                ..Default::default()
            };
            api.create(&PostParams::default(), &cm).await
        }
    });
    for r in futures::future::join_all(creates).await {
        r.unwrap();
    }
    let dst_ns = format!("{src_ns}-dr");
    let target = p
        .target(&src_ns, &dst_ns, json!({"resourceTypes": ["configmaps"]}))
        .await;
    let r = p.engine.sync(&target).await.unwrap();
    assert!(r.is_success());
    assert_eq!(r.kinds["ConfigMap"].created, 500);
    let dst: Api<ConfigMap> = Api::namespaced(p.dst_client.clone(), &dst_ns);
    let copied = dst.list(&Default::default()).await.unwrap().items;
    assert_eq!(
        copied.iter().filter(|c| c.name_any().starts_with("cm-")).count(),
        500
    );
    let before = p.dst_writes().await;
    let r = p.engine.sync(&target).await.unwrap();
    assert_eq!(r.kinds["ConfigMap"].unchanged, 500);
    assert_eq!(p.dst_writes().await - before, 0);
}

/// A cutover activates the DR workloads before it marks the namespace active. A sync in between (the
/// operator's schedule) must not quiet them again, nor must one after a cutover interrupted between the
/// two steps: the replicas the drill's field manager set are kept, mark or not. A DR workload scaled by
/// hand in a quiet namespace is still quieted again.
#[tokio::test]
async fn replicas_a_drill_set_are_kept_before_the_namespace_is_marked() {
    let p = pair("drill-replicas").await;
    let src_ns = p
        .source_namespace(
            "web",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: registry.example/web:1}]}\n",
        )
        .await;
    let dst_ns = format!("{src_ns}-dr");
    let target = p
        .target(&src_ns, &dst_ns, json!({"resourceTypes": ["deployments"]}))
        .await;
    let r = p.engine.sync(&target).await.unwrap();
    assert!(r.is_success(), "{:#?}", r.failures);
    let dst: Api<Deployment> = Api::namespaced(p.dst_client.clone(), &dst_ns);
    let replicas = || async { dst.get("web").await.unwrap().spec.unwrap().replicas };
    assert_eq!(replicas().await, Some(0));

    // The cutover's activation, as the drill writes it; the namespace is not marked yet.
    let by = |manager: &str| PatchParams {
        field_manager: Some(manager.into()),
        ..Default::default()
    };
    dst.patch(
        "web",
        &by("dr-syncer-drill"),
        &Patch::Merge(json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
    let (r, writes) = p.sync_counting_writes(&target).await;
    assert!(r.is_success(), "{:#?}", r.failures);
    assert_eq!(writes, 0, "{:#?}", r.changes);
    assert_eq!(replicas().await, Some(3));
    // A change at the source is still copied, and the replicas stay.
    let src: Api<Deployment> = Api::namespaced(p.src_client.clone(), &src_ns);
    src.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tier": "web"}}})),
    )
    .await
    .unwrap();
    let (r, writes) = p.sync_counting_writes(&target).await;
    assert!(r.is_success(), "{:#?}", r.failures);
    assert_eq!(writes, 1, "{:#?}", r.changes);
    let live = dst.get("web").await.unwrap();
    assert_eq!(live.labels().get("tier").map(String::as_str), Some("web"));
    assert_eq!(live.spec.unwrap().replicas, Some(3));

    // Scaled by hand on the DR side of a quiet namespace: quieted again.
    dst.patch(
        "web",
        &by("kubectl"),
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await
    .unwrap();
    let r = p.engine.sync(&target).await.unwrap();
    assert!(r.is_success(), "{:#?}", r.failures);
    assert_eq!(replicas().await, Some(0));

    // The quiet state a failback's drill leaves is the sync's to change again: a scale-override label
    // at the source still sets the DR replicas.
    for n in [3, 0] {
        dst.patch(
            "web",
            &by("dr-syncer-drill"),
            &Patch::Merge(json!({"spec": {"replicas": n}})),
        )
        .await
        .unwrap();
    }
    src.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"dr-syncer.io/scale-override": "2"}}})),
    )
    .await
    .unwrap();
    let r = p.engine.sync(&target).await.unwrap();
    assert!(r.is_success(), "{:#?}", r.failures);
    assert_eq!(replicas().await, Some(2));
}

/// A DR object dr-syncer did not create (no `dr-syncer.io/synced-by`) is left alone and reported as
/// skipped, with no write; `adoptExisting: true` takes it over; in a DR namespace the Go operator marked
/// (`dr-syncer.io/managed-by=dr-syncer`) it is taken over by default, unless `adoptExisting: false`.
#[tokio::test]
async fn only_dr_syncers_own_objects_are_changed_unless_adopted() {
    let p = pair("adopt").await;
    let src_ns = p
        .source_namespace(
            "adopt",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {site: production}\n",
        )
        .await;
    let local = |ns: &str, labels: &str| {
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{{labels}}}}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: {ns}}}\ndata: {{site: dr-local}}\n"
        )
    };
    let site = |ns: String| {
        let api: Api<ConfigMap> = Api::namespaced(p.dst_client.clone(), &ns);
        async move { api.get("settings").await.unwrap().data.unwrap()["site"].clone() }
    };

    // A DR namespace made by someone else: left alone.
    let plain = format!("{src_ns}-plain");
    apply_yaml(&p.dst_client, None, &local(&plain, "")).await.unwrap();
    let target = p
        .target(&src_ns, &plain, json!({"resourceTypes": ["configmaps"]}))
        .await;
    let before = p.dst_writes().await;
    let r = p.engine.sync(&target).await.unwrap();
    assert_eq!(r.kinds["ConfigMap"].skipped, 1, "{r:#?}");
    assert!(
        r.skipped
            .iter()
            .any(|s| s.object.ends_with("/settings") && s.reason == dr_syncer_core::apply::NOT_MANAGED),
        "{r:#?}"
    );
    assert_eq!(site(plain.clone()).await, "dr-local");
    // (The namespace takes dr-syncer's own fields: one write at most, none to the ConfigMap.)
    assert!(p.dst_writes().await - before <= 1);
    let adopting = p
        .target(
            &src_ns,
            &plain,
            json!({"resourceTypes": ["configmaps"], "adoptExisting": true}),
        )
        .await;
    p.engine.sync(&adopting).await.unwrap();
    assert_eq!(site(plain).await, "production", "adopted");

    // A namespace the Go operator marked: adopted by default, not when the mapping says no.
    let go = format!("{src_ns}-go");
    apply_yaml(
        &p.dst_client,
        None,
        &local(&go, "dr-syncer.io/managed-by: dr-syncer"),
    )
    .await
    .unwrap();
    let refusing = p
        .target(
            &src_ns,
            &go,
            json!({"resourceTypes": ["configmaps"], "adoptExisting": false}),
        )
        .await;
    p.engine.sync(&refusing).await.unwrap();
    assert_eq!(site(go.clone()).await, "dr-local");
    let target = p
        .target(&src_ns, &go, json!({"resourceTypes": ["configmaps"]}))
        .await;
    p.engine.sync(&target).await.unwrap();
    assert_eq!(site(go).await, "production", "adopted in a Go-marked namespace");
}
