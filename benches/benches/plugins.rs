//! What a transformer plugin costs a first copy (issue 23's figures).
//!
//! How to run (after `scripts/build-control-plane.sh`; a few minutes):
//! ```text
//! cargo bench -p dr-syncer-benches --bench plugins
//! BENCH_SIZES=1000 BENCH_CRANE_SIZE=200 cargo bench -p dr-syncer-benches --bench plugins
//! ```
//! Two test control planes. The source namespace holds the mixed object set of `sync.rs`; each line is
//! our first sync (`SyncEngine::sync`) into a fresh destination:
//! - `no plugin`: the built-in chain only;
//! - `json-lines plugin`: plus `examples/plugins/registry-mirror` (Python, one process for the sync)
//!   — target: within 1.25× of `no plugin`;
//! - `crane plugin`: plus `examples/plugins/skip-by-label` (Python, Crane's protocol: one process per
//!   object) at `BENCH_CRANE_SIZE` objects (default 1,000) — reported as it is, no target.
//!
//! Results are in docs/benchmarks.md.

#[path = "common/mixed.rs"]
mod mixed;

use std::{sync::Arc, time::Duration};

use dr_syncer_core::{
    config::SyncConfig,
    engine::{SyncEngine, SyncTarget},
    kube::{ClientOptions, ClusterConfig, KubeApplier, KubeSource, KubeconfigSource, connect},
    plugin::{PluginDir, PluginRef, Plugins},
};
use dr_syncer_testenv::{ControlPlane, create_namespace, workspace_root};
use mixed::{mixed_objects, types, write_all};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn client(path: std::path::PathBuf) -> kube::Client {
    connect(&ClusterConfig {
        kubeconfig: KubeconfigSource::File(path),
        context: None,
        insecure_skip_tls_verify: false,
        user_agent: None,
    })
    .await
    .expect("connect")
}

/// One first copy of `src_ns` (n objects) into a fresh destination, with `plugins`.
async fn first_copy(src: &ControlPlane, src_ns: &str, n: usize, plugins: Plugins, line: &str) -> Duration {
    let dst = ControlPlane::start(&format!("bench-plugins-{line}"))
        .await
        .expect("control plane");
    let writer = dst.identity("dr-syncer").await.expect("identity");
    let calls = ClientOptions::default().calls();
    let engine = SyncEngine::new(
        Arc::new(KubeSource::new(
            client(src.kubeconfig().to_path_buf()).await,
            calls.clone(),
        )),
        Arc::new(KubeApplier::new(client(writer.kubeconfig.clone()).await, calls)),
    )
    .with_plugins(plugins);
    let target = SyncTarget {
        source_cluster: "prod".into(),
        destination_cluster: "dr".into(),
        source_namespace: src_ns.to_owned(),
        destination_namespace: format!("{src_ns}-dr"),
        synced_by: format!("bench/{src_ns}"),
        types: types(),
        config: Arc::new(SyncConfig::default()),
    };
    let report = engine.sync(&target).await.expect("sync");
    assert!(report.is_success(), "{line}: {:#?}", report.failures);
    assert_eq!(
        report.totals().created as usize,
        n + 1,
        "{line}: every object created"
    );
    report.duration
}

fn line(name: &str, n: usize, took: Duration, target: &str, pass: Option<bool>) {
    let verdict = match pass {
        Some(true) => "PASS",
        Some(false) => "MISS",
        None => "",
    };
    println!(
        "{name:<18} {n:>6} objects {:>8.2} s {:>7.0} obj/s   {target:<30} {verdict}",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
}

async fn source(n: usize) -> (ControlPlane, String) {
    let src = ControlPlane::start(&format!("bench-plugins-prod-{n}"))
        .await
        .expect("control plane");
    let admin = src.client_without_retries().await.expect("client");
    let ns = create_namespace(&admin, "bench").await.expect("ns");
    write_all(&admin, &ns, &mixed_objects(n), false).await;
    (src, ns)
}

async fn run(n: usize, crane_n: usize, rounds: usize) {
    let dir = PluginDir::new(workspace_root().join("examples/plugins"));
    let mirror = dir
        .resolve(&[PluginRef::parse("registry-mirror:from=nginx,to=mirror.dr.example/nginx").unwrap()])
        .await
        .expect("registry-mirror");
    let crane = dir
        .resolve(&[PluginRef::parse("skip-by-label").unwrap()])
        .await
        .expect("skip-by-label");

    let (src, ns) = source(n).await;
    println!("\n== {n} mixed objects: first copy without and with a plugin (best of {rounds}) ==");
    let (mut none, mut lines) = (Duration::MAX, Duration::MAX);
    for round in 0..rounds {
        none = none.min(first_copy(&src, &ns, n, Plugins::none(), &format!("none-{round}")).await);
        lines = lines.min(first_copy(&src, &ns, n, mirror.clone(), &format!("lines-{round}")).await);
    }
    line("no plugin", n, none, "", None);
    let ratio = lines.as_secs_f64() / none.as_secs_f64();
    line(
        "json-lines plugin",
        n,
        lines,
        &format!("<= 1.25x no plugin ({ratio:.2}x)"),
        Some(ratio <= 1.25),
    );
    drop(src);

    let (src, ns) = source(crane_n).await;
    let took = first_copy(&src, &ns, crane_n, crane, "crane").await;
    line("crane plugin", crane_n, took, "one process per object", None);
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with other flags: only compile-check.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    dr_syncer_testenv::init_tracing();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    for n in sizes {
        rt.block_on(run(
            n,
            env("BENCH_CRANE_SIZE", 1000),
            env("BENCH_REPEAT", 2).max(1),
        ));
    }
}
