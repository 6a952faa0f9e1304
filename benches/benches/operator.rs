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
    time::{Duration, Instant},
};

use dr_syncer_testenv::create_namespace;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{Patch, PatchParams},
    runtime::watcher,
};
use serde_json::json;

#[path = "common/operator_env.rs"]
mod operator_env;

use operator_env::*;

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
    // Arrivals on the DR side (the initial copy's values are 0).
    let (watch, mut rx) = arrivals(
        Api::namespaced(env.dr.client(), &src),
        watcher::Config::default(),
        1,
    );
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
    run(|bin, env| async move {
        println!("\n== operator: continuous latency, no-op resync writes, memory ==");
        {
            let _op = start_operator(&bin, &env);
            latency(&env, 10).await;
            latency(&env, 100).await;
        }
        noop_and_rss(&env, &bin).await;
    });
}
