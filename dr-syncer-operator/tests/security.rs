//! The security suite (issue 21): each test is an attack from the threat model in docs/security.md, made
//! against the real operator on the test control planes, and passes when the attack is refused.
//! `scripts/test.sh` prints `security: N attacks, N refused` from nextest's report.

mod common;

use std::time::Duration;

use common::{Env, NS, T, condition, mapping};
use dr_syncer_core::api::RemoteCluster;
use dr_syncer_testenv::{apply_yaml, create_namespace, wait_for};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

/// The RemoteCluster's condition `ctype` once it is False: (reason, message).
async fn refused(env: &Env, rc: &str, ctype: &str) -> (String, String) {
    let rcs: Api<RemoteCluster> = Api::namespaced(env.controller.client(), NS);
    wait_for(&format!("{rc}: {ctype} False"), T, || async {
        let rc = rcs.get(rc).await?;
        Ok(rc
            .status
            .and_then(|s| s.conditions)
            .into_iter()
            .flatten()
            .find(|c| c.type_ == ctype && c.status == "False" && c.reason != "NotChecked")
            .map(|c| (c.reason, c.message)))
    })
    .await
    .unwrap()
}

/// A kubeconfig Secret `name` (key `kubeconfig`) in namespace `ns` of the controller cluster, and a
/// RemoteCluster `name` in [`NS`] using it.
async fn remote_cluster_with(env: &Env, name: &str, ns: &str, kubeconfig: &str) {
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "stringData": {"kubeconfig": kubeconfig}
    });
    apply_yaml(
        &env.controller.client(),
        Some(ns),
        &serde_json::to_string(&secret).unwrap(),
    )
    .await
    .unwrap();
    env.apply(&format!(
        "apiVersion: dr-syncer.io/v1alpha1\nkind: RemoteCluster\nmetadata: {{name: {name}, namespace: {NS}}}\nspec: {{kubeconfigSecretRef: {{name: {name}, namespace: {ns}}}}}\n"
    ))
    .await;
}

/// The prod identity's kubeconfig (JSON, which is YAML) with its user entry replaced by `user`.
fn kubeconfig_with_user(env: &Env, user: serde_json::Value) -> String {
    let mut kc = kube::config::Kubeconfig::read_from(&env.prod_id.kubeconfig).unwrap();
    kc.auth_infos[0].auth_info = Some(serde_json::from_value(user).unwrap());
    serde_json::to_string(&kc).unwrap()
}

/// A kubeconfig Secret whose exec plugin would run a command as the operator: refused before anything
/// runs (the marker file is never created), and the condition names the finding, not the command.
#[tokio::test(flavor = "multi_thread")]
async fn an_exec_plugin_in_a_kubeconfig_secret_never_runs() {
    let env = Env::start("sec-exec").await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let kubeconfig = kubeconfig_with_user(
        &env,
        json!({"exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "/bin/sh",
            "args": ["-c", format!("touch {}", marker.display())],
            "interactiveMode": "Never"
        }}),
    );
    remote_cluster_with(&env, "exec", NS, &kubeconfig).await;
    let _op = env.operator("dr-syncer-operator", &[]).await;
    let (reason, message) = refused(&env, "exec", "KubeconfigValid").await;
    assert_eq!(reason, "InvalidKubeconfig");
    assert!(message.contains("users[0]: an exec plugin"), "{message}");
    assert!(message.contains("--allow-kubeconfig-exec"), "{message}");
    assert!(
        !message.contains("touch") && !message.contains("/bin/sh"),
        "{message}"
    );
    // Checked again meanwhile (every 30 s when unhealthy; the first check is what would have run it).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!marker.exists(), "the exec plugin ran");
}

/// A kubeconfig whose `tokenFile` names the operator's own files (to send them to a server of the
/// author's choosing): refused before the client is built, the path never shown.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_file_in_a_kubeconfig_secret_is_not_read() {
    let env = Env::start("sec-tokenfile").await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("operator-token");
    std::fs::write(&token, "stolen-operator-token").unwrap();
    let kubeconfig = kubeconfig_with_user(&env, json!({"tokenFile": token.display().to_string()}));
    remote_cluster_with(&env, "tokenfile", NS, &kubeconfig).await;
    let _op = env.operator("dr-syncer-operator", &[]).await;
    let (reason, message) = refused(&env, "tokenfile", "KubeconfigValid").await;
    assert_eq!(reason, "InvalidKubeconfig");
    assert!(
        message.contains("users[0]: a token file (tokenFile)"),
        "{message}"
    );
    assert!(!message.contains("operator-token"), "{message}");
}

/// A RemoteCluster pointed at a Secret that is not a kubeconfig (a database password in its own
/// namespace): the condition says what is wrong and never shows the bytes.
#[tokio::test(flavor = "multi_thread")]
async fn a_secret_that_is_no_kubeconfig_is_never_quoted() {
    let env = Env::start("sec-quote").await;
    for (name, bytes) in [
        ("scalar", "hunter2-db-password"),
        ("yaml", "password: hunter2-db-password\nuser: admin\n"),
        ("broken", "{clusters: [hunter2-db-password"),
    ] {
        remote_cluster_with(&env, name, NS, bytes).await;
    }
    let _op = env.operator("dr-syncer-operator", &[]).await;
    for name in ["scalar", "yaml", "broken"] {
        let (reason, message) = refused(&env, name, "KubeconfigValid").await;
        assert_eq!(reason, "InvalidKubeconfig", "{name}: {message}");
        assert!(!message.contains("hunter2"), "{name}: {message}");
    }
    for name in ["scalar", "yaml", "broken"] {
        // (The Event follows the status write: waited for, not read at once.)
        let events = env
            .wait_events(name, "the refusal's Event", |e| !e.is_empty())
            .await;
        assert!(!events.is_empty(), "{name}: the refusal is recorded as an Event");
        for (_, message) in &events {
            assert!(!message.contains("hunter2"), "{message}");
        }
    }
}

/// A RemoteCluster in the operator's namespace pointed at another namespace's Secret (`team-b/db`):
/// refused before any read (the Secret does not even exist, and the reason is not "not found"), with a
/// condition and an Event.
#[tokio::test(flavor = "multi_thread")]
async fn a_secret_in_another_namespace_is_never_read() {
    let env = Env::start("sec-xns-secret").await;
    let team_b = create_namespace(&env.controller.client(), "team-b")
        .await
        .unwrap();
    env.apply(&format!(
        "apiVersion: dr-syncer.io/v1alpha1\nkind: RemoteCluster\nmetadata: {{name: stolen, namespace: {NS}}}\nspec: {{kubeconfigSecretRef: {{name: db, namespace: {team_b}, key: password}}}}\n"
    ))
    .await;
    let _op = env.operator("dr-syncer-operator", &[]).await;
    let (reason, message) = refused(&env, "stolen", "KubeconfigAvailable").await;
    assert_eq!(reason, "ReferenceNotAllowed", "{message}");
    assert!(message.contains(&format!("Secret {team_b}/db")), "{message}");
    // (The Event follows the status write: waited for, not read at once.)
    let events = env.wait_event("stolen", "ReferenceNotAllowed").await;
    assert!(
        events.iter().any(|(r, _)| r == "ReferenceNotAllowed"),
        "{events:?}"
    );
}

/// A NamespaceMapping in a team's namespace referencing a ClusterMapping in another team's namespace:
/// refused (`Synced` False, ReferenceNotAllowed) and recorded as an Event.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_mapping_in_another_namespace_is_refused() {
    let env = Env::start("sec-xns-cm").await;
    let team_a = create_namespace(&env.controller.client(), "team-a")
        .await
        .unwrap();
    let team_b = create_namespace(&env.controller.client(), "team-b")
        .await
        .unwrap();
    env.apply(&format!(
        "apiVersion: dr-syncer.io/v1alpha1\nkind: ClusterMapping\nmetadata: {{name: platform, namespace: {team_b}}}\nspec: {{sourceCluster: prod, targetCluster: dr}}\n---\napiVersion: dr-syncer.io/v1alpha1\nkind: NamespaceMapping\nmetadata: {{name: grab, namespace: {team_a}}}\nspec:\n  clusterMappingRef: {{name: platform, namespace: {team_b}}}\n  sourceNamespace: shop\n"
    ))
    .await;
    let _op = env.operator("dr-syncer-operator", &[]).await;
    let nms: Api<dr_syncer_core::api::NamespaceMapping> = Api::namespaced(env.controller.client(), &team_a);
    let (reason, message) = wait_for("Synced False", T, || async {
        let nm = nms.get("grab").await?;
        Ok(nm
            .status
            .as_ref()
            .and_then(|s| condition(s, "Synced"))
            .filter(|c| c.0 == "False")
            .map(|c| (c.1, c.2)))
    })
    .await
    .unwrap();
    assert_eq!(reason, "ReferenceNotAllowed", "{message}");
    assert!(
        message.contains(&format!("ClusterMapping {team_b}/platform")),
        "{message}"
    );
    let events = common::events_for(&env.controller.client(), &team_a, "grab").await;
    assert!(
        events.iter().any(|(r, _)| r == "ReferenceNotAllowed"),
        "{events:?}"
    );
}

/// A mapping of `kube-system` (named, or matched by a selector with an empty suffix): refused with a
/// condition, and nothing is written into the DR cluster's `kube-system`.
#[tokio::test(flavor = "multi_thread")]
async fn a_mapping_of_kube_system_is_refused() {
    let env = Env::start("sec-kube-system").await;
    Api::<Namespace>::all(env.prod.client())
        .patch(
            "kube-system",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"dr": "yes"}}})),
        )
        .await
        .unwrap();
    let shop = create_namespace(&env.prod.client(), "shop").await.unwrap();
    Api::<Namespace>::all(env.prod.client())
        .patch(
            &shop,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"dr": "yes"}}})),
        )
        .await
        .unwrap();
    env.apply(&mapping(
        "named",
        "  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: kube-system\n  resourceTypes: [configmaps]",
    ))
    .await;
    env.apply(&mapping(
        "into",
        &format!("  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {shop}\n  destinationNamespace: kube-system\n  resourceTypes: [configmaps]"),
    ))
    .await;
    env.apply(&mapping(
        "selected",
        "  sourceCluster: prod\n  destinationCluster: dr\n  namespaceSelector:\n    labelSelector: {matchLabels: {dr: \"yes\"}}\n  resourceTypes: [configmaps]",
    ))
    .await;
    let before = env.dr.requests("dr-syncer-operator").await.unwrap();
    let _op = env.operator("dr-syncer-operator", &[]).await;
    for (name, role) in [
        ("named", "source"),
        ("into", "destination"),
        ("selected", "source"),
    ] {
        let nm = env
            .wait_status(name, "refused", |s| {
                condition(s, "Synced").is_some_and(|c| c.0 == "False" && c.1 == "ProtectedNamespace")
            })
            .await;
        let message = condition(nm.status.as_ref().unwrap(), "Synced").unwrap().2;
        assert!(
            message.contains(&format!("{role} namespace kube-system is protected")),
            "{name}: {message}"
        );
    }
    let writes = env
        .dr
        .requests("dr-syncer-operator")
        .await
        .unwrap()
        .since(&before)
        .stored_writes();
    assert_eq!(writes, 0, "nothing written to the DR cluster");
}

/// Objects on the DR side that dr-syncer did not put there (a DR-local ConfigMap with the same name as
/// production's) are left alone and reported as skipped; the mapping's own objects still sync; with
/// `adoptExisting: true` the object is taken over.
#[tokio::test(flavor = "multi_thread")]
async fn an_unmanaged_dr_object_is_left_alone() {
    use k8s_openapi::api::core::v1::ConfigMap;

    let env = Env::start("sec-unmanaged").await;
    let src = create_namespace(&env.prod.client(), "shop").await.unwrap();
    apply_yaml(
        &env.prod.client(),
        Some(&src),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {site: production}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {v: '1'}\n",
    )
    .await
    .unwrap();
    // The DR namespace exists already, with the DR site's own `settings`.
    apply_yaml(
        &env.dr.client(),
        None,
        &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {src}}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: settings, namespace: {src}}}\ndata: {{site: dr-local}}\n"),
    )
    .await
    .unwrap();
    let _op = env.operator("dr-syncer-operator", &[]).await;
    env.apply(&mapping(
        "shop",
        &format!("  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  resourceTypes: [configmaps]\n  prune: true"),
    ))
    .await;
    let nm = env
        .wait_status("shop", "synced", |s| {
            s.phase == Some(dr_syncer_core::api::SyncPhase::Completed)
        })
        .await;
    let dr: Api<ConfigMap> = Api::namespaced(env.dr.client(), &src);
    let data = |cm: ConfigMap| cm.data.unwrap_or_default();
    assert_eq!(
        data(dr.get("settings").await.unwrap())["site"],
        "dr-local",
        "left alone"
    );
    assert_eq!(
        data(dr.get("app").await.unwrap())["v"],
        "1",
        "its own objects sync"
    );
    assert_eq!(
        nm.status.unwrap().sync_stats.unwrap().failed_syncs,
        0,
        "skipped, not failed"
    );
    let events = env.wait_event("shop", "ObjectNotManaged").await;
    assert!(
        events
            .iter()
            .any(|(_, m)| m.contains(&format!("ConfigMap/{src}/settings"))),
        "{events:?}"
    );

    // Adopted on request.
    env.apply(&mapping(
        "shop",
        &format!("  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  resourceTypes: [configmaps]\n  prune: true\n  adoptExisting: true"),
    ))
    .await;
    wait_for("adopted", T, || async {
        Ok((data(dr.get("settings").await?)["site"] == "production").then_some(()))
    })
    .await
    .unwrap();
}

/// Production-controlled knobs: a standalone Job is copied suspended (it ran on production; it must not
/// run again on DR), a scale-override label above production's own replicas is capped there, and
/// dr-syncer's bookkeeping set by hand on a running production object is not believed.
#[tokio::test(flavor = "multi_thread")]
async fn production_cannot_make_the_dr_site_run_more() {
    use k8s_openapi::api::{apps::v1::Deployment, batch::v1::Job};

    let env = Env::start("sec-knobs").await;
    let src = create_namespace(&env.prod.client(), "shop").await.unwrap();
    apply_yaml(
        &env.prod.client(),
        Some(&src),
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    spec: {restartPolicy: Never, containers: [{name: m, image: busybox}]}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {dr-syncer.io/scale-override: "100"}
  annotations: {dr-syncer.io/original-replicas: "50", dr-syncer.io/immutable-fields: "spec.selector"}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
"#,
    )
    .await
    .unwrap();
    let _op = env.operator("dr-syncer-operator", &[]).await;
    env.apply(&mapping(
        "shop",
        &format!("  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  resourceTypes: [jobs, deployments]"),
    ))
    .await;
    let nm = env
        .wait_status("shop", "synced", |s| {
            s.phase == Some(dr_syncer_core::api::SyncPhase::Completed)
        })
        .await;
    assert_eq!(nm.status.unwrap().sync_stats.unwrap().failed_syncs, 0);
    let job = Api::<Job>::namespaced(env.dr.client(), &src)
        .get("migrate")
        .await
        .unwrap();
    assert_eq!(
        job.spec.unwrap().suspend,
        Some(true),
        "the Job is copied suspended"
    );
    let web = Api::<Deployment>::namespaced(env.dr.client(), &src)
        .get("web")
        .await
        .unwrap();
    assert_eq!(
        web.spec.as_ref().unwrap().replicas,
        Some(2),
        "capped at production's 2"
    );
    let ann = web.metadata.annotations.unwrap_or_default();
    assert_eq!(
        ann.get("dr-syncer.io/original-replicas").map(String::as_str),
        Some("2"),
        "production's own count recorded, not the 50 set by hand"
    );
    assert!(!ann.contains_key("dr-syncer.io/immutable-fields"), "{ann:?}");
}

/// `curl -k` against the operator's metrics endpoint with `token`: (HTTP status, body). Status 0 when no
/// HTTPS answer came (e.g. plain HTTP).
fn curl_metrics(port: u16, token: Option<&str>, scheme: &str) -> (u16, String) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sk", "--max-time", "10", "-w", "\n%{http_code}"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd
        .arg(format!("{scheme}://127.0.0.1:{port}/metrics"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// `--metrics-secure`: `/metrics` only over TLS, and only to a token the controller cluster authenticates
/// (TokenReview) whose identity may `get` the non-resource URL `/metrics` (SubjectAccessReview): no token
/// or an unknown one gets 401, another identity 403, plain HTTP nothing; the probes stay plain.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_refused_without_an_authorized_token() {
    let env = Env::start_with("sec-metrics", |b| b.rbac(true)).await;
    apply_yaml(
        &env.controller.client(),
        None,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: metrics-reader}\nrules: [{nonResourceURLs: [/metrics], verbs: [get]}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: prometheus-metrics}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: metrics-reader}\nsubjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: prometheus}]\n",
    )
    .await
    .unwrap();
    let reader = env.controller.mint_token("prometheus", &[]).unwrap();
    let intruder = env.controller.mint_token("intruder", &[]).unwrap();
    let op = env.operator("dr-syncer-operator", &["--metrics-secure"]).await;
    let port = op.metrics_port;
    let (code, body) = wait_for("the secure endpoint", T, || async {
        let r = curl_metrics(port, Some(&reader), "https");
        Ok((r.0 == 200).then_some(r))
    })
    .await
    .unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("dr_syncer_leader"), "{body}");
    assert_eq!(curl_metrics(port, None, "https").0, 401, "no token");
    assert_eq!(
        curl_metrics(port, Some("not-a-token"), "https").0,
        401,
        "unknown token"
    );
    let (code, body) = curl_metrics(port, Some(&intruder), "https");
    assert_eq!(code, 403, "{body}");
    assert!(!body.contains("dr_syncer_"), "{body}");
    assert_ne!(curl_metrics(port, Some(&reader), "http").0, 200, "no plain HTTP");
    // The probes stay plain.
    assert_eq!(op.get(op.probe_port, "/healthz").await.map(|r| r.0), Some(200));
}
