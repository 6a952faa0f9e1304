//! Faults (issue 20, first scenarios): the operator's calls are bounded, so a stalled cluster fails a
//! sync with a clear error instead of hanging it, and the mapping recovers when the cluster does.

mod common;

use std::collections::BTreeSet;

use common::{Env, NS, T, condition, mapping};
use dr_syncer_core::api::SyncPhase;
use dr_syncer_testenv::{apply_yaml, create_namespace, wait_for};
use k8s_openapi::{
    api::core::v1::{ConfigMap, Namespace},
    apimachinery::pkg::apis::meta::v1::Time,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// The DR control plane stops answering (SIGSTOP: connections are accepted, nothing is answered): the
/// running sync fails within its deadlines with "timed out" in `lastError` and the mapping does not stay
/// `Running`, turns `Stale`, and another mapping (to another cluster) keeps syncing meanwhile; after
/// SIGCONT the next sync completes and carries the change made meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_dr_cluster_fails_the_sync_in_bounded_time_and_recovers() {
    let env = Env::start("fault-stall").await;
    let src = create_namespace(&env.prod.client(), "shop").await.unwrap();
    apply_yaml(
        &env.prod.client(),
        Some(&src),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {v: '1'}\n",
    )
    .await
    .unwrap();
    let op = env
        .operator(
            "dr-syncer-operator",
            &["--request-timeout", "2s", "--sync-timeout", "30s"],
        )
        .await;
    env.apply(&format!(
        "apiVersion: dr-syncer.io/v1alpha1\nkind: NamespaceMapping\nmetadata: {{name: shop, namespace: {NS}}}\nspec:\n  replicationMode: Scheduled\n  schedule: \"*/2 * * * * *\"\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  resourceTypes: [configmaps]\n  retryConfig: {{maxRetries: 100, initialBackoff: 1s, maxBackoff: 2s}}\n"
    ))
    .await;
    env.wait_status("shop", "first sync", |s| s.phase == Some(SyncPhase::Completed))
        .await;
    // Another mapping, into another cluster (the controller's, as RemoteCluster "spare").
    let spare_id = env.controller.identity("spare-writer").await.unwrap();
    env.put_kubeconfig("spare-kubeconfig", "kubeconfig", &spare_id)
        .await;
    env.apply(&format!(
        "apiVersion: dr-syncer.io/v1alpha1\nkind: RemoteCluster\nmetadata: {{name: spare, namespace: {NS}}}\nspec:\n  kubeconfigSecretRef: {{name: spare-kubeconfig, namespace: {NS}}}\n"
    ))
    .await;
    env.apply(&mapping(
        "other",
        &format!(
            "  replicationMode: Scheduled\n  schedule: \"*/2 * * * * *\"\n  sourceCluster: prod\n  destinationCluster: spare\n  sourceNamespace: {src}\n  destinationNamespace: {src}-spare\n  resourceTypes: [configmaps]"
        ),
    ))
    .await;
    env.wait_status("other", "first sync", |s| s.phase == Some(SyncPhase::Completed))
        .await;
    let spare: Api<ConfigMap> = Api::namespaced(env.controller.client(), &format!("{src}-spare"));

    // The DR server stops answering; production changes.
    let pid = env.dr.pid().expect("the DR control plane's process");
    signal(pid, "-STOP");
    set_v(&Api::namespaced(env.prod.client(), &src), "2").await;
    let stalled_at = std::time::Instant::now();
    let nm = env
        .wait_status("shop", "the sync to fail as timed out", |s| {
            s.phase == Some(SyncPhase::Failed)
                && s.last_error
                    .as_ref()
                    .is_some_and(|e| e.message.contains("timed out"))
        })
        .await;
    let failed_after = stalled_at.elapsed();
    eprintln!(
        "figures: stall: the sync failed {:.1} s after the DR control plane was stopped",
        failed_after.as_secs_f64()
    );
    // No successful sync for more than 3 schedule periods (2 s each): the mapping says it is stale.
    let stale = env
        .wait_status("shop", "Stale", |s| {
            condition(s, "Stale").is_some_and(|c| c.0 == "True")
        })
        .await;
    let message = condition(stale.status.as_ref().unwrap(), "Stale").unwrap().2;
    assert!(message.contains("no successful sync for"), "{message}");
    // The other mapping was not held up: the change reached its cluster while DR was stalled.
    wait_v(&spare, "the other mapping's copy", "2").await;
    assert!(
        op.metrics()
            .await
            .lines()
            .any(|l| l.starts_with("dr_syncer_mapping_stale{") && l.ends_with(" 1")),
        "the stale gauge"
    );
    signal(pid, "-CONT");
    let err = nm.status.unwrap().last_error.unwrap().message;
    assert!(err.contains("timed out after"), "{err}");
    assert!(failed_after < T, "failed after {failed_after:?}");

    // The server answers again: the change arrives, the mapping completes.
    wait_v(
        &Api::namespaced(env.dr.client(), &src),
        "the change after the stall",
        "2",
    )
    .await;
    env.wait_status("shop", "completed again, fresh", |s| {
        s.phase == Some(SyncPhase::Completed)
            && condition(s, "Stale").is_some_and(|c| c.0 == "False" && c.1 == "Fresh")
    })
    .await;
}

async fn configmap_names(api: &Api<ConfigMap>) -> BTreeSet<String> {
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .filter(|n| n != "kube-root-ca.crt")
        .collect()
}

async fn configmaps(api: &Api<ConfigMap>, names: impl IntoIterator<Item = String>, label: (&str, &str)) {
    for name in names {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {label.0: label.1}},
            "data": {"v": "1"}
        }))
        .unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
}

/// A production namespace `shop-…` with ConfigMap `settings` (`v: "1"`), and the ConfigMaps there.
async fn shop(env: &Env) -> (String, Api<ConfigMap>) {
    let src = create_namespace(&env.prod.client(), "shop").await.unwrap();
    let prod: Api<ConfigMap> = Api::namespaced(env.prod.client(), &src);
    configmaps(&prod, ["settings".to_owned()], ("app", "shop")).await;
    (src, prod)
}

/// Set `settings`' `v` in `api`.
async fn set_v(api: &Api<ConfigMap>, v: &str) {
    api.patch(
        "settings",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": v}})),
    )
    .await
    .unwrap();
}

/// Wait until `settings` in `api` has `v` (`what` names the wait).
async fn wait_v(api: &Api<ConfigMap>, what: &str, v: &str) {
    wait_for(what, T, || async {
        Ok((api.get("settings").await?.data.unwrap_or_default()["v"] == v).then_some(()))
    })
    .await
    .unwrap();
}

/// 12 of 20 source ConfigMaps deleted with one command (60 %, more than 10): the DR copies are kept,
/// `DeletionHeld` names the count, one Warning Event and the gauge say so, and a new object still reaches
/// DR meanwhile; a go-ahead (`dr-syncer.io/allow-deletions=12`) deletes exactly those and is removed.
#[tokio::test(flavor = "multi_thread")]
async fn a_mass_deletion_is_held_until_the_go_ahead() {
    let env = Env::start("fault-brake").await;
    let src = create_namespace(&env.prod.client(), "shop").await.unwrap();
    let prod: Api<ConfigMap> = Api::namespaced(env.prod.client(), &src);
    let dr: Api<ConfigMap> = Api::namespaced(env.dr.client(), &src);
    configmaps(&prod, (0..12).map(|i| format!("old-{i:02}")), ("batch", "old")).await;
    configmaps(&prod, (0..8).map(|i| format!("keep-{i}")), ("batch", "keep")).await;
    let op = env.operator("dr-syncer-operator", &[]).await;
    env.apply(&mapping(
        "shop",
        &format!(
            "  replicationMode: Scheduled\n  schedule: \"*/2 * * * * *\"\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  resourceTypes: [configmaps]\n  prune: true"
        ),
    ))
    .await;
    wait_for("the first copy", T, || async {
        Ok((configmap_names(&dr).await.len() == 20).then_some(()))
    })
    .await
    .unwrap();
    let all = configmap_names(&dr).await;

    prod.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("batch=old"),
    )
    .await
    .unwrap();
    let nm = env
        .wait_status("shop", "DeletionHeld", |s| {
            condition(s, "DeletionHeld").is_some_and(|c| c.0 == "True")
        })
        .await;
    let (_, reason, message) = condition(nm.status.as_ref().unwrap(), "DeletionHeld").unwrap();
    assert_eq!(reason, "MassDeletion");
    assert!(
        message.contains("12 deletion(s) held") && message.contains("dr-syncer.io/allow-deletions=12"),
        "{message}"
    );
    let events = env.wait_event("shop", "DeletionHeld").await;
    assert_eq!(
        events.iter().filter(|(r, _)| r == "DeletionHeld").count(),
        1,
        "{events:?}"
    );
    wait_for("the gauge", T, || async {
        Ok(op
            .metrics()
            .await
            .lines()
            .any(|l| l.starts_with("dr_syncer_deletions_held{") && l.ends_with(" 12"))
            .then_some(()))
    })
    .await
    .unwrap();

    // Held deletions block only deletions: a new object still arrives, and nothing is deleted.
    configmaps(&prod, ["new".to_owned()], ("batch", "new")).await;
    wait_for("the new object on DR", T, || async {
        Ok(dr.get_opt("new").await?.map(|_| ()))
    })
    .await
    .unwrap();
    let mut expected = all.clone();
    expected.insert("new".into());
    assert_eq!(configmap_names(&dr).await, expected, "nothing deleted while held");
    let held = env
        .wait_status("shop", "a later sync, still held", |s| {
            s.phase == Some(SyncPhase::Completed)
                && condition(s, "DeletionHeld").is_some_and(|c| c.0 == "True")
        })
        .await;
    assert_eq!(
        condition(held.status.as_ref().unwrap(), "Synced").map(|c| c.0),
        Some("True".to_owned()),
        "a hold is not a failed sync"
    );

    // The go-ahead: exactly the 12 are deleted, the annotation is used up, the condition clears.
    env.nm_api()
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"dr-syncer.io/allow-deletions": "12"}}})),
        )
        .await
        .unwrap();
    let nm = env
        .wait_status("shop", "the hold released", |s| {
            condition(s, "DeletionHeld").is_none()
        })
        .await;
    let remaining: BTreeSet<String> = (0..8)
        .map(|i| format!("keep-{i}"))
        .chain(["new".to_owned()])
        .collect();
    assert_eq!(configmap_names(&dr).await, remaining);
    wait_for("the go-ahead removed", T, || async {
        let nm = env.nm_api().get("shop").await?;
        Ok((!nm.annotations().contains_key("dr-syncer.io/allow-deletions")).then_some(()))
    })
    .await
    .unwrap();
    assert!(
        condition(nm.status.as_ref().unwrap(), "Synced").is_some_and(|c| c.0 == "True"),
        "{:?}",
        nm.status
    );
}

/// Production's namespace is deleted (it stays Terminating while an object's finalizer holds it): with
/// `prune: true` the DR copies stay untouched, `DeletionHeld` says why (SourceGone) with one Warning
/// Event; once the namespace is gone the syncs fail with a clear error and still delete nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_source_namespace_deletes_nothing_on_dr() {
    let env = Env::start("fault-nsgone").await;
    let src = create_namespace(&env.prod.client(), "shop").await.unwrap();
    let prod: Api<ConfigMap> = Api::namespaced(env.prod.client(), &src);
    let dr: Api<ConfigMap> = Api::namespaced(env.dr.client(), &src);
    configmaps(&prod, (0..5).map(|i| format!("cm-{i}")), ("app", "shop")).await;
    prod.patch(
        "cm-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold"]}})),
    )
    .await
    .unwrap();
    let _op = env.operator("dr-syncer-operator", &[]).await;
    env.apply(&mapping(
        "shop",
        &format!(
            "  replicationMode: Scheduled\n  schedule: \"*/2 * * * * *\"\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  resourceTypes: [configmaps]\n  prune: true\n  retryConfig: {{maxRetries: 100, initialBackoff: 1s, maxBackoff: 2s}}"
        ),
    ))
    .await;
    wait_for("the first copy", T, || async {
        Ok((configmap_names(&dr).await.len() == 5).then_some(()))
    })
    .await
    .unwrap();
    let copied = configmap_names(&dr).await;

    Api::<Namespace>::all(env.prod.client())
        .delete(&src, &DeleteParams::default())
        .await
        .unwrap();
    let nm = env
        .wait_status("shop", "DeletionHeld (SourceGone)", |s| {
            condition(s, "DeletionHeld").is_some_and(|c| c.0 == "True" && c.1 == "SourceGone")
        })
        .await;
    let message = condition(nm.status.as_ref().unwrap(), "DeletionHeld").unwrap().2;
    assert!(message.contains(&src), "{message}");
    // The namespace's other objects are gone at the source by now; their copies are kept.
    wait_for("production emptied but for the held object", T, || async {
        Ok((configmap_names(&prod).await.len() <= 1).then_some(()))
    })
    .await
    .unwrap();
    let since = dr_syncer_operator::conditions::now().0.as_second();
    env.wait_status("shop", "two more syncs", |s| {
        s.last_sync_time
            .as_ref()
            .is_some_and(|t| t.0.as_second() >= since + 4)
    })
    .await;
    assert_eq!(configmap_names(&dr).await, copied, "DR copies untouched");
    env.wait_event("shop", "DeletionHeld").await;

    // The namespace goes away: the syncs fail (the source namespace is not found), DR stays as it was.
    prod.patch(
        "cm-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    env.wait_status("shop", "the sync failing: namespace gone", |s| {
        s.phase == Some(SyncPhase::Failed)
            && s.last_error
                .as_ref()
                .is_some_and(|e| e.message.contains("not found"))
    })
    .await;
    assert_eq!(configmap_names(&dr).await, copied, "DR copies untouched");
}

/// Continuous mode sees a mass deletion one object at a time: the window adds the deletions up (across
/// an operator restart: the window is kept in `status.recentDeletions`), and once they pass the
/// thresholds (more than 10, more than half of what was there) the rest are held.
#[tokio::test(flavor = "multi_thread")]
async fn continuous_deletions_one_at_a_time_are_braked_over_the_window() {
    let env = Env::start("fault-brake-cont").await;
    let src = create_namespace(&env.prod.client(), "shop").await.unwrap();
    let prod: Api<ConfigMap> = Api::namespaced(env.prod.client(), &src);
    let dr: Api<ConfigMap> = Api::namespaced(env.dr.client(), &src);
    configmaps(&prod, (0..20).map(|i| format!("cm-{i:02}")), ("app", "shop")).await;
    let mut op = env.operator("dr-syncer-operator", &[]).await;
    env.apply(&mapping(
        "shop",
        &format!(
            "  replicationMode: Continuous\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  resourceTypes: [configmaps]\n  prune: true"
        ),
    ))
    .await;
    wait_for("the first copy", T, || async {
        Ok((configmap_names(&dr).await.len() == 20).then_some(()))
    })
    .await
    .unwrap();
    // One at a time, each mirrored before the next (its own batch); the operator is killed and
    // started again after the sixth.
    for i in 0..10 {
        prod.delete(&format!("cm-{i:02}"), &DeleteParams::default())
            .await
            .unwrap();
        wait_for("the deletion mirrored", T, || async {
            Ok((configmap_names(&dr).await.len() == 19 - i).then_some(()))
        })
        .await
        .unwrap();
        if i == 5 {
            env.wait_status("shop", "six deletions recorded", |s| {
                s.recent_deletions.iter().map(|r| r.count).sum::<u64>() == 6
            })
            .await;
            op.kill();
            op = env.operator("dr-syncer-operator", &[]).await;
        }
    }
    // The 11th deletion in the window: 11 of the 20 there were.
    prod.delete("cm-10", &DeleteParams::default()).await.unwrap();
    let nm = env
        .wait_status("shop", "DeletionHeld", |s| {
            condition(s, "DeletionHeld").is_some_and(|c| c.0 == "True")
        })
        .await;
    let message = condition(nm.status.as_ref().unwrap(), "DeletionHeld").unwrap().2;
    assert!(
        message.contains("1 deletion(s) held") && message.contains("after 10 deletion(s)"),
        "{message}"
    );
    assert!(dr.get_opt("cm-10").await.unwrap().is_some(), "held, kept");
    assert_eq!(configmap_names(&dr).await.len(), 10);
}

/// A CustomResourceDefinition deleted at the source (`prune: true`): while it terminates its objects
/// vanish there (held here by a finalizer on the CRD, so the sync sees the type served and empty); the
/// DR copies of that type are kept (`DeletionHeld`, reason SourceTypeRemoved, one Warning Event),
/// deletions of other types are still mirrored, and once the type is gone the DR copies still stay.
#[tokio::test(flavor = "multi_thread")]
async fn a_crd_deleted_at_the_source_prunes_nothing_of_its_type() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::{api::DynamicObject, discovery::ApiResource};

    let env = Env::start("fault-crd").await;
    let crd = include_str!("../../dr-syncer-core/tests/fixtures/widget-crd.yaml");
    for cp in [&env.prod, &env.dr] {
        apply_yaml(&cp.client(), None, crd).await.unwrap();
    }
    let widget = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let src = create_namespace(&env.prod.client(), "shop").await.unwrap();
    let prod_widgets: Api<DynamicObject> = Api::namespaced_with(env.prod.client(), &src, &widget);
    for n in 0..3 {
        let w: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": format!("w{n}")}, "spec": {"size": n}
        }))
        .unwrap();
        // The type may take a moment to be served.
        wait_for("a widget created", T, || async {
            Ok(prod_widgets
                .create(&PostParams::default(), &w)
                .await
                .ok()
                .map(|_| ()))
        })
        .await
        .unwrap();
    }
    let prod: Api<ConfigMap> = Api::namespaced(env.prod.client(), &src);
    configmaps(&prod, ["a".to_owned(), "b".to_owned()], ("app", "shop")).await;
    let _op = env.operator("dr-syncer-operator", &[]).await;
    env.apply(&mapping(
        "shop",
        &format!(
            "  replicationMode: Scheduled\n  schedule: \"*/2 * * * * *\"\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  resourceTypes: [widgets.example.com, configmaps]\n  prune: true"
        ),
    ))
    .await;
    env.wait_status("shop", "first sync", |s| s.phase == Some(SyncPhase::Completed))
        .await;
    let dr_widgets: Api<DynamicObject> = Api::namespaced_with(env.dr.client(), &src, &widget);
    let widget_names = |api: Api<DynamicObject>| async move {
        api.list(&ListParams::default())
            .await
            .map(|l| l.items.iter().map(ResourceExt::name_any).collect::<BTreeSet<_>>())
    };
    let all_three: BTreeSet<String> = ["w0", "w1", "w2"].map(String::from).into();
    assert_eq!(widget_names(dr_widgets.clone()).await.unwrap(), all_three);

    // The CRD is deleted at the source; a finalizer keeps it terminating after its objects are gone.
    let crds: Api<CustomResourceDefinition> = Api::all(env.prod.client());
    crds.patch(
        "widgets.example.com",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold"]}})),
    )
    .await
    .unwrap();
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the source's widgets gone", T, || async {
        Ok(widget_names(prod_widgets.clone())
            .await
            .ok()
            .filter(BTreeSet::is_empty)
            .map(|_| ()))
    })
    .await
    .unwrap();
    prod.delete("b", &DeleteParams::default()).await.unwrap();
    let dr: Api<ConfigMap> = Api::namespaced(env.dr.client(), &src);
    wait_for("the other type's deletion mirrored", T, || async {
        Ok((configmap_names(&dr).await == BTreeSet::from(["a".to_owned()])).then_some(()))
    })
    .await
    .unwrap();
    let nm = env
        .wait_status("shop", "DeletionHeld (SourceTypeRemoved)", |s| {
            condition(s, "DeletionHeld").is_some_and(|c| c.0 == "True" && c.1 == "SourceTypeRemoved")
        })
        .await;
    let message = condition(nm.status.as_ref().unwrap(), "DeletionHeld").unwrap().2;
    assert!(message.contains("Widget.example.com"), "{message}");
    assert!(!env.wait_event("shop", "DeletionHeld").await.is_empty());
    assert_eq!(
        widget_names(dr_widgets.clone()).await.unwrap(),
        all_three,
        "DR widgets kept"
    );

    // The type gone for good at the source: the listed type fails the sync, the DR copies stay.
    crds.patch(
        "widgets.example.com",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    env.wait_status("shop", "the sync fails on the unserved type", |s| {
        condition(s, "Synced").is_some_and(|c| c.0 == "False")
    })
    .await;
    assert_eq!(
        widget_names(dr_widgets).await.unwrap(),
        all_three,
        "DR widgets kept"
    );
}

/// The DR RemoteCluster's kubeconfig Secret is re-pointed at another control plane: the RemoteCluster
/// reports `ClusterIdentityChanged` (it is pinned to the cluster it first reached), the mapping stops
/// (`Synced` False, reason ClusterIdentityChanged) and nothing at all is written to the other cluster;
/// pointed back, the mapping syncs again.
#[tokio::test(flavor = "multi_thread")]
async fn a_kubeconfig_re_pointed_at_another_cluster_writes_nothing_there() {
    use dr_syncer_core::api::RemoteCluster;

    let env = Env::start("fault-identity").await;
    let (src, prod) = shop(&env).await;
    let _op = env.operator("dr-syncer-operator", &[]).await;
    let rcs: Api<RemoteCluster> = Api::namespaced(env.controller.client(), NS);
    let dr_uid = Api::<Namespace>::all(env.dr.client())
        .get("kube-system")
        .await
        .unwrap()
        .uid()
        .unwrap();
    let prod_uid = Api::<Namespace>::all(env.prod.client())
        .get("kube-system")
        .await
        .unwrap()
        .uid()
        .unwrap();
    wait_for("the DR RemoteCluster pinned", T, || async {
        let rc = rcs.get("dr").await?;
        Ok(rc
            .status
            .and_then(|s| s.cluster_identity)
            .filter(|c| c.uid == dr_uid)
            .map(|_| ()))
    })
    .await
    .unwrap();
    env.apply(&mapping(
        "shop",
        &format!(
            "  replicationMode: Scheduled\n  schedule: \"*/2 * * * * *\"\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  resourceTypes: [configmaps]\n  prune: true"
        ),
    ))
    .await;
    env.wait_status("shop", "first sync", |s| s.phase == Some(SyncPhase::Completed))
        .await;
    let dr_ns = Api::<Namespace>::all(env.dr.client()).get(&src).await.unwrap();
    assert_eq!(
        dr_ns
            .annotations()
            .get("dr-syncer.io/source-cluster-uid")
            .map(String::as_str),
        Some(prod_uid.as_str()),
        "the DR namespace records its source cluster"
    );

    // Re-pointed at the controller cluster (another cluster that would take the writes).
    let intruder = env.controller.identity("re-pointed").await.unwrap();
    env.put_kubeconfig("dr-kubeconfig", "kubeconfig", &intruder).await;
    let nm = env
        .wait_status("shop", "the mapping stopped", |s| {
            condition(s, "Synced").is_some_and(|c| c.0 == "False" && c.1 == "ClusterIdentityChanged")
        })
        .await;
    let message = condition(nm.status.as_ref().unwrap(), "Synced").unwrap().2;
    assert!(
        message.contains(&dr_uid) && message.contains("dr-syncer.io/accept-cluster-identity="),
        "{message}"
    );
    wait_for("ClusterIdentityChanged on the RemoteCluster", T, || async {
        let rc = rcs.get("dr").await?;
        Ok(rc
            .status
            .and_then(|s| s.conditions)
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "ClusterIdentityChanged" && c.status == "True")
            .map(|_| ()))
    })
    .await
    .unwrap();
    // Several reconciles later: not one write through the re-pointed kubeconfig.
    let since = std::time::Instant::now();
    while since.elapsed() < std::time::Duration::from_secs(6) {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let writes = env
        .controller
        .requests("re-pointed")
        .await
        .unwrap()
        .stored_writes();
    assert_eq!(writes, 0, "no write to the other cluster");
    let events = env.wait_event("shop", "ClusterIdentityChanged").await;
    assert!(!events.is_empty());

    // Pointed back: the pin matches again, the mapping syncs.
    env.put_kubeconfig("dr-kubeconfig", "kubeconfig", &env.dr_id)
        .await;
    set_v(&prod, "2").await;
    wait_v(&Api::namespaced(env.dr.client(), &src), "syncing again", "2").await;
}

/// The prod RemoteCluster's kubeconfig Secret is re-pointed at another cluster (production rebuilt
/// elsewhere): the mapping stops with `ClusterIdentityChanged` and DR keeps the old copy; once a person
/// accepts the new cluster on the RemoteCluster (`dr-syncer.io/accept-cluster-identity=<uid>`), the
/// mapping syncs from it, the DR namespace records the new source UID, and the annotation is used up.
#[tokio::test(flavor = "multi_thread")]
async fn an_accepted_new_source_cluster_is_synced_from_and_recorded() {
    use dr_syncer_core::api::RemoteCluster;

    let env = Env::start("fault-accept").await;
    let (src, _) = shop(&env).await;
    let _op = env.operator("dr-syncer-operator", &[]).await;
    let rcs: Api<RemoteCluster> = Api::namespaced(env.controller.client(), NS);
    let uid_of = |client: kube::Client| async move {
        Api::<Namespace>::all(client)
            .get("kube-system")
            .await
            .unwrap()
            .uid()
            .unwrap()
    };
    let prod_uid = uid_of(env.prod.client()).await;
    let new_uid = uid_of(env.controller.client()).await;
    env.apply(&mapping(
        "shop",
        &format!(
            "  replicationMode: Scheduled\n  schedule: \"*/2 * * * * *\"\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  resourceTypes: [configmaps]\n  prune: true"
        ),
    ))
    .await;
    env.wait_status("shop", "first sync", |s| s.phase == Some(SyncPhase::Completed))
        .await;
    let recorded = || async {
        Api::<Namespace>::all(env.dr.client())
            .get(&src)
            .await
            .unwrap()
            .annotations()
            .get("dr-syncer.io/source-cluster-uid")
            .cloned()
    };
    assert_eq!(recorded().await.as_deref(), Some(prod_uid.as_str()));

    // Production rebuilt on another cluster: the same namespace, other contents.
    let rebuilt = env.controller.client();
    Api::<Namespace>::all(rebuilt.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": src}})).unwrap(),
        )
        .await
        .unwrap();
    let new_prod: Api<ConfigMap> = Api::namespaced(rebuilt, &src);
    configmaps(
        &new_prod,
        ["settings".to_owned(), "rebuilt".to_owned()],
        ("app", "shop"),
    )
    .await;
    set_v(&new_prod, "new").await;
    let reader = env.controller.identity("new-source").await.unwrap();
    env.put_kubeconfig("prod-kubeconfig", "kubeconfig", &reader).await;
    env.wait_status("shop", "the mapping stopped", |s| {
        condition(s, "Synced").is_some_and(|c| c.0 == "False" && c.1 == "ClusterIdentityChanged")
    })
    .await;
    let dr: Api<ConfigMap> = Api::namespaced(env.dr.client(), &src);
    assert_eq!(
        configmap_names(&dr).await,
        BTreeSet::from(["settings".to_owned()]),
        "nothing synced from the unaccepted cluster"
    );
    assert_eq!(dr.get("settings").await.unwrap().data.unwrap()["v"], "1");

    // Accepted: the mapping syncs from the new cluster and the DR namespace records it.
    rcs.patch(
        "prod",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {
            "dr-syncer.io/accept-cluster-identity": new_uid
        }}})),
    )
    .await
    .unwrap();
    wait_for("synced from the accepted cluster", T, || async {
        let names = configmap_names(&dr).await;
        let v = dr.get("settings").await?.data.unwrap_or_default()["v"].clone();
        Ok((names.contains("rebuilt") && v == "new").then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(recorded().await.as_deref(), Some(new_uid.as_str()));
    env.wait_status("shop", "synced again", |s| {
        condition(s, "Synced").is_some_and(|c| c.0 == "True")
    })
    .await;
    wait_for("the acceptance used up", T, || async {
        let rc = rcs.get("prod").await?;
        let pinned = rc
            .status
            .as_ref()
            .and_then(|s| s.cluster_identity.as_ref())
            .map(|c| c.uid.clone());
        Ok((pinned.as_deref() == Some(new_uid.as_str())
            && !rc
                .annotations()
                .contains_key("dr-syncer.io/accept-cluster-identity"))
        .then_some(()))
    })
    .await
    .unwrap();
}

/// The controller cluster takes the operator's status write and never answers (`--request-timeout 2s`):
/// the write fails within the deadline instead of holding the mapping's reconcile for good, and the
/// mapping goes on syncing (a change made after the stall reaches DR, and its status is written).
#[tokio::test(flavor = "multi_thread")]
async fn a_status_write_the_controller_never_answers_does_not_hold_the_mapping() {
    use dr_syncer_testenv::FaultRule;

    let env = Env::start("fault-ctl-stall").await;
    let (src, prod) = shop(&env).await;
    let _op = env
        .operator("dr-syncer-operator", &["--request-timeout", "2s"])
        .await;
    env.apply(&mapping(
        "shop",
        &format!(
            "  replicationMode: Scheduled\n  schedule: \"*/2 * * * * *\"\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  resourceTypes: [configmaps]"
        ),
    ))
    .await;
    env.wait_status("shop", "first sync", |s| s.phase == Some(SyncPhase::Completed))
        .await;
    env.controller
        .inject(&FaultRule {
            resources: vec!["namespacemappings/status".into()],
            stall: true,
            count: 1,
            ..FaultRule::new_for("dr-syncer-operator", &["apply", "patch"])
        })
        .await
        .unwrap();
    let stalled = std::time::Instant::now();
    set_v(&prod, "2").await;
    wait_v(
        &Api::namespaced(env.dr.client(), &src),
        "the change synced after the stalled write",
        "2",
    )
    .await;
    let after = Time(k8s_openapi::jiff::Timestamp::now());
    env.wait_status("shop", "a status written after it", |s| {
        s.last_sync_time.as_ref().is_some_and(|t| t.0 >= after.0)
    })
    .await;
    let hits: u64 = env
        .controller
        .faults()
        .await
        .unwrap()
        .iter()
        .map(|r| r.hits)
        .sum();
    assert_eq!(hits, 1, "the status write was stalled");
    println!(
        "figures: controller stall: change synced and status written {:.1} s after the stalled write",
        stalled.elapsed().as_secs_f64()
    );
}

/// 429 storms (with Retry-After) and 5xx bursts from the DR side during the first copy of 1,000
/// objects: the sync retries and converges — every object copied once, with its data, the mapping
/// Completed — and the faults did hit.
#[tokio::test(flavor = "multi_thread")]
async fn a_first_copy_through_429_storms_and_5xx_bursts_completes() {
    use dr_syncer_testenv::FaultRule;

    let env = Env::start("fault-storm").await;
    let src = create_namespace(&env.prod.client(), "big").await.unwrap();
    let mut yaml = String::new();
    for i in 0..1000 {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i:04}}}\ndata: {{v: '{i}'}}\n"
        ));
    }
    apply_yaml(&env.prod.client(), Some(&src), &yaml).await.unwrap();
    let user = "dr-syncer-operator";
    for rule in [
        FaultRule {
            probability: 0.3,
            retry_after_seconds: 1,
            count: 300,
            ..FaultRule::status(user, &["create", "apply", "patch"], 429)
        },
        FaultRule {
            probability: 0.1,
            count: 100,
            ..FaultRule::status(user, &[], 503)
        },
        FaultRule {
            probability: 0.05,
            count: 40,
            ..FaultRule::status(user, &["create", "apply", "patch", "list"], 500)
        },
    ] {
        env.dr.inject(&rule).await.unwrap();
    }
    let _op = env.operator("dr-syncer-operator", &[]).await;
    let created = std::time::Instant::now();
    env.apply(&mapping(
        "big",
        &format!(
            "  replicationMode: Scheduled\n  schedule: \"*/5 * * * * *\"\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  resourceTypes: [configmaps]\n  retryConfig: {{maxRetries: 100, initialBackoff: 1s, maxBackoff: 2s}}"
        ),
    ))
    .await;
    let nm = env
        .wait_status("big", "a completed copy", |s| {
            s.phase == Some(SyncPhase::Completed)
                && s.sync_stats
                    .as_ref()
                    .is_some_and(|st| st.successful_syncs == 1000)
        })
        .await;
    assert_eq!(nm.status.unwrap().sync_stats.unwrap().failed_syncs, 0);
    let dr: Api<ConfigMap> = Api::namespaced(env.dr.client(), &src);
    let copied = dr.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(copied.len(), 1000);
    for cm in &copied {
        let i: usize = cm.name_any()[3..].parse().unwrap();
        assert_eq!(cm.data.as_ref().unwrap()["v"], i.to_string(), "{}", cm.name_any());
    }
    let hits: Vec<u64> = env.dr.faults().await.unwrap().iter().map(|r| r.hits).collect();
    assert!(hits.iter().all(|h| *h > 0), "every kind of fault hit: {hits:?}");
    // (For docs/reliability.md; shown with --no-capture.)
    eprintln!(
        "figures: storm: faults injected (429, 503, 500) {hits:?}; copy completed {:.1} s after the mapping was created",
        created.elapsed().as_secs_f64()
    );
}

/// The leader's connection to the controller cluster stalls (its requests there are accepted and never
/// answered): its lease renewal is cut off at the renew deadline and it stops — before the standby can
/// take the lease, which expires only after the lease duration. No time with two writers: the leader's
/// process has ended before the standby's acquire time.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_cut_off_from_the_controller_stops_before_the_standby_takes_over() {
    use std::time::{Duration, Instant};

    use dr_syncer_testenv::FaultRule;
    use k8s_openapi::api::coordination::v1::Lease;

    let env = Env::start("leader-stall").await;
    let src = create_namespace(&env.prod.client(), "app").await.unwrap();
    apply_yaml(
        &env.prod.client(),
        Some(&src),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {v: '1'}\n",
    )
    .await
    .unwrap();
    let timing = [
        "--leader-elect",
        "--lease-duration",
        "6s",
        "--renew-deadline",
        "3s",
        "--retry-period",
        "1s",
    ];
    let mut one = env.operator("replica-one", &timing).await;
    let leases: Api<Lease> = Api::namespaced(env.controller.client(), NS);
    let holder = || async {
        leases
            .get_opt("dr-syncer.io")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec)
    };
    wait_for("replica-one leads", T, || async {
        Ok(holder()
            .await
            .filter(|s| s.holder_identity.as_deref() == Some("replica-one"))
            .map(|_| ()))
    })
    .await
    .unwrap();
    let _two = env.operator("replica-two", &timing).await;
    env.apply(&format!(
        "apiVersion: dr-syncer.io/v1alpha1\nkind: NamespaceMapping\nmetadata: {{name: app, namespace: {NS}}}\nspec:\n  replicationMode: Scheduled\n  schedule: \"*/2 * * * * *\"\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  resourceTypes: [configmaps]\n"
    ))
    .await;
    env.wait_status("app", "synced by the leader", |s| {
        s.phase == Some(SyncPhase::Completed)
    })
    .await;

    // Everything replica-one asks of the controller cluster stalls from now on.
    env.controller
        .inject(&FaultRule::stall("replica-one", 0))
        .await
        .unwrap();
    let stalled = Instant::now();
    let exited_at = loop {
        if !one.running() {
            break k8s_openapi::jiff::Timestamp::now();
        }
        assert!(stalled.elapsed() < T, "the stalled leader kept running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stopped_after = stalled.elapsed();
    let spec = wait_for("replica-two leads", T, || async {
        Ok(holder()
            .await
            .filter(|s| s.holder_identity.as_deref() == Some("replica-two")))
    })
    .await
    .unwrap();
    let acquired = spec.acquire_time.expect("acquireTime").0;
    eprintln!(
        "figures: leader stall: the leader stopped {:.1} s after the stall, the standby acquired {:.1} s after the leader stopped",
        stopped_after.as_secs_f64(),
        acquired.duration_since(exited_at).as_secs_f64()
    );
    assert!(
        exited_at < acquired,
        "the old leader ({exited_at}) must be gone before the standby acquires ({acquired})"
    );
    env.controller.clear_faults().await.unwrap();
    // The new leader syncs.
    apply_yaml(
        &env.prod.client(),
        Some(&src),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\ndata: {v: '1'}\n",
    )
    .await
    .unwrap();
    let dr_cms: Api<ConfigMap> = Api::namespaced(env.dr.client(), &src);
    wait_for("the new leader syncs", T, || async {
        Ok((dr_cms.get_opt("b").await?.is_some()).then_some(()))
    })
    .await
    .unwrap();
}
