//! Core API machinery of the test control plane, exercised with kube-rs: CRUD, watch and resume, 410 Gone,
//! server-side apply conflicts, optimistic concurrency, CRDs with a status subresource, side-by-side servers.

use std::{collections::BTreeMap, time::Duration};

use dr_syncer_testenv::{ControlPlane, api_status, apply_yaml, create_namespace, init_tracing, wait_for};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::{
    api::core::v1::ConfigMap, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, ResourceExt,
    api::{
        ApiResource, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, Patch, PatchParams, PostParams,
        WatchEvent, WatchParams,
    },
    runtime::{WatchStreamExt, conditions, watcher},
};
use serde_json::json;

const T: Duration = Duration::from_secs(30);

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    }
}

#[tokio::test]
async fn create_get_list_update_delete() {
    init_tracing();
    let cp = ControlPlane::start("crud").await.unwrap();
    let ns = create_namespace(&cp.client(), "crud").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cp.client(), &ns);

    let created = api
        .create(&PostParams::default(), &cm("a", &[("k", "v")]))
        .await
        .unwrap();
    assert!(created.uid().is_some());
    assert!(created.creation_timestamp().is_some());
    let got = api.get("a").await.unwrap();
    assert_eq!(got.data.unwrap()["k"], "v");

    api.create(&PostParams::default(), &cm("b", &[])).await.unwrap();
    let list = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        list.items.iter().map(|c| c.name_any()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let selected = api
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(selected.items.len(), 1);

    let err = api
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap_err();
    assert!(api_status(&err).unwrap().is_already_exists(), "{err}");

    api.delete("a", &Default::default()).await.unwrap();
    let err = api.get("a").await.unwrap_err();
    assert!(api_status(&err).unwrap().is_not_found(), "{err}");
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version() {
    init_tracing();
    let cp = ControlPlane::start("watch").await.unwrap();
    let ns = create_namespace(&cp.client(), "watch").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cp.client(), &ns);

    let first = api.create(&PostParams::default(), &cm("one", &[])).await.unwrap();
    let rv = first.resource_version().unwrap();
    // Changes made while nobody watches are delivered to a watch that resumes from `rv`.
    api.create(&PostParams::default(), &cm("two", &[])).await.unwrap();
    api.patch(
        "one",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "1"}})),
    )
    .await
    .unwrap();
    api.delete("two", &Default::default()).await.unwrap();

    let stream = api.watch(&WatchParams::default().timeout(10), &rv).await.unwrap();
    let events: Vec<String> = stream
        .take(3)
        .map_ok(|ev| match ev {
            WatchEvent::Added(o) => format!("ADDED {}", o.name_any()),
            WatchEvent::Modified(o) => format!("MODIFIED {}", o.name_any()),
            WatchEvent::Deleted(o) => format!("DELETED {}", o.name_any()),
            WatchEvent::Bookmark(_) => "BOOKMARK".into(),
            WatchEvent::Error(e) => format!("ERROR {}", e.code),
        })
        .try_collect()
        .await
        .unwrap();
    assert_eq!(events, ["ADDED two", "MODIFIED one", "DELETED two"]);
}

#[tokio::test]
async fn expired_watch_gets_410_and_a_resumed_watcher_sees_every_change() {
    init_tracing();
    let cp = ControlPlane::start("expire").await.unwrap();
    let ns = create_namespace(&cp.client(), "expire").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cp.client(), &ns);
    let old = api
        .create(&PostParams::default(), &cm("before", &[]))
        .await
        .unwrap()
        .resource_version()
        .unwrap();

    // A resilient watcher (kube-runtime) that must see every change despite the expiry.
    let mut store = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(
        BTreeMap::<String, BTreeMap<String, String>>::new(),
    ));
    let seen2 = seen.clone();
    let collector = tokio::spawn(async move {
        while let Some(ev) = store.next().await {
            match ev {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    seen2
                        .lock()
                        .unwrap()
                        .insert(o.name_any(), o.data.unwrap_or_default());
                }
                Ok(watcher::Event::Delete(o)) => {
                    seen2.lock().unwrap().remove(&o.name_any());
                }
                _ => {}
            }
        }
    });
    wait_for("watcher initial list", T, || async {
        Ok(seen.lock().unwrap().contains_key("before").then_some(()))
    })
    .await
    .unwrap();

    // A plain watch that is running when the server expires watches.
    let mut raw = api
        .watch(&WatchParams::default().timeout(60), &old)
        .await
        .unwrap()
        .boxed();
    cp.expire_watches().await.unwrap();
    let mut got_410 = false;
    while let Ok(Some(ev)) = tokio::time::timeout(T, raw.next()).await {
        match ev {
            Ok(WatchEvent::Error(status)) => {
                assert_eq!(status.code, 410, "{status:?}");
                got_410 = true;
                break;
            }
            Ok(_) => continue,
            Err(e) => panic!("watch stream failed: {e}"),
        }
    }
    if !got_410 {
        // The stream was closed instead; resuming from the old resourceVersion must now be refused with 410.
        let mut resumed = api
            .watch(&WatchParams::default().timeout(10), &old)
            .await
            .unwrap()
            .boxed();
        match tokio::time::timeout(T, resumed.next()).await {
            Ok(Some(Ok(WatchEvent::Error(status)))) => assert_eq!(status.code, 410, "{status:?}"),
            Ok(Some(Err(kube::Error::Api(status)))) => assert_eq!(status.code, 410, "{status:?}"),
            other => panic!("expected 410 Gone when resuming an expired watch, got {other:?}"),
        }
    }

    // Changes after the expiry reach the resilient watcher.
    api.create(&PostParams::default(), &cm("after", &[("n", "1")]))
        .await
        .unwrap();
    api.patch(
        "before",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"m": "2"}})),
    )
    .await
    .unwrap();
    wait_for("watcher to see both changes", T, || async {
        let s = seen.lock().unwrap();
        let ok = s
            .get("after")
            .is_some_and(|d| d.get("n").map(String::as_str) == Some("1"))
            && s.get("before")
                .is_some_and(|d| d.get("m").map(String::as_str) == Some("2"));
        Ok(ok.then_some(()))
    })
    .await
    .unwrap();
    collector.abort();
}

#[tokio::test]
async fn server_side_apply_conflicts_between_managers_and_force_takes_ownership() {
    init_tracing();
    let cp = ControlPlane::start("ssa").await.unwrap();
    let ns = create_namespace(&cp.client(), "ssa").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cp.client(), &ns);
    let doc = |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"key": v}});

    api.patch(
        "shared",
        &PatchParams::apply("manager-a"),
        &Patch::Apply(doc("a")),
    )
    .await
    .unwrap();
    let err = api
        .patch(
            "shared",
            &PatchParams::apply("manager-b"),
            &Patch::Apply(doc("b")),
        )
        .await
        .unwrap_err();
    let status = api_status(&err).expect("API error");
    assert!(status.is_conflict(), "{status:?}");
    assert!(status.message.contains("manager-a"), "{}", status.message);

    let forced = api
        .patch(
            "shared",
            &PatchParams::apply("manager-b").force(),
            &Patch::Apply(doc("b")),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["key"], "b");
    let managers: Vec<String> = forced
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&"manager-b".to_owned()), "{managers:?}");

    // Applying the same intent again is a no-op: the resourceVersion does not move.
    let rv = api.get("shared").await.unwrap().resource_version();
    api.patch(
        "shared",
        &PatchParams::apply("manager-b"),
        &Patch::Apply(doc("b")),
    )
    .await
    .unwrap();
    assert_eq!(api.get("shared").await.unwrap().resource_version(), rv);
}

#[tokio::test]
async fn update_with_a_stale_resource_version_conflicts() {
    init_tracing();
    let cp = ControlPlane::start("stale").await.unwrap();
    let ns = create_namespace(&cp.client(), "stale").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(cp.client(), &ns);
    let original = api
        .create(&PostParams::default(), &cm("c", &[("v", "1")]))
        .await
        .unwrap();

    let mut fresh = original.clone();
    fresh.data = Some([("v".to_owned(), "2".to_owned())].into());
    api.replace("c", &PostParams::default(), &fresh).await.unwrap();

    let mut stale = original;
    stale.data = Some([("v".to_owned(), "3".to_owned())].into());
    let err = api
        .replace("c", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(api_status(&err).unwrap().is_conflict(), "{err}");
    assert_eq!(api.get("c").await.unwrap().data.unwrap()["v"], "2");
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.io
spec:
  group: example.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1, default: 3}
          status:
            type: object
            properties:
              phase: {type: string}
"#;

#[tokio::test]
async fn crd_becomes_established_and_its_status_is_separate_from_spec() {
    init_tracing();
    let cp = ControlPlane::start("crd").await.unwrap();
    let client = cp.client();
    apply_yaml(&client, None, CRD).await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    dr_syncer_testenv::wait_for_condition(&crds, "widgets.example.io", T, conditions::is_crd_established())
        .await
        .unwrap();

    let ns = create_namespace(&client, "crd").await.unwrap();
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("example.io", "v1", "Widget"));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
    let w = wait_for("custom resource to be creatable", T, || {
        let api = api.clone();
        async move {
            let obj: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"},
                "spec": {}, "status": {"phase": "Ignored"}
            }))
            .unwrap();
            match api.create(&PostParams::default(), &obj).await {
                Ok(o) => Ok(Some(o)),
                Err(e) if api_status(&e).is_some_and(|s| s.code == 404) => Ok(None),
                Err(e) => Err(e.into()),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(w.data["spec"]["size"], 3, "schema default applied");
    assert!(
        w.data.get("status").is_none_or(|s| s.get("phase").is_none()),
        "status ignored on create"
    );

    // Schema validation.
    let bad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "bad"}, "spec": {"size": 0}
    }))
    .unwrap();
    let err = api.create(&PostParams::default(), &bad).await.unwrap_err();
    assert!(api_status(&err).unwrap().is_invalid(), "{err}");

    // /status changes status only; the main resource ignores status.
    let gen1 = w.metadata.generation;
    let with_status = api
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready"}, "spec": {"size": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(with_status.data["status"]["phase"], "Ready");
    assert_eq!(with_status.data["spec"]["size"], 3, "spec ignored on /status");
    assert_eq!(
        with_status.metadata.generation, gen1,
        "status change does not bump generation"
    );
    let spec_change = api
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 5}, "status": {"phase": "X"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        spec_change.data["status"]["phase"], "Ready",
        "status ignored on main resource"
    );
    assert_eq!(
        spec_change.metadata.generation,
        gen1.map(|g| g + 1),
        "spec change bumps generation"
    );
}

#[tokio::test]
async fn two_control_planes_keep_independent_state() {
    init_tracing();
    let [prod, dr] = ControlPlane::start_many(["prod", "dr"]).await.unwrap();
    assert_ne!(prod.url(), dr.url());
    let a: Api<ConfigMap> = Api::namespaced(prod.client(), "default");
    let b: Api<ConfigMap> = Api::namespaced(dr.client(), "default");
    a.create(&PostParams::default(), &cm("only-in-prod", &[]))
        .await
        .unwrap();
    b.create(&PostParams::default(), &cm("only-in-dr", &[]))
        .await
        .unwrap();
    let names =
        |l: kube::core::ObjectList<ConfigMap>| l.items.iter().map(|c| c.name_any()).collect::<Vec<_>>();
    assert_eq!(
        names(a.list(&ListParams::default()).await.unwrap()),
        ["only-in-prod"]
    );
    assert_eq!(
        names(b.list(&ListParams::default()).await.unwrap()),
        ["only-in-dr"]
    );
}

#[tokio::test]
async fn built_in_namespaces_exist_and_discovery_lists_required_types() {
    init_tracing();
    let cp = ControlPlane::start("discovery").await.unwrap();
    let client = cp.client();
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let names: Vec<String> = nss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(names.contains(&n.to_owned()), "{n} missing from {names:?}");
    }

    let discovery = kube::Discovery::new(client.clone())
        .run_aggregated()
        .await
        .unwrap();
    let mut served = std::collections::BTreeSet::new();
    for group in discovery.groups() {
        for (ar, _caps) in group.recommended_resources() {
            served.insert(format!("{}.{}", ar.plural, ar.group));
        }
    }
    for want in [
        "namespaces.",
        "configmaps.",
        "secrets.",
        "services.",
        "endpoints.",
        "serviceaccounts.",
        "persistentvolumeclaims.",
        "persistentvolumes.",
        "pods.",
        "nodes.",
        "events.",
        "events.events.k8s.io",
        "endpointslices.discovery.k8s.io",
        "deployments.apps",
        "statefulsets.apps",
        "daemonsets.apps",
        "replicasets.apps",
        "controllerrevisions.apps",
        "ingresses.networking.k8s.io",
        "ingressclasses.networking.k8s.io",
        "networkpolicies.networking.k8s.io",
        "leases.coordination.k8s.io",
        "jobs.batch",
        "cronjobs.batch",
        "poddisruptionbudgets.policy",
        "horizontalpodautoscalers.autoscaling",
        "storageclasses.storage.k8s.io",
        "roles.rbac.authorization.k8s.io",
        "rolebindings.rbac.authorization.k8s.io",
        "clusterroles.rbac.authorization.k8s.io",
        "clusterrolebindings.rbac.authorization.k8s.io",
        "mutatingwebhookconfigurations.admissionregistration.k8s.io",
        "validatingwebhookconfigurations.admissionregistration.k8s.io",
        "customresourcedefinitions.apiextensions.k8s.io",
    ] {
        assert!(
            served.contains(want),
            "{want} not served; discovery has {served:?}"
        );
    }
    // Legacy (non-aggregated) discovery agrees.
    let legacy = kube::Discovery::new(client).run().await.unwrap();
    assert!(
        legacy.has_group("apps") && legacy.has_group("batch") && legacy.has_group("apiextensions.k8s.io")
    );
}
