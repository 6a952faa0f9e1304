//! Transformer plugins in the operator, against three control planes: a Continuous NamespaceMapping names
//! the example plugins (`examples/plugins/`, found through `--plugin-dir`) in `transformPlugins`; images are
//! rewritten and labelled objects whited out on the first sync and on watched changes (a white-out with
//! prune removes the DR copy); a mapping naming a plugin that is not there is not synced and says why.

mod common;

use common::{Env, T, mapping};
use dr_syncer_core::api::SyncPhase;
use dr_syncer_testenv::{apply_yaml, create_namespace, wait_for, workspace_root};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::ConfigMap};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

const APP: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {LOG_LEVEL: info}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: local-only, labels: {dr.example.com/skip: "true"}}
data: {node: prod-1}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "registry.prod.example/shop/web:1.4"}]}
"#;

fn image(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mappings_run_the_plugins_they_name() {
    let env = Env::start("plugins").await;
    let src = create_namespace(&env.prod.client(), "shop").await.unwrap();
    apply_yaml(&env.prod.client(), Some(&src), APP).await.unwrap();
    let dst = format!("{src}-dr");
    let dir = workspace_root().join("examples/plugins").display().to_string();
    let op = env.operator("dr-syncer-operator", &["--plugin-dir", &dir]).await;
    env.apply(&mapping(
        "mirror",
        &format!(
            "  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  destinationNamespace: {dst}\n  \
             replicationMode: Continuous\n  resourceTypes: [configmaps, deployments]\n  prune: true\n  \
             transformPlugins:\n  - name: registry-mirror\n    extras: {{from: registry.prod.example/, to: mirror.dr.example/}}\n  \
             - name: skip-by-label"
        ),
    ))
    .await;
    env.wait_status("mirror", "first sync", |s| s.phase == Some(SyncPhase::Completed))
        .await;
    let dr_deploys: Api<Deployment> = Api::namespaced(env.dr.client(), &dst);
    let dr_cms: Api<ConfigMap> = Api::namespaced(env.dr.client(), &dst);
    assert_eq!(
        image(&dr_deploys.get("web").await.unwrap()),
        "mirror.dr.example/shop/web:1.4"
    );
    assert!(dr_cms.get_opt("settings").await.unwrap().is_some());
    assert!(
        dr_cms.get_opt("local-only").await.unwrap().is_none(),
        "whited out"
    );

    // A watched change goes through the plugins too.
    Api::<Deployment>::namespaced(env.prod.client(), &src)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "registry.prod.example/shop/web:1.5"}
            ]}}}})),
        )
        .await
        .unwrap();
    wait_for("the new image rewritten on the DR side", T, || async {
        Ok((image(&dr_deploys.get("web").await?) == "mirror.dr.example/shop/web:1.5").then_some(()))
    })
    .await
    .unwrap();
    // A white-out of an object copied before is, with prune, a deletion.
    Api::<ConfigMap>::namespaced(env.prod.client(), &src)
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"dr.example.com/skip": "true"}}})),
        )
        .await
        .unwrap();
    wait_for("the whited-out copy removed", T, || async {
        Ok(dr_cms.get_opt("settings").await?.is_none().then_some(()))
    })
    .await
    .unwrap();
    assert!(
        Api::<ConfigMap>::namespaced(env.prod.client(), &src)
            .get_opt("settings")
            .await
            .unwrap()
            .is_some(),
        "production keeps it"
    );

    // A plugin that is not in the directory: nothing synced, the status and an Event say which.
    env.apply(&mapping(
        "broken",
        &format!(
            "  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  destinationNamespace: {src}-broken\n  \
             replicationMode: Scheduled\n  resourceTypes: [configmaps]\n  transformPlugins:\n  - name: no-such-plugin"
        ),
    ))
    .await;
    let nm = env
        .wait_status("broken", "the missing plugin reported", |s| {
            common::condition(s, "Ready")
                .is_some_and(|(status, _, message)| status == "False" && message.contains("no-such-plugin"))
        })
        .await;
    let (_, reason, message) = common::condition(nm.status.as_ref().unwrap(), "Ready").unwrap();
    assert!(message.contains("no such file"), "{reason}: {message}");
    let events = env.wait_event("broken", "PluginNotFound").await;
    assert!(
        events.iter().any(|(_, m)| m.contains("no-such-plugin")),
        "{events:?}"
    );
    assert!(
        Api::<ConfigMap>::namespaced(env.dr.client(), &format!("{src}-broken"))
            .list(&Default::default())
            .await
            .map(|l| l.items.is_empty())
            .unwrap_or(true),
        "nothing synced"
    );
    // The reconcile error metric names the real kind (not the finalizer machinery it ran in).
    let counted = r#"dr_syncer_reconcile_errors_total{controller="namespacemapping",kind="PluginNotFound"}"#;
    let found = wait_for("the error counted with its kind", T, || async {
        Ok(op.metrics().await.contains(counted).then_some(()))
    })
    .await;
    assert!(found.is_ok(), "{}", op.metrics().await);
}
