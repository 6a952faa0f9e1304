//! The site state with the operator running: a CLI cutover and failback while the operator syncs every
//! two seconds (the operator writes nothing into the live DR side, the failback acts on what the
//! operator synced, and the mapping resumes by itself); a promotion with production stopped, production
//! coming back unfenced (both sites active), fence and failback; nothing deleted on an active site.

mod common;

use common::{Env, T, cli, condition, drill, mapping};
use dr_syncer_core::api::SyncPhase;
use dr_syncer_testenv::{ControlPlane, apply_yaml, create_namespace, wait_for};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Namespace},
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;

const APP: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx}]}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {LEVEL: info}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\ndata: {v: '1'}\n";

/// The types the drills of these tests copy.
const TYPES: &str = "deployments,configmaps";

async fn replicas(cp: &ControlPlane, ns: &str) -> Option<i32> {
    Api::<Deployment>::namespaced(cp.client(), ns)
        .get("web")
        .await
        .unwrap()
        .spec
        .unwrap()
        .replicas
}

async fn annotation(cp: &ControlPlane, ns: &str, key: &str) -> Option<String> {
    Api::<Namespace>::all(cp.client())
        .get(ns)
        .await
        .unwrap()
        .annotations()
        .get(key)
        .cloned()
}

/// The operator's writes on the DR cluster (request accounting of its identity there).
async fn operator_dr_writes(env: &Env) -> u64 {
    env.dr
        .requests("dr-syncer-operator")
        .await
        .unwrap()
        .stored_writes()
}

/// A CLI cutover while the operator keeps syncing every two seconds: the DR side is active at once and
/// stays so; over several syncs the operator writes nothing there (production's later changes and
/// deletions do not reach the live site); the mapping is healthy and idle (`DestinationActive`, one
/// Event); the CLI failback quiets what the operator synced, reactivates production, and the mapping
/// resumes by itself.
#[tokio::test(flavor = "multi_thread")]
async fn cutover_and_failback_while_the_operator_runs() {
    let env = Env::start("site-drill").await;
    let src = create_namespace(&env.prod.client(), "shop").await.unwrap();
    apply_yaml(&env.prod.client(), Some(&src), APP).await.unwrap();
    let _op = env.operator("dr-syncer-operator", &[]).await;
    env.apply(&mapping(
        "shop",
        &format!("  replicationMode: Scheduled\n  schedule: \"*/2 * * * * *\"\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  resourceTypes: [deployments, configmaps]\n  prune: true"),
    ))
    .await;
    env.wait_status("shop", "staged", |s| s.phase == Some(SyncPhase::Completed))
        .await;
    assert_eq!(replicas(&env.dr, &src).await, Some(0));

    // Scaling the DR copy up by hand in an unmarked namespace is not a promotion: it is quieted again,
    // and an Event says how to promote instead.
    Api::<Deployment>::namespaced(env.dr.client(), &src)
        .patch(
            "web",
            &PatchParams::apply("ops-team").force(),
            &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    let events = env.wait_event("shop", "DRWorkloadQuieted").await;
    let note = &events.iter().find(|(r, _)| r == "DRWorkloadQuieted").unwrap().1;
    assert!(
        note.contains("dr-syncer-cli promote") && note.contains("web"),
        "{note}"
    );
    wait_for("quieted again", T, || async {
        Ok((replicas(&env.dr, &src).await == Some(0)).then_some(()))
    })
    .await
    .unwrap();

    let reader = env.prod.identity("drill").await.unwrap();
    let writer = env.dr.identity("drill").await.unwrap();
    drill(&reader, &writer, &src, TYPES, &["cutover"]).ok();
    assert_eq!(replicas(&env.dr, &src).await, Some(3), "DR active");
    assert_eq!(replicas(&env.prod, &src).await, Some(0), "production quiet");

    // Production changes meanwhile (it is the stale side now).
    let prod_cms: Api<ConfigMap> = Api::namespaced(env.prod.client(), &src);
    prod_cms
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"LEVEL": "stale"}})),
        )
        .await
        .unwrap();
    prod_cms.delete("extra", &DeleteParams::default()).await.unwrap();

    let nm = env
        .wait_status("shop", "the DR side reported active", |s| {
            condition(s, "DestinationActive").is_some_and(|c| c.0 == "True")
        })
        .await;
    let synced = condition(nm.status.as_ref().unwrap(), "Synced").unwrap();
    assert_eq!(
        (synced.0.as_str(), synced.1.as_str()),
        ("True", "DestinationActive"),
        "{synced:?}"
    );
    // Three sync periods with no write into the live site.
    let before = operator_dr_writes(&env).await;
    let since = dr_syncer_operator::conditions::now().0.as_second();
    env.wait_status("shop", "three more syncs", |s| {
        s.last_sync_time
            .as_ref()
            .is_some_and(|t| t.0.as_second() >= since + 6)
    })
    .await;
    assert_eq!(
        operator_dr_writes(&env).await - before,
        0,
        "no write into the active DR namespace"
    );
    let dr_cms: Api<ConfigMap> = Api::namespaced(env.dr.client(), &src);
    assert_eq!(
        dr_cms.get("settings").await.unwrap().data.unwrap()["LEVEL"],
        "info",
        "the stale change did not reach the live site"
    );
    assert!(dr_cms.get_opt("extra").await.unwrap().is_some(), "not pruned");
    assert_eq!(replicas(&env.dr, &src).await, Some(3));
    let events = env.events("shop").await;
    assert_eq!(
        events.iter().filter(|(r, _)| r == "DestinationActive").count(),
        1,
        "one Event: {events:?}"
    );

    // Failback: the DR side (synced by the operator) is quieted, production restored.
    drill(&reader, &writer, &src, TYPES, &["failback"]).ok();
    assert_eq!(replicas(&env.prod, &src).await, Some(3), "production back");
    assert_eq!(
        replicas(&env.dr, &src).await,
        Some(0),
        "DR quiet: never both active"
    );
    assert_eq!(annotation(&env.dr, &src, "dr-syncer.io/active").await, None);
    assert_eq!(annotation(&env.prod, &src, "dr-syncer.io/standby").await, None);
    // The mapping resumes by itself: production's changes arrive, the deletion is pruned.
    wait_for("the mapping to resume", T, || async {
        let settings = dr_cms.get("settings").await?;
        let gone = dr_cms.get_opt("extra").await?.is_none();
        Ok((settings.data.unwrap_or_default()["LEVEL"] == "stale" && gone).then_some(()))
    })
    .await
    .unwrap();
    env.wait_status("shop", "synced again", |s| {
        condition(s, "DestinationActive").is_none()
            && condition(s, "Synced").is_some_and(|c| c.1 == "SyncCompleted")
    })
    .await;
    assert_eq!(replicas(&env.dr, &src).await, Some(0), "and DR stays quiet");
}

/// Production's control plane stops: `promote` (DR kubeconfig only) makes the DR side live, and the
/// mapping is idle, not failing. Production comes back with its workloads running: the operator writes
/// nothing into the DR side and reports both sites active (condition, Event, metric, `status`); a
/// failback is refused until `fence` (production kubeconfig only) quiets production; then it completes.
#[tokio::test(flavor = "multi_thread")]
async fn promote_with_production_down_then_fence_and_failback() {
    let mut env = Env::start("site-promote").await;
    let src = create_namespace(&env.prod.client(), "shop").await.unwrap();
    apply_yaml(&env.prod.client(), Some(&src), APP).await.unwrap();
    let op = env.operator("dr-syncer-operator", &[]).await;
    env.apply(&mapping(
        "shop",
        &format!("  replicationMode: Scheduled\n  schedule: \"*/2 * * * * *\"\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  resourceTypes: [deployments, configmaps]"),
    ))
    .await;
    env.wait_status("shop", "staged", |s| s.phase == Some(SyncPhase::Completed))
        .await;
    let reader = env.prod.identity("drill").await.unwrap();
    let writer = env.dr.identity("drill").await.unwrap();

    // Production is down.
    env.prod.stop();
    let o = cli(&[
        "promote",
        "--dest-kubeconfig",
        writer.kubeconfig.to_str().unwrap(),
        "--dest-namespace",
        &src,
        "--resource-types",
        "deployments,configmaps",
        "--yes",
        "-o",
        "json",
    ]);
    o.ok();
    let report: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert!(
        report["freshness"]["lastObjectSync"].is_string(),
        "the RPO is reported: {}",
        o.stdout
    );
    assert_eq!(replicas(&env.dr, &src).await, Some(3), "DR live");
    assert_eq!(
        annotation(&env.dr, &src, "dr-syncer.io/activated-by")
            .await
            .as_deref(),
        Some("promote")
    );
    // Production unreachable, DR live: idle, not failing.
    env.wait_status("shop", "idle while production is down", |s| {
        condition(s, "DestinationActive").is_some_and(|c| c.0 == "True")
            && condition(s, "Synced").is_some_and(|c| c.0 == "True" && c.1 == "DestinationActive")
    })
    .await;

    // Production comes back, its workloads running: both sites are active.
    let before = operator_dr_writes(&env).await;
    env.prod.restart().await.unwrap();
    let nm = env
        .wait_status("shop", "both sites active reported", |s| {
            condition(s, "BothSitesActive").is_some_and(|c| c.0 == "True")
        })
        .await;
    let both = condition(nm.status.as_ref().unwrap(), "BothSitesActive").unwrap();
    assert!(both.2.contains("Deployment/web"), "{both:?}");
    env.wait_event("shop", "BothSitesActive").await;
    let metrics = op.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("dr_syncer_both_sites_active{") && l.contains(&src) && l.ends_with(" 1")),
        "{metrics}"
    );
    let status = cli(&[
        "status",
        "--source-kubeconfig",
        reader.kubeconfig.to_str().unwrap(),
        "--dest-kubeconfig",
        writer.kubeconfig.to_str().unwrap(),
        "--source-namespace",
        &src,
        "-o",
        "json",
    ]);
    status.ok();
    let s: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(s["bothSitesActive"], true, "{}", status.stdout);
    assert_eq!(s["destination"]["activatedBy"], "promote");
    assert_eq!(
        operator_dr_writes(&env).await - before,
        0,
        "nothing written into the live DR side"
    );
    assert_eq!(replicas(&env.dr, &src).await, Some(3));

    // Failback is refused while both are active; fence quiets production without touching DR.
    let refused = drill(&reader, &writer, &src, TYPES, &["failback"]);
    assert_eq!(refused.code, 9, "{}{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("both sites are active"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        replicas(&env.prod, &src).await,
        Some(3),
        "refused before any write"
    );
    let dr_before = env.dr.requests("drill").await.unwrap().stored_writes();
    cli(&[
        "fence",
        "--source-kubeconfig",
        reader.kubeconfig.to_str().unwrap(),
        "--source-namespace",
        &src,
        "--resource-types",
        "deployments,configmaps",
        "--yes",
    ])
    .ok();
    assert_eq!(replicas(&env.prod, &src).await, Some(0), "production fenced");
    assert_eq!(
        annotation(&env.prod, &src, "dr-syncer.io/standby")
            .await
            .as_deref(),
        Some("true")
    );
    assert_eq!(
        env.dr.requests("drill").await.unwrap().stored_writes(),
        dr_before,
        "fence never touches DR"
    );
    env.wait_status("shop", "both-sites condition gone", |s| {
        condition(s, "BothSitesActive").is_none()
    })
    .await;

    // Failback works as after a cutover.
    drill(&reader, &writer, &src, TYPES, &["failback"]).ok();
    assert_eq!(replicas(&env.prod, &src).await, Some(3));
    assert_eq!(replicas(&env.dr, &src).await, Some(0));
    assert_eq!(annotation(&env.dr, &src, "dr-syncer.io/active").await, None);
}

/// On an active DR site nothing is deleted: not by `cleanupOnUnlabel` when its production namespace
/// leaves the selector, not by `deletionPolicy: DeleteSynced` when the mapping goes. And a production
/// namespace that is deleted is an outage, not an unlabelling: its DR copy stays too.
#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_deleted_on_an_active_site_or_for_a_deleted_source() {
    let env = Env::start("site-delete").await;
    let prod = env.prod.client();
    let cms = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {v: '1'}\n";
    let a = create_namespace(&prod, "team-a").await.unwrap();
    let b = create_namespace(&prod, "team-b").await.unwrap();
    let namespaces: Api<Namespace> = Api::all(prod.clone());
    for ns in [&a, &b] {
        apply_yaml(&prod, Some(ns), cms).await.unwrap();
        namespaces
            .patch(
                ns,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"dr": "yes"}}})),
            )
            .await
            .unwrap();
    }
    let _op = env.operator("dr-syncer-operator", &[]).await;
    env.apply(&mapping(
        "teams",
        "  replicationMode: Scheduled\n  schedule: \"*/2 * * * * *\"\n  sourceCluster: prod\n  destinationCluster: dr\n  resourceTypes: [configmaps]\n  prune: true\n  deletionPolicy: DeleteSynced\n  namespaceSelector:\n    labelSelector: {matchLabels: {dr: \"yes\"}}\n    destinationSuffix: -dr\n    cleanupOnUnlabel: true",
    ))
    .await;
    env.wait_status("teams", "both namespaces synced", |s| {
        s.namespaces
            .as_ref()
            .is_some_and(|n| n.len() == 2 && n.iter().all(|e| e.phase == Some(SyncPhase::Completed)))
    })
    .await;
    let (a_dr, b_dr) = (format!("{a}-dr"), format!("{b}-dr"));
    // A person promotes team-a's DR copy by hand.
    Api::<Namespace>::all(env.dr.client())
        .patch(
            &a_dr,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"dr-syncer.io/active": "true"}}})),
        )
        .await
        .unwrap();
    // The rest of the mapping keeps syncing: team-b's change arrives, team-a's (live) does not.
    for ns in [&a, &b] {
        Api::<ConfigMap>::namespaced(prod.clone(), ns)
            .patch(
                "a",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"v": "2"}})),
            )
            .await
            .unwrap();
    }
    let b_copy: Api<ConfigMap> = Api::namespaced(env.dr.client(), &b_dr);
    wait_for("team-b synced", T, || async {
        Ok((b_copy.get("a").await?.data.unwrap_or_default()["v"] == "2").then_some(()))
    })
    .await
    .unwrap();
    let a_copy: Api<ConfigMap> = Api::namespaced(env.dr.client(), &a_dr);
    env.wait_status("teams", "team-a held", |s| {
        condition(s, "DestinationActive").is_some_and(|c| c.2.contains(a_dr.as_str()))
    })
    .await;
    assert_eq!(
        a_copy.get("a").await.unwrap().data.unwrap()["v"],
        "1",
        "the live side is not written"
    );
    // team-a leaves the selector; team-b's production namespace is deleted.
    namespaces
        .patch(
            &a,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"dr": null}}})),
        )
        .await
        .unwrap();
    namespaces.delete(&b, &DeleteParams::default()).await.unwrap();
    env.wait_status("teams", "both dropped from the selection", |s| {
        s.namespaces.as_ref().is_some_and(Vec::is_empty)
    })
    .await;
    let skipped = env
        .wait_events("teams", "two cleanups skipped", |events| {
            events
                .iter()
                .filter(|(r, _)| r == "NamespaceCleanupSkipped")
                .count()
                >= 2
        })
        .await;
    let notes: Vec<&String> = skipped
        .iter()
        .filter(|(r, _)| r == "NamespaceCleanupSkipped")
        .map(|(_, n)| n)
        .collect();
    assert!(
        notes.iter().any(|n| n.contains(&a_dr) && n.contains("live site")),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.contains(&b_dr) && n.contains("outage")),
        "{notes:?}"
    );
    for ns in [&a_dr, &b_dr] {
        let copy: Api<ConfigMap> = Api::namespaced(env.dr.client(), ns);
        assert!(copy.get_opt("a").await.unwrap().is_some(), "{ns} kept");
    }

    // The mapping goes with DeleteSynced: team-a's live copy stays (and is named).
    namespaces
        .patch(
            &a,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"dr": "yes"}}})),
        )
        .await
        .unwrap();
    env.wait_status("teams", "team-a selected again", |s| {
        s.namespaces.as_ref().is_some_and(|n| n.len() == 1)
    })
    .await;
    env.nm_api()
        .delete("teams", &DeleteParams::default())
        .await
        .unwrap();
    let api = env.nm_api();
    wait_for("mapping gone (finalizer done)", T, || async {
        Ok(api.get_opt("teams").await?.is_none().then_some(()))
    })
    .await
    .unwrap();
    let copy: Api<ConfigMap> = Api::namespaced(env.dr.client(), &a_dr);
    assert!(
        copy.get_opt("a").await.unwrap().is_some(),
        "the live site is never deleted"
    );
    assert!(
        Api::<Namespace>::all(env.dr.client())
            .get_opt(&a_dr)
            .await
            .unwrap()
            .is_some(),
        "nor its namespace"
    );
}
