//! kubectl (the build matching the server) works against the control plane, and the optional workload
//! simulation makes rollout waits meaningful.

use std::{io::Write as _, process::Stdio, time::Duration};

use dr_syncer_testenv::{ControlPlane, init_tracing, wait_for};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

fn run(cp: &ControlPlane, args: &[&str], stdin: Option<&str>) -> String {
    let mut cmd = cp.kubectl().unwrap();
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl {} failed: {}{}",
        args.join(" "),
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.25"}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: default}
data: {mode: prod}
"#;

#[tokio::test]
async fn kubectl_verbs_work() {
    init_tracing();
    let cp = ControlPlane::builder("kubectl")
        .simulate_workloads(true)
        .start()
        .await
        .unwrap();

    let version = run(&cp, &["version", "-o", "json"], None);
    let v: serde_json::Value = serde_json::from_str(&version).unwrap();
    assert_eq!(v["serverVersion"]["major"], "1", "{v}");

    assert!(run(&cp, &["apply", "-f", "-"], Some(APP)).contains("deployment.apps/web created"));
    assert!(run(&cp, &["apply", "-f", "-"], Some(APP)).contains("unchanged"));
    run(
        &cp,
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "ops",
            "--force-conflicts",
            "-f",
            "-",
        ],
        Some(APP),
    );
    let got = run(
        &cp,
        &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"],
        None,
    );
    assert_eq!(got, "2");
    run(&cp, &["annotate", "configmap", "settings", "team=dr"], None);
    run(
        &cp,
        &[
            "patch",
            "configmap",
            "settings",
            "--type=merge",
            "-p",
            r#"{"data":{"mode":"dr"}}"#,
        ],
        None,
    );
    assert_eq!(
        run(
            &cp,
            &[
                "get",
                "cm",
                "settings",
                "-o",
                "jsonpath={.data.mode}/{.metadata.annotations.team}"
            ],
            None
        ),
        "dr/dr"
    );
    run(&cp, &["scale", "deployment", "web", "--replicas=3"], None);
    run(
        &cp,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
        None,
    );
    run(
        &cp,
        &[
            "wait",
            "--for=condition=Available",
            "deployment/web",
            "--timeout=60s",
        ],
        None,
    );
    assert_eq!(
        run(
            &cp,
            &["get", "deploy", "web", "-o", "jsonpath={.status.readyReplicas}"],
            None
        ),
        "3"
    );
    let explained = run(&cp, &["explain", "deployment.spec.replicas"], None);
    assert!(explained.contains("replicas"), "{explained}");
    let table = run(&cp, &["get", "deployments"], None);
    assert!(table.contains("READY") && table.contains("3/3"), "{table}");
    run(&cp, &["delete", "configmap", "settings"], None);
    let all = run(&cp, &["get", "all", "-o", "name"], None);
    assert!(all.contains("deployment.apps/web"), "{all}");
}

#[tokio::test]
async fn workload_simulation_reports_rollouts() {
    init_tracing();
    let cp = ControlPlane::builder("simulate")
        .simulate_workloads(true)
        .start()
        .await
        .unwrap();
    let client = cp.client();
    dr_syncer_testenv::apply_yaml(&client, None, APP).await.unwrap();
    dr_syncer_testenv::apply_yaml(
        &client,
        None,
        "apiVersion: v1\nkind: Node\nmetadata: {name: node-a, labels: {pool: a}}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: node-b, labels: {pool: b}}\n---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent, namespace: default}\nspec:\n  selector: {matchLabels: {app: agent}}\n  template:\n    metadata: {labels: {app: agent}}\n    spec:\n      nodeSelector: {pool: a}\n      containers: [{name: agent, image: \"agent:1\"}]\n",
    )
    .await
    .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    wait_for("deployment rolled out", Duration::from_secs(30), || {
        let d = deployments.clone();
        async move {
            let dep = d.get("web").await?;
            let s = dep.status.unwrap_or_default();
            Ok(
                (s.ready_replicas == Some(4) && s.observed_generation == dep.metadata.generation)
                    .then_some(()),
            )
        }
    })
    .await
    .unwrap();
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    wait_for(
        "daemonset scheduled on matching nodes",
        Duration::from_secs(30),
        || {
            let d = daemonsets.clone();
            async move {
                let s = d.get("agent").await?.status.unwrap_or_default();
                Ok((s.desired_number_scheduled == 1 && s.number_ready == 1).then_some(()))
            }
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn without_simulation_nothing_touches_workload_status() {
    init_tracing();
    let cp = ControlPlane::start("no-simulate").await.unwrap();
    dr_syncer_testenv::apply_yaml(&cp.client(), None, APP)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dep = Api::<Deployment>::namespaced(cp.client(), "default")
        .get("web")
        .await
        .unwrap();
    assert!(dep.status.and_then(|s| s.ready_replicas).is_none());
}
