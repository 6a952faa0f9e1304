//! The engine's orchestration with mocked source and applier: order, isolation, plan mode, prune,
//! error paths. (The Kubernetes behaviour is tested on control planes in `tests/`.)

use std::sync::{Arc, Mutex};

use kube::core::DynamicObject;
use serde_json::json;

use super::*;
use crate::{
    apply::{ApplyError, MockApplier},
    source::MockResourceSource,
    transform::TransformError,
};

fn obj(api_version: &str, kind: &str, name: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": api_version, "kind": kind,
        "metadata": {"name": name, "namespace": "app"},
        "spec": {"replicas": 1, "template": {"spec": {}}}
    }))
    .unwrap()
}

fn rt(api_version: &str, kind: &str, plural: &str) -> ResourceType {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ResourceType::namespaced(group, version, kind, plural)
}

/// A source on which every namespace exists (and nothing else is expected yet).
fn source_with_namespaces() -> MockResourceSource {
    let mut s = MockResourceSource::new();
    s.expect_get().returning(|_, _, name| {
        Ok(Some(
            serde_json::from_value(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
            )
            .unwrap(),
        ))
    });
    s
}

/// A source with namespace `app` holding these objects.
fn source(objects: Vec<(ResourceType, DynamicObject)>) -> MockResourceSource {
    let mut s = source_with_namespaces();
    s.expect_list().returning(move |_| {
        Ok(objects
            .iter()
            .map(|(r, o)| SourceObject {
                resource: r.clone(),
                object: o.clone(),
            })
            .collect())
    });
    s
}

/// An applier that records applied object names (in order) and reports Created.
fn recording_applier(seen: Arc<Mutex<Vec<(String, bool)>>>) -> MockApplier {
    let mut a = MockApplier::new();
    a.expect_prepare().returning(|_, _| Ok(()));
    a.expect_live().returning(|_, _| Ok(None));
    a.expect_apply().returning(move |rt, o, opts| {
        seen.lock().unwrap().push((
            format!("{}/{}", rt.kind, o.metadata.name.clone().unwrap_or_default()),
            opts.dry_run,
        ));
        Ok(ApplyResult {
            action: ApplyAction::Created,
            diff: None,
        })
    });
    a
}

fn target(types: Vec<ResourceType>, config: SyncConfig) -> SyncTarget {
    SyncTarget {
        source_cluster: "prod".into(),
        destination_cluster: "dr".into(),
        source_namespace: "app".into(),
        destination_namespace: "app-dr".into(),
        synced_by: "dr-syncer/app".into(),
        types,
        config: Arc::new(config),
    }
}

fn mixed() -> (Vec<ResourceType>, Vec<(ResourceType, DynamicObject)>) {
    let deploy = rt("apps/v1", "Deployment", "deployments");
    let ing = rt("networking.k8s.io/v1", "Ingress", "ingresses");
    let svc = rt("v1", "Service", "services");
    let cm = rt("v1", "ConfigMap", "configmaps");
    let secret = rt("v1", "Secret", "secrets");
    let sa = rt("v1", "ServiceAccount", "serviceaccounts");
    let objects = vec![
        (ing.clone(), obj("networking.k8s.io/v1", "Ingress", "ing")),
        (deploy.clone(), obj("apps/v1", "Deployment", "web")),
        (svc.clone(), obj("v1", "Service", "svc")),
        (cm.clone(), obj("v1", "ConfigMap", "cm")),
        (secret.clone(), obj("v1", "Secret", "secret")),
        (sa.clone(), obj("v1", "ServiceAccount", "sa")),
    ];
    (vec![ing, deploy, svc, cm, secret, sa], objects)
}

#[tokio::test]
async fn objects_are_applied_in_dependency_order() {
    let (types, objects) = mixed();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let engine = SyncEngine::new(
        Arc::new(source(objects)),
        Arc::new(recording_applier(seen.clone())),
    )
    .with_concurrency(1);
    let report = engine.sync(&target(types, SyncConfig::default())).await.unwrap();
    assert!(report.is_success(), "{report:#?}");
    let order: Vec<String> = seen.lock().unwrap().iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(
        order,
        [
            "Namespace/app-dr",
            "ServiceAccount/sa",
            "Secret/secret",
            "ConfigMap/cm",
            "Service/svc",
            "Deployment/web",
            "Ingress/ing"
        ]
    );
    assert_eq!(report.totals().created, 7);
}

#[tokio::test]
async fn plan_mode_only_asks_for_dry_runs() {
    let (types, objects) = mixed();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let engine = SyncEngine::new(
        Arc::new(source(objects)),
        Arc::new(recording_applier(seen.clone())),
    );
    let report = engine.plan(&target(types, SyncConfig::default())).await.unwrap();
    assert!(report.dry_run);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 7);
    assert!(seen.iter().all(|(_, dry)| *dry));
}

#[tokio::test]
async fn a_transformer_error_fails_that_object_only() {
    let (types, objects) = mixed();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let failing = |o: DynamicObject, _: &TransformContext| {
        if o.metadata.name.as_deref() == Some("cm") {
            Err(TransformError::new("test", &o, "cannot handle"))
        } else {
            Ok(Outcome::Keep(o))
        }
    };
    let engine = SyncEngine::new(
        Arc::new(source(objects)),
        Arc::new(recording_applier(seen.clone())),
    )
    .with_chain(TransformerChain::builtin().then(failing));
    let report = engine.sync(&target(types, SyncConfig::default())).await.unwrap();
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].kind, "TransformFailed");
    assert!(report.failures[0].object.ends_with("/cm"));
    assert_eq!(report.kinds["ConfigMap"].failed, 1);
    assert_eq!(seen.lock().unwrap().len(), 6, "everything else applied");
}

#[tokio::test]
async fn an_apply_error_fails_that_object_only() {
    let (types, objects) = mixed();
    let mut a = MockApplier::new();
    a.expect_prepare().returning(|_, _| Ok(()));
    a.expect_live().returning(|_, _| Ok(None));
    a.expect_apply().returning(|rt, o, _| {
        if rt.kind == "Secret" {
            Err(ApplyError::new(rt.key_of(o), "denied", false))
        } else {
            Ok(ApplyResult {
                action: ApplyAction::Unchanged,
                diff: None,
            })
        }
    });
    let engine = SyncEngine::new(Arc::new(source(objects)), Arc::new(a));
    let report = engine.sync(&target(types, SyncConfig::default())).await.unwrap();
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].kind, "ApplyFailed");
    assert_eq!(report.kinds["Secret"].failed, 1);
    assert_eq!(report.totals().unchanged, 6);
}

#[tokio::test]
async fn selection_skips_are_reported() {
    let cm = rt("v1", "ConfigMap", "configmaps");
    let mut ignored = obj("v1", "ConfigMap", "ignored");
    ignored.metadata.labels = Some([("dr-syncer.io/ignore".to_owned(), "true".to_owned())].into());
    let objects = vec![
        (cm.clone(), ignored),
        (cm.clone(), obj("v1", "ConfigMap", "kept")),
    ];
    let seen = Arc::new(Mutex::new(Vec::new()));
    let engine = SyncEngine::new(
        Arc::new(source(objects)),
        Arc::new(recording_applier(seen.clone())),
    );
    let report = engine
        .sync(&target(vec![cm], SyncConfig::default()))
        .await
        .unwrap();
    assert_eq!(report.kinds["ConfigMap"].skipped, 1);
    assert_eq!(report.kinds["ConfigMap"].created, 1);
    assert!(report.skipped[0].object.ends_with("/ignored"));
}

#[tokio::test]
async fn prune_deletes_managed_objects_whose_source_is_gone_and_nothing_else() {
    let cm = rt("v1", "ConfigMap", "configmaps");
    let objects = vec![(cm.clone(), obj("v1", "ConfigMap", "present"))];
    let mut a = MockApplier::new();
    a.expect_prepare().returning(|_, _| Ok(()));
    a.expect_live().returning(|_, _| Ok(None));
    a.expect_apply().returning(|_, _, _| {
        Ok(ApplyResult {
            action: ApplyAction::Unchanged,
            diff: None,
        })
    });
    a.expect_list_managed()
        .withf(|_, ns, by| *ns == Some("app-dr") && by == "dr-syncer/app")
        .returning(|_, _, _| {
            Ok(vec![
                obj("v1", "ConfigMap", "present"),
                obj("v1", "ConfigMap", "gone"),
            ])
        });
    a.expect_delete()
        .withf(|_, key, _| key.name == "gone")
        .times(1)
        .returning(|_, _, _| Ok(true));
    let config = SyncConfig {
        prune: true,
        ..Default::default()
    };
    let engine = SyncEngine::new(Arc::new(source(objects)), Arc::new(a));
    let report = engine.sync(&target(vec![cm], config)).await.unwrap();
    assert_eq!(report.kinds["ConfigMap"].deleted, 1);
}

#[tokio::test]
async fn without_prune_nothing_is_listed_for_deletion() {
    let cm = rt("v1", "ConfigMap", "configmaps");
    let mut a = MockApplier::new();
    a.expect_prepare().returning(|_, _| Ok(()));
    a.expect_live().returning(|_, _| Ok(None));
    a.expect_apply().returning(|_, _, _| {
        Ok(ApplyResult {
            action: ApplyAction::Created,
            diff: None,
        })
    });
    a.expect_list_managed().never();
    a.expect_delete().never();
    let engine = SyncEngine::new(Arc::new(source(vec![])), Arc::new(a));
    engine
        .sync(&target(vec![cm], SyncConfig::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_missing_destination_namespace_without_create_namespace_is_an_error() {
    let mut a = MockApplier::new();
    a.expect_prepare().returning(|_, _| Ok(()));
    a.expect_live().returning(|_, _| Ok(None));
    a.expect_apply().never();
    let mut config = SyncConfig::default();
    config.namespace.create_namespace = false;
    let engine = SyncEngine::new(Arc::new(source(vec![])), Arc::new(a));
    let err = engine.sync(&target(vec![], config)).await.unwrap_err();
    assert_eq!(err.kind(), "InvalidConfig");
    assert!(err.to_string().contains("createNamespace"), "{err}");
}

#[tokio::test]
async fn nothing_is_written_when_the_source_cannot_be_listed() {
    let mut s = source_with_namespaces();
    s.expect_list()
        .returning(|_| Err(SourceError::new("list deployments", "forbidden (403)", false)));
    let mut a = MockApplier::new();
    a.expect_prepare().returning(|_, _| Ok(()));
    a.expect_live().returning(|_, _| Ok(None));
    a.expect_apply().never();
    a.expect_delete().never();
    let engine = SyncEngine::new(Arc::new(s), Arc::new(a));
    let err = engine
        .sync(&target(vec![], SyncConfig::default()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "SourceFailed");
    assert!(err.to_string().contains("forbidden"), "{err}");
}

#[tokio::test]
async fn a_missing_source_namespace_is_an_error() {
    let mut s = MockResourceSource::new();
    s.expect_get().returning(|_, _, _| Ok(None));
    s.expect_list().never();
    let mut a = MockApplier::new();
    a.expect_live().returning(|_, _| Ok(None));
    a.expect_apply().never();
    let engine = SyncEngine::new(Arc::new(s), Arc::new(a));
    let err = engine
        .sync(&target(vec![], SyncConfig::default()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "SourceFailed");
    assert!(err.to_string().contains("not found"), "{err}");
}

#[tokio::test]
async fn fail_fast_stops_applying_after_a_failure_of_its_category() {
    let (types, objects) = mixed();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut a = MockApplier::new();
    a.expect_prepare().returning(|_, _| Ok(()));
    a.expect_live().returning(|_, _| Ok(None));
    let s2 = seen.clone();
    a.expect_apply().returning(move |rt, o, _| {
        s2.lock().unwrap().push(rt.kind.clone());
        if rt.kind == "Secret" {
            Err(ApplyError::new(rt.key_of(o), "rejected (422)", false)
                .with_category(FailureCategory::ValidationFailure))
        } else {
            Ok(ApplyResult {
                action: ApplyAction::Created,
                diff: None,
            })
        }
    });
    let engine = SyncEngine::new(Arc::new(source(objects.clone())), Arc::new(a))
        .with_concurrency(1)
        .with_fail_fast(vec![FailureCategory::ValidationFailure]);
    let report = engine
        .sync(&target(types.clone(), SyncConfig::default()))
        .await
        .unwrap();
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].category, FailureCategory::ValidationFailure);
    // Namespace, ServiceAccount, then the Secret failed: nothing after it was applied.
    assert_eq!(*seen.lock().unwrap(), ["Namespace", "ServiceAccount", "Secret"]);
    for kind in [
        "ConfigMap",
        "Service",
        "Deployment.apps",
        "Ingress.networking.k8s.io",
    ] {
        assert_eq!(report.kinds[kind].skipped, 1, "{kind}: {report:#?}");
    }
    assert!(report.skipped.iter().all(|s| s.reason.contains("FailFast")));

    // Another category does not stop the sync.
    let mut a = MockApplier::new();
    a.expect_prepare().returning(|_, _| Ok(()));
    a.expect_live().returning(|_, _| Ok(None));
    a.expect_apply().returning(|rt, o, _| {
        if rt.kind == "Secret" {
            Err(ApplyError::new(rt.key_of(o), "unavailable (503)", true))
        } else {
            Ok(ApplyResult {
                action: ApplyAction::Created,
                diff: None,
            })
        }
    });
    let engine = SyncEngine::new(Arc::new(source(objects)), Arc::new(a))
        .with_fail_fast(vec![FailureCategory::ValidationFailure]);
    let report = engine.sync(&target(types, SyncConfig::default())).await.unwrap();
    assert_eq!(report.failures[0].category, FailureCategory::NetworkError);
    assert_eq!(report.totals().created, 6);
}

#[tokio::test]
async fn claims_of_a_missing_storage_class_fail_instead_of_being_created() {
    let pvc = rt("v1", "PersistentVolumeClaim", "persistentvolumeclaims");
    let claim = |name: &str, class: &str| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "app"},
            "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"]}
        }))
        .unwrap()
    };
    let objects = vec![
        (pvc.clone(), claim("fast", "ssd")),
        (pvc.clone(), claim("slow", "missing")),
    ];
    let mut a = MockApplier::new();
    a.expect_prepare().returning(|_, _| Ok(()));
    a.expect_live().returning(|rt, key| {
        Ok((rt.kind == "StorageClass" && key.name == "ssd").then(|| {
            serde_json::from_value(json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "ssd"}}))
                .unwrap()
        }))
    });
    a.expect_apply()
        .withf(|rt, o, _| rt.kind != "PersistentVolumeClaim" || o.metadata.name.as_deref() == Some("fast"))
        .returning(|_, _, _| {
            Ok(ApplyResult {
                action: ApplyAction::Created,
                diff: None,
            })
        });
    let engine =
        SyncEngine::new(Arc::new(source(objects.clone())), Arc::new(a)).with_storage_class_check(true);
    let report = engine
        .sync(&target(vec![pvc.clone()], SyncConfig::default()))
        .await
        .unwrap();
    assert_eq!(report.failures.len(), 1, "{report:#?}");
    let f = &report.failures[0];
    assert!(f.object.ends_with("/slow"), "{f:?}");
    assert_eq!(f.category, FailureCategory::StorageClassNotFound);
    assert!(f.message.contains("StorageClass missing"), "{f:?}");
    assert_eq!(report.kinds["PersistentVolumeClaim"].created, 1);
}

#[tokio::test]
async fn workloads_and_exclusions_are_reported() {
    let deploy = rt("apps/v1", "Deployment", "deployments");
    let cm = rt("v1", "ConfigMap", "configmaps");
    let mut quiet = obj("apps/v1", "Deployment", "quiet");
    quiet.data["spec"]["replicas"] = json!(0);
    quiet.metadata.annotations = Some([("dr-syncer.io/original-replicas".to_owned(), "4".to_owned())].into());
    let mut ignored = obj("v1", "ConfigMap", "ignored");
    ignored.metadata.labels = Some([("dr-syncer.io/ignore".to_owned(), "true".to_owned())].into());
    let objects = vec![
        (deploy.clone(), obj("apps/v1", "Deployment", "web")),
        (deploy.clone(), quiet),
        (cm.clone(), ignored),
    ];
    let seen = Arc::new(Mutex::new(Vec::new()));
    let engine = SyncEngine::new(Arc::new(source(objects)), Arc::new(recording_applier(seen)));
    let report = engine
        .sync(&target(vec![deploy, cm], SyncConfig::default()))
        .await
        .unwrap();
    let scales: Vec<(&str, i32)> = report
        .workloads
        .iter()
        .map(|w| (w.name.as_str(), w.source_replicas))
        .collect();
    assert_eq!(
        scales,
        [("quiet", 4), ("web", 1)],
        "a quieted source counts its recorded original"
    );
    assert_eq!(
        (
            report.kinds["ConfigMap"].excluded,
            report.kinds["ConfigMap"].skipped
        ),
        (1, 1)
    );
}

fn live_ns(active: bool) -> DynamicObject {
    let mut ns: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app-dr"}}),
    )
    .unwrap();
    if active {
        ns.metadata.annotations = Some([("dr-syncer.io/active".to_owned(), "true".to_owned())].into());
    }
    ns
}

fn synced(name: &str, by: &str) -> DynamicObject {
    let mut o = obj("v1", "ConfigMap", name);
    o.metadata.annotations = Some([("dr-syncer.io/synced-by".to_owned(), by.to_owned())].into());
    o
}

#[tokio::test]
async fn changes_apply_only_the_changed_objects_and_delete_only_with_prune() {
    let cm = rt("v1", "ConfigMap", "configmaps");
    let change = |name: &str, deleted: bool| {
        let o = SourceObject {
            resource: cm.clone(),
            object: obj("v1", "ConfigMap", name),
        };
        if deleted {
            Change::Deleted(o)
        } else {
            Change::Applied(o)
        }
    };
    let changes = vec![
        change("edited", false),
        change("gone", true),
        change("foreign", true),
    ];
    // Deletions to mirror: production's namespace is read once, to tell a deletion from an outage.
    let mut s = MockResourceSource::new();
    s.expect_list().never();
    s.expect_get()
        .times(1)
        .returning(|_, _, _| Ok(Some(live_ns(false))));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let mut a = MockApplier::new();
    a.expect_prepare().never();
    a.expect_live().returning(|rt, key| {
        Ok(match (rt.kind.as_str(), key.name.as_str()) {
            ("Namespace", _) => Some(live_ns(false)),
            (_, "gone") => Some(synced("gone", "dr-syncer/app")),
            (_, "foreign") => Some(synced("foreign", "dr-syncer/other")),
            _ => None,
        })
    });
    a.expect_apply().returning(move |_, o, _| {
        s2.lock()
            .unwrap()
            .push(o.metadata.name.clone().unwrap_or_default());
        Ok(ApplyResult {
            action: ApplyAction::Updated,
            diff: None,
        })
    });
    a.expect_delete()
        .withf(|_, key, _| key.name == "gone")
        .times(1)
        .returning(|_, _, _| Ok(true));
    // (What the mapping manages on the DR side, for the deletion brake.)
    a.expect_list_managed()
        .times(1)
        .returning(|_, _, by| Ok(vec![synced("gone", by), synced("edited", by)]));
    let engine = SyncEngine::new(Arc::new(s), Arc::new(a));
    let config = SyncConfig {
        prune: true,
        ..Default::default()
    };
    let report = engine
        .sync_changes(&target(vec![cm.clone()], config), changes.clone())
        .await
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        ["edited"],
        "only the changed object, no Namespace write"
    );
    assert_eq!(
        (
            report.kinds["ConfigMap"].updated,
            report.kinds["ConfigMap"].deleted
        ),
        (1, 1)
    );

    // Without prune, or while production's namespace is being deleted, nothing is deleted; the deletion
    // is reported.
    for (prune, terminating) in [(false, false), (true, true)] {
        let mut a = MockApplier::new();
        a.expect_live()
            .returning(move |rt, _| Ok((rt.kind == "Namespace").then(|| live_ns(false))));
        a.expect_apply().returning(|_, _, _| {
            Ok(ApplyResult {
                action: ApplyAction::Unchanged,
                diff: None,
            })
        });
        a.expect_delete().never();
        let mut s = MockResourceSource::new();
        s.expect_list().never();
        s.expect_get().returning(move |_, _, _| {
            let mut ns = live_ns(false);
            if terminating {
                ns.data = json!({"status": {"phase": "Terminating"}});
            }
            Ok(Some(ns))
        });
        let engine = SyncEngine::new(Arc::new(s), Arc::new(a));
        let config = SyncConfig {
            prune,
            ..Default::default()
        };
        let report = engine
            .sync_changes(&target(vec![cm.clone()], config), changes.clone())
            .await
            .unwrap();
        assert_eq!(report.kinds["ConfigMap"].skipped, 2, "{report:#?}");
        assert!(
            report.skipped.iter().all(|s| s.reason.contains("kept")),
            "{report:#?}"
        );
        assert_eq!(
            report.held.as_ref().map(|h| h.reason.as_str()),
            terminating.then_some("SourceGone"),
            "{report:#?}"
        );
    }

    // An active DR namespace (the live site) takes nothing at all: no apply, no delete.
    let mut a = MockApplier::new();
    a.expect_live()
        .returning(|rt, _| Ok((rt.kind == "Namespace").then(|| live_ns(true))));
    a.expect_apply().never();
    a.expect_delete().never();
    let mut s = MockResourceSource::new();
    s.expect_list().never();
    s.expect_get().never();
    let engine = SyncEngine::new(Arc::new(s), Arc::new(a));
    let config = SyncConfig {
        prune: true,
        ..Default::default()
    };
    let report = engine
        .sync_changes(&target(vec![cm.clone()], config), changes.clone())
        .await
        .unwrap();
    assert!(report.destination_active);
    assert_eq!(
        report.held.as_ref().map(|h| h.reason.as_str()),
        Some("DestinationActive")
    );
    assert_eq!(report.totals().writes(), 0);
}

/// A full sync into an active DR namespace reads the two namespaces and stops: nothing is listed on
/// production, nothing written; the report says why.
#[tokio::test]
async fn a_full_sync_holds_off_an_active_destination() {
    let cm = rt("v1", "ConfigMap", "configmaps");
    let mut s = MockResourceSource::new();
    s.expect_get().returning(|_, _, _| Ok(Some(live_ns(false))));
    s.expect_list().never();
    let mut a = MockApplier::new();
    a.expect_live()
        .returning(|rt, _| Ok((rt.kind == "Namespace").then(|| live_ns(true))));
    a.expect_prepare().never();
    a.expect_apply().never();
    a.expect_delete().never();
    a.expect_list_managed().never();
    let engine = SyncEngine::new(Arc::new(s), Arc::new(a));
    let config = SyncConfig {
        prune: true,
        ..Default::default()
    };
    let report = engine.sync(&target(vec![cm], config)).await.unwrap();
    assert!(report.destination_active && report.is_success());
    let held = report.held.unwrap();
    assert_eq!(held.reason, "DestinationActive");
    assert!(held.message.contains("live site"), "{}", held.message);
    assert!(report.kinds.is_empty());
}

/// A full sync creating the DR namespace records who created it; a later sync keeps that record.
#[tokio::test]
async fn the_namespace_records_who_created_it() {
    let cm = rt("v1", "ConfigMap", "configmaps");
    for (existing, want) in [
        (None, Some("dr-syncer/app")),
        (Some("cli/app"), Some("cli/app")),
        (Some(""), None),
    ] {
        let seen = Arc::new(Mutex::new(None::<DynamicObject>));
        let s2 = seen.clone();
        let mut a = MockApplier::new();
        a.expect_prepare().returning(|_, _| Ok(()));
        a.expect_live().returning(move |rt, _| {
            Ok((rt.kind == "Namespace" && existing.is_some()).then(|| {
                let mut ns = live_ns(false);
                if let Some(by) = existing.filter(|b| !b.is_empty()) {
                    ns.metadata.annotations =
                        Some([("dr-syncer.io/created-by".to_owned(), by.to_owned())].into());
                }
                ns
            }))
        });
        a.expect_apply().returning(move |rt, o, _| {
            if rt.kind == "Namespace" {
                *s2.lock().unwrap() = Some(o.clone());
            }
            Ok(ApplyResult {
                action: ApplyAction::Created,
                diff: None,
            })
        });
        let engine = SyncEngine::new(Arc::new(source(Vec::new())), Arc::new(a));
        engine
            .sync(&target(vec![cm.clone()], SyncConfig::default()))
            .await
            .unwrap();
        let ns = seen.lock().unwrap().clone().unwrap();
        assert_eq!(
            annotation(&ns, "dr-syncer.io/created-by"),
            want,
            "existing record {existing:?}"
        );
    }
}

#[tokio::test]
async fn changes_to_a_missing_destination_namespace_run_a_full_sync() {
    let cm = rt("v1", "ConfigMap", "configmaps");
    let objects = vec![(cm.clone(), obj("v1", "ConfigMap", "a"))];
    let seen = Arc::new(Mutex::new(Vec::new()));
    let engine = SyncEngine::new(
        Arc::new(source(objects)),
        Arc::new(recording_applier(seen.clone())),
    );
    let report = engine
        .sync_changes(&target(vec![cm], SyncConfig::default()), Vec::new())
        .await
        .unwrap();
    assert_eq!(report.totals().created, 2, "namespace and object: {report:#?}");
}

/// An applier that logs when each apply starts and ends; a Secret's apply waits (up to 5 s) until a
/// Service's has started.
#[derive(Default)]
struct GatedApplier {
    log: Mutex<Vec<String>>,
    service_started: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl Applier for GatedApplier {
    async fn apply(
        &self,
        rt: &ResourceType,
        o: &DynamicObject,
        _: ApplyOptions,
    ) -> std::result::Result<ApplyResult, ApplyError> {
        let name = format!("{}/{}", rt.kind, o.metadata.name.clone().unwrap_or_default());
        self.log.lock().unwrap().push(format!("start {name}"));
        if rt.kind == "Service" {
            self.service_started.notify_one(); // (a permit, if the Secret is not waiting yet)
        }
        if rt.kind == "Secret"
            && tokio::time::timeout(Duration::from_secs(5), self.service_started.notified())
                .await
                .is_err()
        {
            return Err(ApplyError::new(
                &name,
                "no Service apply started meanwhile",
                false,
            ));
        }
        self.log.lock().unwrap().push(format!("end {name}"));
        Ok(ApplyResult {
            action: ApplyAction::Created,
            diff: None,
        })
    }
    async fn delete(
        &self,
        _: &ResourceType,
        _: &ObjectKey,
        _: ApplyOptions,
    ) -> std::result::Result<bool, ApplyError> {
        Ok(false)
    }
    async fn live(
        &self,
        _: &ResourceType,
        _: &ObjectKey,
    ) -> std::result::Result<Option<DynamicObject>, ApplyError> {
        Ok(None)
    }
    async fn list_managed<'a>(
        &self,
        _: &ResourceType,
        _: Option<&'a str>,
        _: &str,
    ) -> std::result::Result<Vec<DynamicObject>, ApplyError> {
        Ok(vec![])
    }
}

#[tokio::test]
async fn tiers_that_refer_to_nothing_in_each_other_are_applied_together() {
    let (types, objects) = mixed();
    let applier = Arc::new(GatedApplier::default());
    let engine = SyncEngine::new(Arc::new(source(objects)), applier.clone()).with_concurrency(4);
    let report = engine.sync(&target(types, SyncConfig::default())).await.unwrap();
    // The Secret's apply finished only because the Service's started while it was in flight.
    assert!(report.is_success(), "{report:#?}");
    let log = applier.log.lock().unwrap().clone();
    let at = |entry: &str| {
        log.iter()
            .position(|l| l == entry)
            .unwrap_or_else(|| panic!("{entry}: {log:?}"))
    };
    // Still in dependency order across waves: the ServiceAccount before the Secret, everything the
    // Deployment refers to before it.
    assert!(at("end ServiceAccount/sa") < at("start Secret/secret"), "{log:?}");
    for dependency in ["Secret/secret", "ConfigMap/cm", "Service/svc"] {
        assert!(
            at(&format!("end {dependency}")) < at("start Deployment/web"),
            "{log:?}"
        );
    }
    assert!(at("end Service/svc") < at("start Ingress/ing"), "{log:?}");
}

/// A DR namespace in memory: ConfigMaps managed by `dr-syncer/app`; applies create, deletes remove.
struct MemoryDr {
    objects: Mutex<BTreeSet<String>>,
    deleted: Mutex<Vec<String>>,
}

impl MemoryDr {
    fn with(n: usize) -> Arc<Self> {
        Arc::new(MemoryDr {
            objects: Mutex::new((0..n).map(|i| format!("cm-{i:02}")).collect()),
            deleted: Mutex::new(Vec::new()),
        })
    }
    fn names(&self) -> BTreeSet<String> {
        self.objects.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Applier for MemoryDr {
    async fn apply(
        &self,
        rt: &ResourceType,
        o: &DynamicObject,
        _: ApplyOptions,
    ) -> std::result::Result<ApplyResult, ApplyError> {
        let name = o.metadata.name.clone().unwrap_or_default();
        let created = rt.kind == "ConfigMap" && self.objects.lock().unwrap().insert(name);
        Ok(ApplyResult {
            action: if created || rt.kind == "Namespace" {
                ApplyAction::Created
            } else {
                ApplyAction::Unchanged
            },
            diff: None,
        })
    }
    async fn delete(
        &self,
        _: &ResourceType,
        key: &ObjectKey,
        o: ApplyOptions,
    ) -> std::result::Result<bool, ApplyError> {
        if o.dry_run {
            return Ok(true);
        }
        self.deleted.lock().unwrap().push(key.name.clone());
        Ok(self.objects.lock().unwrap().remove(&key.name))
    }
    async fn live(
        &self,
        rt: &ResourceType,
        key: &ObjectKey,
    ) -> std::result::Result<Option<DynamicObject>, ApplyError> {
        Ok(match rt.kind.as_str() {
            "Namespace" => Some(live_ns(false)),
            _ => self
                .objects
                .lock()
                .unwrap()
                .contains(&key.name)
                .then(|| synced(&key.name, "dr-syncer/app")),
        })
    }
    async fn list_managed<'a>(
        &self,
        _: &ResourceType,
        _: Option<&'a str>,
        by: &str,
    ) -> std::result::Result<Vec<DynamicObject>, ApplyError> {
        assert_eq!(by, "dr-syncer/app");
        Ok(self.names().iter().map(|n| synced(n, by)).collect())
    }
}

fn configmaps(names: impl IntoIterator<Item = String>) -> Vec<(ResourceType, DynamicObject)> {
    let cm = rt("v1", "ConfigMap", "configmaps");
    names
        .into_iter()
        .map(|n| (cm.clone(), obj("v1", "ConfigMap", &n)))
        .collect()
}

fn pruning() -> SyncConfig {
    SyncConfig {
        prune: true,
        ..Default::default()
    }
}

/// 12 of 20 source objects gone (60 %, more than 10): the deletions are held, a new object is still
/// created; a go-ahead for fewer than are pending holds them still; one that covers them deletes exactly
/// those.
#[tokio::test]
async fn a_mass_prune_is_held_until_a_go_ahead_and_creates_go_on() {
    let dr = MemoryDr::with(20);
    let mut kept: Vec<String> = (12..20).map(|i| format!("cm-{i:02}")).collect();
    kept.push("new".into());
    let cm = rt("v1", "ConfigMap", "configmaps");
    let t = target(vec![cm.clone()], pruning());
    let engine = |go| {
        SyncEngine::new(Arc::new(source(configmaps(kept.clone()))), dr.clone()).with_deletion_go_ahead(go)
    };

    let report = engine(GoAhead::None).sync(&t).await.unwrap();
    let hold = report.deletion_hold.clone().expect("held");
    // (21 managed: the new object was created before the prune.)
    assert_eq!((hold.pending, hold.managed, hold.allowed), (12, 21, None));
    assert!(dr.deleted.lock().unwrap().is_empty(), "nothing deleted");
    assert!(dr.names().contains("new"), "a new object still reaches DR");
    assert_eq!(report.kinds["ConfigMap"].skipped, 12, "{report:#?}");
    assert!(report.is_success(), "a hold is not a failure");

    let report = engine(GoAhead::UpTo(11)).sync(&t).await.unwrap();
    assert_eq!(report.deletion_hold.map(|h| h.allowed), Some(Some(11)));
    assert!(dr.deleted.lock().unwrap().is_empty());

    let report = engine(GoAhead::UpTo(12)).sync(&t).await.unwrap();
    assert!(report.deletion_hold.is_none());
    assert_eq!(report.deletions_allowed, 12);
    let mut deleted = dr.deleted.lock().unwrap().clone();
    deleted.sort();
    let expected: Vec<String> = (0..12).map(|i| format!("cm-{i:02}")).collect();
    assert_eq!(deleted, expected, "exactly the objects gone at the source");
    assert_eq!(dr.names(), kept.iter().cloned().collect());
}

/// Deletions below the thresholds go ahead; the brake can be turned off; a plan reports a hold too.
#[tokio::test]
async fn small_deletions_go_ahead_and_the_brake_can_be_off() {
    let cm = rt("v1", "ConfigMap", "configmaps");
    // 5 of 20 gone: neither more than half nor more than 10.
    let dr = MemoryDr::with(20);
    let kept = (5..20).map(|i| format!("cm-{i:02}"));
    let engine = SyncEngine::new(Arc::new(source(configmaps(kept))), dr.clone());
    let report = engine.sync(&target(vec![cm.clone()], pruning())).await.unwrap();
    assert!(report.deletion_hold.is_none());
    assert_eq!(report.kinds["ConfigMap"].deleted, 5);

    // Everything gone, brake off: everything deleted.
    let dr = MemoryDr::with(20);
    let engine = SyncEngine::new(Arc::new(source(vec![])), dr.clone());
    let off = SyncConfig {
        deletion_brake: crate::brake::DeletionBrake::off(),
        ..pruning()
    };
    let plan = engine.plan(&target(vec![cm.clone()], pruning())).await.unwrap();
    assert_eq!(
        plan.deletion_hold.map(|h| h.pending),
        Some(20),
        "plan shows the hold"
    );
    engine.sync(&target(vec![cm], off)).await.unwrap();
    assert!(dr.names().is_empty());
}

/// Continuous mode sees a mass deletion a few objects at a time: the window adds them up, and the batch
/// that crosses the thresholds is held (its objects are kept and reported).
#[tokio::test]
async fn deletions_seen_a_few_at_a_time_add_up_over_the_window() {
    let cm = rt("v1", "ConfigMap", "configmaps");
    let dr = MemoryDr::with(20);
    let ledger = Arc::new(DeletionLedger::new());
    let batch = |from: usize| -> Vec<Change> {
        (from..from + 4)
            .map(|i| {
                Change::Deleted(SourceObject {
                    resource: cm.clone(),
                    object: obj("v1", "ConfigMap", &format!("cm-{i:02}")),
                })
            })
            .collect()
    };
    let t = target(vec![cm.clone()], pruning());
    let engine = || {
        SyncEngine::new(Arc::new(source_with_namespaces()), dr.clone()).with_deletion_ledger(ledger.clone())
    };
    for from in [0, 4] {
        let r = engine().sync_changes(&t, batch(from)).await.unwrap();
        assert_eq!(r.kinds["ConfigMap"].deleted, 4, "{r:#?}");
    }
    // 12 of the 20 there were 5 minutes ago.
    let r = engine().sync_changes(&t, batch(8)).await.unwrap();
    let hold = r.deletion_hold.expect("held");
    assert_eq!((hold.pending, hold.recent, hold.managed), (4, 8, 12));
    assert_eq!(dr.names().len(), 12);
    // Another engine without the shared ledger sees only its own batch (a fresh process): 4 of 12.
    let r = SyncEngine::new(Arc::new(source_with_namespaces()), dr.clone())
        .sync_changes(&t, batch(8))
        .await
        .unwrap();
    assert!(r.deletion_hold.is_none());
    assert_eq!(dr.names().len(), 8);
}

/// A DR namespace records the source cluster it is filled from; a source on another cluster fails the
/// sync before any write, unless that cluster is accepted (then its UID is recorded).
#[tokio::test]
async fn a_source_on_another_cluster_is_refused_unless_accepted() {
    let cm = rt("v1", "ConfigMap", "configmaps");
    let source = || {
        let mut s = MockResourceSource::new();
        s.expect_get().returning(|_, _, name| {
            let uid = if name == "kube-system" {
                "uid-new"
            } else {
                "ns-uid"
            };
            Ok(Some(
                serde_json::from_value(
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "uid": uid}}),
                )
                .unwrap(),
            ))
        });
        s.expect_list().returning(|_| Ok(vec![]));
        s
    };
    let applied = Arc::new(Mutex::new(Vec::<DynamicObject>::new()));
    let applier = || {
        let applied = applied.clone();
        let mut a = MockApplier::new();
        a.expect_prepare().returning(|_, _| Ok(()));
        a.expect_live().returning(|rt, _| {
            let mut ns = live_ns(false);
            ns.metadata
                .annotations
                .get_or_insert_default()
                .insert("dr-syncer.io/source-cluster-uid".into(), "uid-old".into());
            Ok((rt.kind == "Namespace").then_some(ns))
        });
        a.expect_apply().returning(move |_, o, _| {
            applied.lock().unwrap().push(o.clone());
            Ok(ApplyResult {
                action: ApplyAction::Updated,
                diff: None,
            })
        });
        a
    };
    let err = SyncEngine::new(Arc::new(source()), Arc::new(applier()))
        .sync(&target(vec![cm.clone()], SyncConfig::default()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "ClusterIdentityChanged", "{err}");
    assert!(err.to_string().contains("uid-old") && err.to_string().contains("uid-new"));
    assert!(applied.lock().unwrap().is_empty(), "nothing written");

    // A RemoteCluster moved from some other cluster to uid-new does not take over uid-old's namespace.
    let err = SyncEngine::new(Arc::new(source()), Arc::new(applier()))
        .accepting_source_identity(AcceptIdentity::Replacing {
            current: "uid-new".into(),
            replaces: vec!["uid-other".into()],
        })
        .sync(&target(vec![cm.clone()], SyncConfig::default()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "ClusterIdentityChanged", "{err}");
    assert!(applied.lock().unwrap().is_empty(), "nothing written");

    SyncEngine::new(Arc::new(source()), Arc::new(applier()))
        .accepting_source_identity(AcceptIdentity::Replacing {
            current: "uid-new".into(),
            replaces: vec!["uid-other".into(), "uid-old".into()],
        })
        .sync(&target(vec![cm], SyncConfig::default()))
        .await
        .unwrap();
    let ns = applied.lock().unwrap()[0].clone();
    assert_eq!(
        annotation(&ns, "dr-syncer.io/source-cluster-uid"),
        Some("uid-new")
    );
}

/// A source whose namespaces exist and whose Widget CRD is being deleted (`terminating`) or not, with
/// no Widgets left.
fn source_with_widget_crd(terminating: bool) -> MockResourceSource {
    let mut s = MockResourceSource::new();
    s.expect_get().returning(move |rt, _, name| {
        let mut o: DynamicObject =
            serde_json::from_value(json!({"apiVersion": "v1", "kind": rt.kind, "metadata": {"name": name}}))
                .unwrap();
        if rt.kind == "CustomResourceDefinition" {
            assert_eq!(name, "widgets.example.com");
            if terminating {
                o.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                ));
            }
        }
        Ok(Some(o))
    });
    s.expect_list().returning(|_| Ok(Vec::new()));
    s
}

/// A type whose CustomResourceDefinition is being deleted at the source loses its objects there one by
/// one: neither a full sync nor a batch of changes prunes their DR copies (reported as skipped and in
/// `removed_types`); with the CRD in place the same deletions are made.
#[tokio::test]
async fn objects_of_a_type_being_removed_at_the_source_are_not_pruned() {
    let widget = rt("example.com/v1", "Widget", "widgets");
    let t = target(vec![widget.clone()], pruning());
    let gone = |name: &str| {
        Change::Deleted(SourceObject {
            resource: widget.clone(),
            object: obj("example.com/v1", "Widget", name),
        })
    };

    let dr = MemoryDr::with(3);
    let engine = SyncEngine::new(Arc::new(source_with_widget_crd(true)), dr.clone());
    let report = engine.sync(&t).await.unwrap();
    assert_eq!(report.removed_types, ["Widget.example.com"]);
    assert_eq!(report.kinds["Widget.example.com"].skipped, 3, "{report:#?}");
    let report = engine.sync_changes(&t, vec![gone("cm-00")]).await.unwrap();
    assert_eq!(report.removed_types, ["Widget.example.com"]);
    assert!(dr.deleted.lock().unwrap().is_empty(), "nothing deleted");
    assert_eq!(dr.names().len(), 3);

    let engine = SyncEngine::new(Arc::new(source_with_widget_crd(false)), dr.clone());
    let report = engine.sync_changes(&t, vec![gone("cm-00")]).await.unwrap();
    assert!(report.removed_types.is_empty());
    assert_eq!(*dr.deleted.lock().unwrap(), ["cm-00"]);
    let report = engine.sync(&t).await.unwrap();
    assert_eq!(report.kinds["Widget.example.com"].deleted, 2, "{report:#?}");
}

/// An engine limited to some objects applies only those; the others are reported as excluded.
#[tokio::test]
async fn a_limited_engine_applies_only_the_listed_objects() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let t = target(vec![rt("v1", "ConfigMap", "configmaps")], SyncConfig::default());
    let report = SyncEngine::new(
        Arc::new(source(configmaps(["a".to_owned(), "b".to_owned()]))),
        Arc::new(recording_applier(seen.clone())),
    )
    .limited_to(["ConfigMap/app-dr/a".to_owned()].into())
    .sync(&t)
    .await
    .unwrap();
    let applied: Vec<String> = seen.lock().unwrap().iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(applied, ["Namespace/app-dr", "ConfigMap/a"]);
    assert_eq!(report.kinds["ConfigMap"].excluded, 1, "{report:#?}");
}
