//! `--migrate-pvc-data` and `--reverse-migrate-pvc-data` end to end: two test control planes whose nodes
//! are simulated in network namespaces (the test plays the kubelet, the scheduler and the DaemonSet
//! controller: `dr_syncer_testenv::kubelet`), the real agent binary serving with OpenSSH's sshd and
//! copying with rsync. The CLI finds the agents through pod status only.
//!
//! Stage copies the data; cutover copies while the source runs, quiets the source, waits until its
//! writer's pod is gone (it writes its last lines while terminating), copies the final delta, then
//! activates the DR side (the order is observed through watches; the DR side holds every line); failback
//! copies the DR side's changes back through agents deployed on the DR cluster and a mount pod there.

use std::{
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use dr_syncer_testenv::{
    ControlPlane, agent_path, apply_yaml, init_tracing,
    kubelet::{Kubelet, SimNetwork},
    read_file, wait_for, write_file,
};
use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment},
    core::v1::Pod,
};
use kube::{
    Api,
    runtime::{WatchStreamExt, watcher},
};

const BIN: &str = env!("CARGO_BIN_EXE_dr-syncer-cli");

/// The application: a Deployment whose pod appends numbered lines to its volume until it is stopped, and
/// on SIGTERM writes eighty more over about eight seconds before it exits (as a database flushes on
/// shutdown). The simulated kubelets run it (`app` is `/bin/sh`) on the nodes labelled `pool: app` (on
/// production the first node, where a mount pod would land too: a copy that did not wait for the pod to
/// go would start at once and miss the last lines).
const APP: &str = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeSelector: {pool: app}
      terminationGracePeriodSeconds: 14
      containers:
      - name: web
        image: app
        args: ["-c", "trap 'j=0; while [ $j -lt 80 ]; do j=$((j+1)); echo term $j >> /srv/journal; sleep 0.1; done; exit 0' TERM; i=0; while true; do i=$((i+1)); echo line $i >> /srv/journal; sleep 0.05; done"]
        volumeMounts: [{name: data, mountPath: /srv}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
"#;

struct Run {
    code: i32,
    report: serde_json::Value,
    stderr: String,
}

fn cli(src: &ControlPlane, dst: &ControlPlane, args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .arg("--source-kubeconfig")
        .arg(src.kubeconfig())
        .arg("--dest-kubeconfig")
        .arg(dst.kubeconfig())
        .args([
            "--source-namespace",
            "shop",
            "--resource-types",
            "persistentvolumeclaims,deployments",
            "--output",
            "json",
            "--yes",
            "--data-wait-timeout",
            "2m",
        ])
        .args(args)
        .output()
        .expect("run dr-syncer-cli");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Run {
        code: out.status.code().unwrap_or(-1),
        report: serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every container log of the simulated pods of `cp` (for failure messages).
fn logs(cp: &ControlPlane) -> String {
    cp.pod_logs_tail(30)
}

/// Assert that no object labelled with a CLI run (`dr-syncer.io/cli-run`) is left on `clusters`: key
/// Secrets, grants, agents, locks, and (once they have terminated, as after any DaemonSet or pod
/// deletion) pods.
async fn nothing_of_a_run_left(clusters: &[&ControlPlane]) {
    let lp = kube::api::ListParams::default().labels("dr-syncer.io/cli-run");
    for cp in clusters {
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::all(cp.client());
        assert!(
            secrets.list(&lp).await.unwrap().items.is_empty(),
            "key Secrets left"
        );
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::all(cp.client());
        assert!(cms.list(&lp).await.unwrap().items.is_empty(), "grants left");
        let dss: Api<DaemonSet> = Api::all(cp.client());
        assert!(dss.list(&lp).await.unwrap().items.is_empty(), "agents left");
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::all(cp.client());
        assert!(leases.list(&lp).await.unwrap().items.is_empty(), "locks left");
        let pods: Api<Pod> = Api::all(cp.client());
        wait_for("the run's pods to go", Duration::from_secs(30), || async {
            Ok(pods.list(&lp).await?.items.is_empty().then_some(()))
        })
        .await
        .unwrap();
    }
}

/// Assert that the report's `steps` contain `expected` in this order (other steps may come between).
fn assert_steps_in_order(report: &serde_json::Value, expected: &[&str]) {
    let order: Vec<String> = serde_json::from_value(report["steps"].clone()).unwrap_or_default();
    let at = |s: &str| {
        order
            .iter()
            .position(|x| x == s)
            .unwrap_or_else(|| panic!("{s} missing: {order:?}"))
    };
    for pair in expected.windows(2) {
        assert!(
            at(pair[0]) < at(pair[1]),
            "{} before {}: {order:?}",
            pair[0],
            pair[1]
        );
    }
}

/// Record, in the order they happen, the source Deployment's scale, the DR Deployment's scale and the
/// mover pods created in the DR namespace.
fn observe(src: &ControlPlane, dst: &ControlPlane) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let deployments = |client: kube::Client, label: &'static str| {
        let seen = seen.clone();
        tokio::spawn(async move {
            let api: Api<Deployment> = Api::namespaced(client, "shop");
            let mut last = None;
            let mut stream = watcher(api, watcher::Config::default()).applied_objects().boxed();
            while let Some(Ok(d)) = stream.next().await {
                let replicas = d.spec.and_then(|s| s.replicas);
                if replicas != last {
                    last = replicas;
                    seen.lock()
                        .unwrap()
                        .push(format!("{label} replicas {}", replicas.unwrap_or(-1)));
                }
            }
        });
    };
    deployments(src.client(), "source");
    deployments(dst.client(), "dr");
    let movers = seen.clone();
    let client = dst.client();
    tokio::spawn(async move {
        let api: Api<Pod> = Api::namespaced(client, "shop");
        let mut stream = watcher(api, watcher::Config::default().labels("dr-syncer.io/role=mover"))
            .touched_objects()
            .boxed();
        let mut known = std::collections::BTreeSet::new();
        while let Some(Ok(p)) = stream.next().await {
            if let Some(uid) = p.metadata.uid.clone()
                && known.insert(uid)
            {
                movers.lock().unwrap().push("mover created".into());
            }
        }
    });
    seen
}

// Multi-threaded: the simulated nodes run on the runtime while the CLI runs as a blocking child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_cutover_and_failback_move_the_pvc_data_in_the_right_order() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    init_tracing();
    let agent = agent_path().expect("the agent binary");
    let [src, dst] = ControlPlane::start_many(["cli-data-src", "cli-data-dr"])
        .await
        .unwrap();
    let net = SimNetwork::create().unwrap();
    let src_nodes = Kubelet::builder(&src, &net)
        .node("src-a", "10.93.0.11")
        .node("src-b", "10.93.0.12")
        .node_labels("src-a", &[("pool", "app")])
        .image("dr-syncer-agent", &agent)
        .image("app", "/bin/sh")
        .start()
        .await
        .unwrap();
    let dr_nodes = Kubelet::builder(&dst, &net)
        .node("dr-a", "10.93.0.21")
        .node_labels("dr-a", &[("pool", "app")])
        .image("dr-syncer-agent", &agent)
        .image("app", "/bin/sh")
        .start()
        .await
        .unwrap();
    let client = src.client();
    apply_yaml(
        &client,
        None,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
    )
    .await
    .unwrap();
    apply_yaml(&client, Some("shop"), APP).await.unwrap();
    let src_data = src_nodes
        .bound_volume_dir("shop", "data", Duration::from_secs(30))
        .await
        .unwrap();
    wait_for("the writer to write", Duration::from_secs(30), || async {
        Ok(read_file(&src_data, "journal")
            .is_some_and(|j| j.lines().count() > 3)
            .then_some(()))
    })
    .await
    .unwrap();
    write_file(&src_data, "orders/1.json", "{\"id\":1}");
    write_file(&src_data, "orders/2.json", "{\"id\":2}");
    write_file(&src_data, "old.log", "to be deleted");

    // Stage: objects, then data, read on the node of the pod that mounts the volume.
    // The Go README's form of the flags (`--flag=true`, `--mode=Stage`).
    let run = cli(
        &src,
        &dst,
        &[
            "--mode=Stage",
            "--migrate-pvc-data=true",
            "--include-custom-resources=true",
        ],
    );
    assert_eq!(
        run.code,
        0,
        "{}\n{}\n{}\n{}",
        run.stderr,
        run.report,
        logs(&src),
        logs(&dst)
    );
    let data = &run.report["data"];
    assert_eq!(data.as_array().map(Vec::len), Some(1), "{}", run.report);
    assert_eq!(data[0]["status"], "Synced", "{}", run.report);
    assert_eq!(data[0]["node"], "src-a");
    assert_eq!(data[0]["step"], "stage");
    let dr_data = dr_nodes
        .bound_volume_dir("shop", "data", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        read_file(&dr_data, "orders/2.json").as_deref(),
        Some("{\"id\":2}")
    );
    assert_eq!(read_file(&dr_data, "old.log").as_deref(), Some("to be deleted"));
    // The temporary agents, their keys and the mover are gone: nothing labelled with the run is left.
    let ds: Api<DaemonSet> = Api::namespaced(client.clone(), "dr-syncer-system");
    assert!(ds.list(&Default::default()).await.unwrap().items.is_empty());
    nothing_of_a_run_left(&[&src, &dst]).await;

    // Cutover: the change made after staging arrives; the final delta runs between quieting the
    // source and activating the DR side.
    write_file(&src_data, "orders/3.json", "{\"id\":3}");
    std::fs::remove_file(src_data.join("old.log")).unwrap();
    let seen = observe(&src, &dst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let run = cli(&src, &dst, &["cutover", "--migrate-pvc-data"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.report);
    assert_steps_in_order(
        &run.report,
        &[
            "copy PVC data (pre-copy)",
            "quiet source workloads",
            "mark the source namespace standby",
            "wait until the source workloads' pods are gone",
            "copy PVC data (final delta)",
            "mark the DR namespace active",
            "activate destination workloads",
        ],
    );
    assert_eq!(
        read_file(&dr_data, "orders/3.json").as_deref(),
        Some("{\"id\":3}")
    );
    assert_eq!(read_file(&dr_data, "old.log"), None, "deletions are mirrored");
    // The writer ran until the cutover stopped it, and wrote its last lines while terminating: the final
    // delta waited until its pod was gone, so the DR side holds every line.
    let journal = wait_for(
        "production's writer to finish",
        Duration::from_secs(30),
        || async { Ok(read_file(&src_data, "journal").filter(|j| j.ends_with("term 80\n"))) },
    )
    .await
    .unwrap();
    // (The DR side's own writer, active now, appends after them.)
    let dr_journal = read_file(&dr_data, "journal").unwrap_or_default();
    assert!(
        dr_journal.starts_with(&journal),
        "every line on DR ({} on production, {} on DR)",
        journal.lines().count(),
        dr_journal.lines().count()
    );
    assert!(
        run.report["notes"].as_array().is_some_and(|n| n.iter().any(|n| n
            .as_str()
            .unwrap_or_default()
            .contains("pod(s) of the quieted source"))),
        "the wait is reported: {}",
        run.report
    );
    // Each of the two copies shows its end (copies of changes only, too).
    assert_eq!(
        run.stderr.matches("shop/data → shop/data: 100% (").count(),
        2,
        "{}",
        run.stderr
    );
    // What the clusters saw, in order: pre-copy mover, source quiet, final-delta mover, DR active.
    wait_for(
        "the watches to see the DR side active",
        Duration::from_secs(10),
        || async {
            Ok(seen
                .lock()
                .unwrap()
                .iter()
                .any(|s| s == "dr replicas 1")
                .then_some(()))
        },
    )
    .await
    .unwrap();
    let events: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.as_str() != "source replicas 1" && e.as_str() != "dr replicas 0")
        .cloned()
        .collect();
    assert_eq!(
        events,
        [
            "mover created",
            "source replicas 0",
            "mover created",
            "dr replicas 1"
        ],
        "{:?}",
        seen.lock().unwrap()
    );

    // Failback: a change made on the DR side goes back, read through agents on the DR cluster and a
    // read-only mount pod (no DR pod mounts the volume).
    write_file(&dr_data, "orders/4.json", "{\"id\":4}");
    let run = cli(&src, &dst, &["failback", "--reverse-migrate-pvc-data"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.report);
    let data = &run.report["data"];
    assert_eq!(data[0]["status"], "Synced", "{}", run.report);
    assert_eq!(data[0]["step"], "reverse");
    assert_eq!(data[0]["node"], "dr-a");
    assert_eq!(
        read_file(&src_data, "orders/4.json").as_deref(),
        Some("{\"id\":4}"),
        "{}\n{}\n{}",
        run.report,
        logs(&src),
        logs(&dst)
    );
    assert_steps_in_order(
        &run.report,
        &[
            "quiet destination workloads",
            "copy PVC data (reverse)",
            "activate source workloads",
        ],
    );
    // The mount pod and the DR cluster's temporary agents are gone.
    let pods: Api<Pod> = Api::namespaced(dst.client(), "shop");
    wait_for("the mount pod to go", Duration::from_secs(20), || async {
        Ok(pods
            .list(&Default::default())
            .await?
            .items
            .is_empty()
            .then_some(()))
    })
    .await
    .unwrap();
    let ds: Api<DaemonSet> = Api::namespaced(dst.client(), "dr-syncer-system");
    assert!(ds.list(&Default::default()).await.unwrap().items.is_empty());
}

/// SIGINT while a `--migrate-pvc-data` stage copies: the CLI stops, removes everything its run created
/// (agents, key Secrets, grants, mover pod and its Secret, lock) and exits 130. The operator's agents in
/// the same namespace (on the same nodes) are untouched: the run's agents have a name and a port of their
/// own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_data_copy_leaves_nothing_and_never_touches_the_operators_agents() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    init_tracing();
    let agent = agent_path().expect("the agent binary");
    let [src, dst] = ControlPlane::start_many(["cli-sigint-src", "cli-sigint-dr"])
        .await
        .unwrap();
    let net = SimNetwork::create().unwrap();
    let src_nodes = Kubelet::builder(&src, &net)
        .node("src-a", "10.94.0.11")
        .image("dr-syncer-agent", &agent)
        .start()
        .await
        .unwrap();
    let _dr_nodes = Kubelet::builder(&dst, &net)
        .node("dr-a", "10.94.0.21")
        .image("dr-syncer-agent", &agent)
        .start()
        .await
        .unwrap();
    let client = src.client();
    apply_yaml(
        &client,
        None,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
    )
    .await
    .unwrap();
    apply_yaml(
        &client,
        Some("shop"),
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n",
    )
    .await
    .unwrap();
    // The operator's agents, as the operator deploys them (default name and port).
    let operator_agents = dr_syncer_core::pvc::AgentSettings::default();
    let keys = dr_syncer_core::ops::AgentKeys::generate("prod").unwrap();
    dr_syncer_core::ops::deploy_agents(
        &client,
        &operator_agents,
        "prod",
        &keys.host,
        &dr_syncer_core::keys::AuthorizedClientKeys::new([keys.client.public_key()]),
    )
    .await
    .unwrap();
    let ds: Api<DaemonSet> = Api::namespaced(client.clone(), "dr-syncer-system");
    let before = wait_for("the operator's agent to run", Duration::from_secs(60), || async {
        let d = ds.get("dr-syncer-agent").await?;
        Ok((d.status.as_ref().is_some_and(|s| s.number_ready == 1)).then_some(d))
    })
    .await
    .unwrap();
    // Enough data, slowly enough (bandwidth limit) that the copy is still running when interrupted.
    let src_data = src_nodes
        .bound_volume_dir("shop", "data", Duration::from_secs(30))
        .await
        .unwrap();
    std::fs::write(
        src_data.join("big.bin"),
        dr_syncer_testenv::random_bytes(7, 8 << 20),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mapping = dir.path().join("mapping.yaml");
    std::fs::write(
        &mapping,
        "apiVersion: dr-syncer.io/v1alpha1\nkind: NamespaceMapping\nmetadata: {name: shop}\nspec:\n  sourceNamespace: shop\n  pvcConfig:\n    dataSyncConfig: {bandwidthLimit: 256}\n",
    )
    .unwrap();
    let child = Command::new(BIN)
        .arg("--source-kubeconfig")
        .arg(src.kubeconfig())
        .arg("--dest-kubeconfig")
        .arg(dst.kubeconfig())
        .arg("--mapping")
        .arg(&mapping)
        .args([
            "--resource-types",
            "persistentvolumeclaims",
            "--data-wait-timeout",
            "2m",
            "stage",
            "--migrate-pvc-data",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let movers: Api<Pod> = Api::namespaced(dst.client(), "shop");
    wait_for("the mover to copy", Duration::from_secs(90), || async {
        let lp = kube::api::ListParams::default().labels("dr-syncer.io/role=mover");
        Ok(movers
            .list(&lp)
            .await?
            .items
            .iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .then_some(()))
    })
    .await
    .unwrap();
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(stderr.contains("run the same command again"), "{stderr}");

    // Nothing of the run is left, on either cluster.
    nothing_of_a_run_left(&[&src, &dst]).await;
    // The operator's agents: same object, same grants, still serving.
    let after = ds.get("dr-syncer-agent").await.unwrap();
    assert_eq!(after.metadata.uid, before.metadata.uid);
    assert_eq!(after.metadata.generation, before.metadata.generation);
    assert_eq!(after.status.unwrap().number_ready, 1);
    let grants: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "dr-syncer-system");
    assert!(grants.get_opt("dr-syncer-agent-grants").await.unwrap().is_some());
}
