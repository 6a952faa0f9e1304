//! Three test control planes with the CRDs, RemoteClusters `prod` and `dr`, and the operator's release
//! binary, shared by `operator.rs` and `shards.rs` (`#[path]` module: not a bench target of its own).

#![allow(dead_code)]

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use dr_syncer_testenv::{ControlPlane, Identity, apply_yaml, workspace_root};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;

pub(crate) const NS: &str = "dr-syncer";

pub(crate) struct Env {
    pub(crate) ctl: ControlPlane,
    pub(crate) prod: ControlPlane,
    pub(crate) dr: ControlPlane,
    pub(crate) op_id: Identity,
    pub(crate) prod_id: Identity,
    pub(crate) dr_id: Identity,
}

pub(crate) fn operator_binary() -> PathBuf {
    let root = workspace_root();
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--release", "-p", "dr-syncer-operator"])
        .current_dir(&root)
        .status()
        .expect("cargo build");
    assert!(status.success(), "building the operator failed");
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("release/dr-syncer-operator")
}

pub(crate) async fn secret(client: &Client, name: &str, id: &Identity) {
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NS},
        "stringData": {"kubeconfig": std::fs::read_to_string(&id.kubeconfig).unwrap()},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

pub(crate) async fn env() -> Env {
    let [ctl, prod, dr] = ControlPlane::start_many(["bench-ctl", "bench-prod", "bench-dr"])
        .await
        .unwrap();
    let c = ctl.client();
    apply_yaml(&c, None, &dr_syncer_core::api::crds_yaml().unwrap())
        .await
        .unwrap();
    apply_yaml(
        &c,
        None,
        &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"),
    )
    .await
    .unwrap();
    let prod_id = prod.identity("operator").await.unwrap();
    let dr_id = dr.identity("operator").await.unwrap();
    secret(&c, "prod-kubeconfig", &prod_id).await;
    secret(&c, "dr-kubeconfig", &dr_id).await;
    for _ in 0..100 {
        if apply_yaml(
            &c,
            Some(NS),
            &format!(
                "apiVersion: dr-syncer.io/v1alpha1\nkind: RemoteCluster\nmetadata: {{name: prod}}\nspec: {{kubeconfigSecretRef: {{name: prod-kubeconfig, namespace: {NS}}}}}\n---\napiVersion: dr-syncer.io/v1alpha1\nkind: RemoteCluster\nmetadata: {{name: dr}}\nspec: {{kubeconfigSecretRef: {{name: dr-kubeconfig, namespace: {NS}}}}}\n"
            ),
        )
        .await
        .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let op_id = ctl.identity("operator").await.unwrap();
    Env {
        ctl,
        prod,
        dr,
        op_id,
        prod_id,
        dr_id,
    }
}

pub(crate) struct Operator(pub(crate) Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn start_operator(bin: &PathBuf, env: &Env) -> Operator {
    start_operator_as(bin, &env.op_id, &[])
}

/// The operator as `id` on the controller cluster (its Leases and writes are its own), with `extra` flags.
pub(crate) fn start_operator_as(bin: &PathBuf, id: &Identity, extra: &[&str]) -> Operator {
    Operator(
        Command::new(bin)
            .env("KUBECONFIG", &id.kubeconfig)
            .env("POD_NAMESPACE", NS)
            .args([
                "--metrics-bind-address",
                "0",
                "--health-probe-bind-address",
                "0",
                "--log-level",
                "warn",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the operator"),
    )
}

pub(crate) fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

/// The process's peak resident memory so far.
pub(crate) fn peak_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:")
}

pub(crate) fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

pub(crate) async fn mapping(env: &Env, name: &str, body: &str) {
    apply_yaml(
        &env.ctl.client(),
        Some(NS),
        &format!(
            "apiVersion: dr-syncer.io/v1alpha1\nkind: NamespaceMapping\nmetadata: {{name: {name}}}\nspec:\n  sourceCluster: prod\n  destinationCluster: dr\n  resourceTypes: [configmaps]\n{body}\n"
        ),
    )
    .await
    .unwrap();
}

pub(crate) async fn fill(client: &Client, ns: &str, n: usize) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let cm: ConfigMap = serde_json::from_value(json!({
                    "metadata": {"name": format!("cm-{i:05}")},
                    "data": {"v": "0", "payload": "x".repeat(200)},
                }))
                .unwrap();
                api.create(&PostParams::default(), &cm).await.map(|_| ())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
}

pub(crate) async fn count(client: &Client, ns: &str) -> usize {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items.len())
        .unwrap_or(0)
}

pub(crate) async fn wait_count(client: &Client, ns: &str, n: usize, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if count(client, ns).await >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

pub(crate) fn line(name: &str, target: &str, measured: String, pass: bool) {
    println!(
        "{name:<22} {measured:<34} {target:<26} {}",
        if pass { "PASS" } else { "MISS" }
    );
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

pub(crate) fn now_micros() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

/// Arrivals on the DR side: for each ConfigMap `api` (with `config`) sees whose `data.v` is a write time
/// (microseconds) at or after `since`, the seconds from that write to now. Stops with the returned task.
pub(crate) fn arrivals(
    api: Api<ConfigMap>,
    config: watcher::Config,
    since: u128,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::mpsc::UnboundedReceiver<f64>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<f64>();
    let task = tokio::spawn(async move {
        let mut s = watcher(api, config).default_backoff().applied_objects().boxed();
        while let Some(item) = s.next().await {
            let Ok(cm) = item else { continue };
            let now = now_micros();
            if let Some(sent) = cm
                .data
                .and_then(|d| d.get("v").cloned())
                .and_then(|v| v.parse::<u128>().ok())
                && sent >= since
            {
                let _ = tx.send((now.saturating_sub(sent)) as f64 / 1e6);
            }
        }
    });
    (task, rx)
}

/// Run an operator bench: only under `cargo bench`, which passes `--bench` (`cargo test --benches` runs
/// the binary with other flags: then it is only compile-checked), with the release operator built and the
/// three control planes up.
pub(crate) fn run<F, Fut>(bench: F)
where
    F: FnOnce(PathBuf, Env) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let bin = operator_binary();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let env = env().await;
        bench(bin, env).await;
    });
}

/// The NamespaceMappings of the benches' namespace.
pub(crate) fn nm_api(env: &Env) -> Api<dr_syncer_core::api::NamespaceMapping> {
    Api::namespaced(env.ctl.client(), NS)
}

/// Delete every mapping (an operator still runs, to release them) and wait until they are gone.
pub(crate) async fn delete_mappings(env: &Env) {
    let api = nm_api(env);
    api.delete_collection(&kube::api::DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
    let start = Instant::now();
    while !api.list(&ListParams::default()).await.unwrap().items.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the mappings were not released within 300 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
