//! The operator binary against three test control planes: continuous-mode propagation latency, writes
//! of a no-op resync, and memory with 10,000 watched source objects.
//!
//! How to run (after `scripts/build-control-plane.sh`; builds the release operator first; a few minutes):
//! ```text
//! cargo bench -p dr-syncer-benches --bench operator
//! ```
//! Lines (target, measured, PASS/MISS):
//! - `latency @10/s`, `latency @100/s`: a Continuous mapping of a namespace of 100 ConfigMaps; a writer
//!   updates them round-robin at that rate for 20 s, each value carrying its write time; a watch on the DR
//!   side records when each value arrives. p50/p99 of (arrival − write). Target p99 ≤ 1 s.
//! - `no-op resync`: a Scheduled mapping (every 5 s) of 10,000 ConfigMaps; after the first copy, the write
//!   requests three more syncs make on the DR side (server-side accounting of the operator's identity).
//!   Target 0.
//! - `peak RSS, 1k copy`: the peak resident memory of an operator whose only work was the first copy of
//!   1,000 objects (Manual mapping, one sync). Same target as the next line.
//! - `peak RSS, 10k sync`: the operator's peak resident memory (VmHWM) after the Scheduled mapping's first
//!   copy of the 10,000 objects and the syncs after it, at the default concurrency (64 applies in
//!   flight). Target: four such syncs at once (`--max-concurrent-syncs` 4) fit the deploy's 1 GiB limit.
//! - `RSS, 10k watched`: a Continuous mapping of the same 10,000 objects; the operator's resident memory
//!   once it has synced and watches them. Target ≤ 150 MiB.
//!
//! Results are in docs/benchmarks.md.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use dr_syncer_testenv::{ControlPlane, Identity, apply_yaml, create_namespace, workspace_root};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;

const NS: &str = "dr-syncer";

struct Env {
    ctl: ControlPlane,
    prod: ControlPlane,
    dr: ControlPlane,
    op_id: Identity,
    dr_id: Identity,
}

fn now_micros() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros()
}

fn operator_binary() -> PathBuf {
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

async fn secret(client: &Client, name: &str, id: &Identity) {
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

async fn env() -> Env {
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
        dr_id,
    }
}

struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_operator(bin: &PathBuf, env: &Env) -> Operator {
    Operator(
        Command::new(bin)
            .env("KUBECONFIG", &env.op_id.kubeconfig)
            .args([
                "--metrics-bind-address",
                "0",
                "--health-probe-bind-address",
                "0",
                "--log-level",
                "warn",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the operator"),
    )
}

fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

/// The process's peak resident memory so far.
fn peak_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:")
}

fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

async fn mapping(env: &Env, name: &str, body: &str) {
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

async fn fill(client: &Client, ns: &str, n: usize) {
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

async fn count(client: &Client, ns: &str) -> usize {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items.len())
        .unwrap_or(0)
}

async fn wait_count(client: &Client, ns: &str, n: usize, timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if count(client, ns).await >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

fn line(name: &str, target: &str, measured: String, pass: bool) {
    println!(
        "{name:<22} {measured:<34} {target:<26} {}",
        if pass { "PASS" } else { "MISS" }
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

async fn latency(env: &Env, rate: u32) {
    let src = create_namespace(&env.prod.client(), "lat").await.unwrap();
    fill(&env.prod.client(), &src, 100).await;
    mapping(
        env,
        &src,
        &format!("  replicationMode: Continuous\n  sourceNamespace: {src}"),
    )
    .await;
    assert!(
        wait_count(&env.dr.client(), &src, 100, Duration::from_secs(120)).await,
        "initial copy"
    );
    // Arrivals on the DR side.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<f64>();
    let dr_api: Api<ConfigMap> = Api::namespaced(env.dr.client(), &src);
    let watch = tokio::spawn(async move {
        let mut s = watcher(dr_api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(item) = s.next().await {
            let Ok(cm) = item else { continue };
            let now = now_micros();
            if let Some(sent) = cm
                .data
                .and_then(|d| d.get("v").cloned())
                .and_then(|v| v.parse::<u128>().ok())
                && sent > 0
            {
                let _ = tx.send((now.saturating_sub(sent)) as f64 / 1e6);
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let api: Api<ConfigMap> = Api::namespaced(env.prod.client(), &src);
    let total = rate * 20;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let start = Instant::now();
    for i in 0..total {
        let due = start + interval * i;
        tokio::time::sleep_until(due.into()).await;
        let name = format!("cm-{:05}", i % 100);
        let api = api.clone();
        tokio::spawn(async move {
            let _ = api
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"data": {"v": now_micros().to_string()}})),
                )
                .await;
        });
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    watch.abort();
    let mut seen = Vec::new();
    while let Ok(v) = rx.try_recv() {
        seen.push(v);
    }
    seen.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&seen, 0.5), percentile(&seen, 0.99));
    line(
        &format!("latency @{rate}/s"),
        "p99 <= 1 s",
        format!("p50 {p50:.3} s  p99 {p99:.3} s  ({} of {total} seen)", seen.len()),
        p99 <= 1.0,
    );
}

/// The peak memory of an operator process whose only work was the first copy of `n` objects.
async fn peak_of_a_first_copy(env: &Env, bin: &PathBuf, n: usize) {
    let src = create_namespace(&env.prod.client(), &format!("peak{n}"))
        .await
        .unwrap();
    fill(&env.prod.client(), &src, n).await;
    let op = start_operator(bin, env);
    let name = format!("peak{n}");
    mapping(
        env,
        &name,
        &format!("  replicationMode: Manual\n  sourceNamespace: {src}\n  destinationNamespace: {src}-dr"),
    )
    .await;
    Api::<dr_syncer_core::api::NamespaceMapping>::namespaced(env.ctl.client(), NS)
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"dr-syncer.io/sync-now": "go"}}})),
        )
        .await
        .unwrap();
    assert!(
        wait_count(
            &env.dr.client(),
            &format!("{src}-dr"),
            n,
            Duration::from_secs(600)
        )
        .await,
        "first copy of {n}"
    );
    let peak = peak_mib(op.0.id());
    line(
        &format!("peak RSS, {}k copy", n / 1000),
        "4 x peak <= 1 GiB limit",
        format!("{peak:.1} MiB"),
        peak > 0.0 && 4.0 * peak <= 1024.0,
    );
    drop(op);
    Api::<dr_syncer_core::api::NamespaceMapping>::namespaced(env.ctl.client(), NS)
        .delete(&name, &Default::default())
        .await
        .ok();
}

async fn noop_and_rss(env: &Env, bin: &PathBuf) {
    peak_of_a_first_copy(env, bin, 1000).await;
    let n = 10_000;
    let src = create_namespace(&env.prod.client(), "big").await.unwrap();
    let started = Instant::now();
    fill(&env.prod.client(), &src, n).await;
    eprintln!(
        "(filled {n} ConfigMaps in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let op = start_operator(bin, env);
    mapping(
        env,
        "big",
        &format!("  replicationMode: Scheduled\n  schedule: \"*/5 * * * * *\"\n  sourceNamespace: {src}\n  destinationNamespace: {src}-sched"),
    )
    .await;
    assert!(
        wait_count(
            &env.dr.client(),
            &format!("{src}-sched"),
            n,
            Duration::from_secs(600)
        )
        .await,
        "first copy"
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    let before = env.dr.requests(&env.dr_id.user).await.unwrap();
    tokio::time::sleep(Duration::from_secs(16)).await;
    let after = env.dr.requests(&env.dr_id.user).await.unwrap();
    let d = after.since(&before);
    // Every sync reads the destination Namespace: proof that syncs ran in the window.
    let reads = d.by_resource.get("get /namespaces").copied().unwrap_or(0);
    line(
        "no-op resync (10k)",
        "0 writes",
        format!("{} writes in 16 s, a sync every 5 s", d.stored_writes()),
        d.stored_writes() == 0 && reads >= 2,
    );
    // Peak memory of a process that made the first copy of 10,000 objects and four syncs since, with the
    // default concurrency (64 applies in flight): what the deploy's memory limit is set from.
    let peak = peak_mib(op.0.id());
    line(
        "peak RSS, 10k sync",
        "4 x peak <= 1 GiB limit",
        format!("{peak:.1} MiB"),
        peak > 0.0 && 4.0 * peak <= 1024.0,
    );
    drop(op);

    let op = start_operator(bin, env);
    Api::<dr_syncer_core::api::NamespaceMapping>::namespaced(env.ctl.client(), NS)
        .delete("big", &Default::default())
        .await
        .ok();
    mapping(
        env,
        "watched",
        &format!(
            "  replicationMode: Continuous\n  sourceNamespace: {src}\n  destinationNamespace: {src}-cont"
        ),
    )
    .await;
    assert!(
        wait_count(
            &env.dr.client(),
            &format!("{src}-cont"),
            n,
            Duration::from_secs(600)
        )
        .await,
        "continuous first copy"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss = rss_mib(op.0.id());
    line(
        "RSS, 10k watched",
        "<= 150 MiB",
        format!("{rss:.1} MiB"),
        rss > 0.0 && rss <= 150.0,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with other flags: only compile-check.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let bin = operator_binary();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let env = env().await;
        println!("\n== operator: continuous latency, no-op resync writes, memory ==");
        {
            let _op = start_operator(&bin, &env);
            latency(&env, 10).await;
            latency(&env, 100).await;
        }
        noop_and_rss(&env, &bin).await;
    });
}
