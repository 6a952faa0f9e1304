//! The operator at scale, against three test control planes: many mappings, 100,000 objects, 1,000
//! schedules; and how memory and CPU grow with mappings and objects.
//!
//! How to run (after `scripts/build-control-plane.sh`; builds the release operator first; ~15 minutes):
//! ```text
//! cargo bench -p dr-syncer-benches --bench scale
//! ```
//! Every run starts a fresh operator process with the default flags (`--max-concurrent-syncs 4`); all
//! mappings exist before it starts, each into its own DR namespace, `resourceTypes: [configmaps]`.
//!
//! Lines (measured, target, PASS/MISS):
//! - 100 Continuous mappings × 1,000 ConfigMaps (100,000 objects):
//!   - `first sync, 1st` / `first sync, 100th`: from the operator's start until the first and the last
//!     mapping finished their first sync (fairness: the first does not wait for the rest; the last is the
//!     whole copy). Targets ≤ 15 s and ≤ 150 s (the server takes ~1,500 creates/s on these cores).
//!   - `RSS, steady`: resident memory 10 s after the last first sync. Target ≤ 300 MiB.
//!   - `source watches`: watches the operator holds open on the source server (its own accounting).
//!     Target ≤ types × clusters = 1.
//!   - `no-op resync`: every watch is expired (410 Gone), so every mapping re-lists and compares its whole
//!     namespace; the write requests that makes on the DR side. Target 0.
//!   - `latency @R/s`: a writer updates ConfigMaps spread over all 100 namespaces at R changes/s for 15 s,
//!     each value carrying its write time; a watch on the DR side records each arrival. p50/p99 of
//!     (arrival − write). Target at 300/s: p99 ≤ 500 ms. Then the rate doubles while the servers keep
//!     up (up to 2,400/s), or halves until they do (down to 37/s); saturated means the writer cannot
//!     reach the rate or p99 > 1 s. Each rate also prints the machine's CPU use, the operator's, and
//!     the operator's requests per change on each server (and the most frequent ones).
//! - Growth: the same measurement (first-copy CPU, steady RSS, idle CPU) for 100 × 100, 10 × 1,000,
//!   30 × 1,000 and 100 × 1,000; a least-squares fit of `RSS = base + a·mappings + b·thousands of
//!   objects` (and the same for CPU) is printed, and the plot is written to `docs/scale-growth.png`.
//! - 1,000 Scheduled mappings × 10 ConfigMaps, `@every 30s`: `schedule lateness` p50/p99 of (the sync's
//!   finish − the `nextSyncTime` the mapping announced, whole seconds as status has them) over 150 s.
//!   Target p99 ≤ 2 s. And its `RSS`. Target ≤ 300 MiB.
//!
//! `SCALE_PARTS=big` (or `growth`, `scheduled`, comma-separated) runs only those parts.
//!
//! Results are in docs/benchmarks.md.

use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use dr_syncer_testenv::{create_namespace, workspace_root};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;

#[path = "common/operator_env.rs"]
mod operator_env;
#[path = "common/plot.rs"]
mod plot;

use operator_env::*;

const COPY_TIMEOUT: Duration = Duration::from_secs(900);

/// CPU time (user + system) of process `pid` so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command in parentheses: field 3 (state) first; utime and stime are fields 14 and 15, in
    // USER_HZ (100) ticks.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Busy and total CPU ticks of the whole machine so far (`/proc/stat`).
fn machine_ticks() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = v.iter().sum();
    // idle and iowait are the 4th and 5th.
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
}

/// `n` source namespaces `<prefix><i>-…` of `per` ConfigMaps each (four filled at once).
async fn sources(env: &Env, prefix: &str, n: usize, per: usize) -> Vec<String> {
    let client = env.prod.client();
    let started = Instant::now();
    let mut names = Vec::with_capacity(n);
    for i in 0..n {
        names.push(create_namespace(&client, &format!("{prefix}{i}")).await.unwrap());
    }
    futures::stream::iter(names.clone())
        .map(|ns| {
            let client = client.clone();
            async move { fill(&client, &ns, per).await }
        })
        .buffer_unordered(4)
        .collect::<Vec<()>>()
        .await;
    eprintln!(
        "(filled {n} namespaces × {per} ConfigMaps in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    names
}

/// Mappings `<label>-<i>` of `sources`, each into `<source>-<label>`, with the spec lines `extra`.
async fn mappings(env: &Env, label: &str, sources: &[String], extra: &str) {
    for (i, src) in sources.iter().enumerate() {
        mapping(
            env,
            &format!("{label}-{i}"),
            &format!("  sourceNamespace: {src}\n  destinationNamespace: {src}-{label}\n{extra}"),
        )
        .await;
    }
}

/// Seconds from `start` until each of the `n` mappings `<label>-*` first finished a successful sync,
/// sorted (fewer when the timeout ran out).
async fn first_syncs(env: &Env, label: &str, n: usize, start: Instant) -> Vec<f64> {
    let prefix = format!("{label}-");
    let mut done: HashMap<String, f64> = HashMap::new();
    while done.len() < n && start.elapsed() < COPY_TIMEOUT {
        if let Ok(list) = nm_api(env).list(&ListParams::default()).await {
            let t = start.elapsed().as_secs_f64();
            for nm in list.items {
                let name = nm.metadata.name.clone().unwrap_or_default();
                if name.starts_with(&prefix)
                    && nm
                        .status
                        .as_ref()
                        .is_some_and(|s| s.last_successful_sync_time.is_some())
                {
                    done.entry(name).or_insert(t);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut times: Vec<f64> = done.into_values().collect();
    times.sort_by(f64::total_cmp);
    times
}

/// One continuous run's figures.
struct Run {
    mappings: usize,
    per: usize,
    first: Vec<f64>,
    cpu_copy: f64,
    rss: f64,
    idle_cpu_pct: f64,
    watches: u64,
}

impl Run {
    fn objects(&self) -> usize {
        self.mappings * self.per
    }
}

/// A fresh operator with Continuous mappings of `sources` (`per` objects each): its first copy, then its
/// memory and CPU at rest. Returns the figures and the operator, still running.
async fn continuous(
    env: &Env,
    bin: &PathBuf,
    label: &str,
    sources: &[String],
    per: usize,
) -> (Run, Operator) {
    mappings(env, label, sources, "  replicationMode: Continuous").await;
    let op = start_operator(bin, env);
    let pid = op.0.id();
    let start = Instant::now();
    let first = first_syncs(env, label, sources.len(), start).await;
    let cpu_copy = cpu_seconds(pid);
    for src in [&sources[0], &sources[sources.len() - 1]] {
        let dst = format!("{src}-{label}");
        assert!(
            wait_count(&env.dr.client(), &dst, per, Duration::from_secs(30)).await,
            "{dst} has its {per} copies"
        );
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss = rss_mib(pid);
    let before = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(20)).await;
    let idle_cpu_pct = (cpu_seconds(pid) - before) / 20.0 * 100.0;
    let watches = env.prod.open_watches(&env.prod_id.user).await.unwrap_or(u64::MAX);
    (
        Run {
            mappings: sources.len(),
            per,
            first,
            cpu_copy,
            rss,
            idle_cpu_pct,
            watches,
        },
        op,
    )
}

/// Expire every watch on the source: each mapping re-lists and compares its namespace in full; count the
/// writes on the DR side.
async fn noop_resync(env: &Env, n: u64) {
    let before = env.dr.requests(&env.dr_id.user).await.unwrap();
    env.prod.expire_watches().await.unwrap();
    let start = Instant::now();
    // A full comparison reads the DR Namespace: count them until every mapping has compared.
    let mut compared = 0;
    while compared < n && start.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = env.dr.requests(&env.dr_id.user).await.unwrap();
        compared = now
            .since(&before)
            .by_resource
            .get("get /namespaces")
            .copied()
            .unwrap_or(0);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let d = env.dr.requests(&env.dr_id.user).await.unwrap().since(&before);
    line(
        "no-op resync",
        "0 writes",
        format!(
            "{} writes, {compared} of {n} compared in {:.0} s",
            d.stored_writes(),
            start.elapsed().as_secs_f64()
        ),
        d.stored_writes() == 0 && compared >= n,
    );
}

/// Latency figures of one rate.
struct Latency {
    p50: f64,
    p99: f64,
    seen: usize,
    total: u32,
    achieved: f64,
    /// The operator's requests per change written, on the controller, source and DR servers.
    per_change: [f64; 3],
    /// The most frequent of them, over all three servers.
    top: Vec<(String, u64)>,
    /// Share of the machine's CPU in use during the run, and the operator's CPU in % of one core.
    machine_busy: f64,
    operator_cpu: f64,
}

/// The operator's request counts on the controller, source and DR servers now.
async fn operator_requests(env: &Env) -> [dr_syncer_testenv::RequestCounts; 3] {
    [
        env.ctl.requests(&env.op_id.user).await.unwrap(),
        env.prod.requests(&env.prod_id.user).await.unwrap(),
        env.dr.requests(&env.dr_id.user).await.unwrap(),
    ]
}

/// What a part of the bench costs from its start: the machine's CPU, the operator's, and the operator's
/// requests on each server.
struct Meter {
    pid: u32,
    started: Instant,
    cpu: f64,
    machine: (f64, f64),
    requests: [dr_syncer_testenv::RequestCounts; 3],
}

impl Meter {
    async fn start(env: &Env, pid: u32) -> Meter {
        let requests = operator_requests(env).await;
        Meter {
            pid,
            started: Instant::now(),
            cpu: cpu_seconds(pid),
            machine: machine_ticks(),
            requests,
        }
    }

    /// Since the start: the share of the machine's CPU in use, and the operator's CPU in % of a core.
    fn cpu(&self) -> (f64, f64) {
        let machine = machine_ticks();
        let busy = (machine.0 - self.machine.0) / (machine.1 - self.machine.1).max(1.0);
        let operator = (cpu_seconds(self.pid) - self.cpu) / self.started.elapsed().as_secs_f64() * 100.0;
        (busy, operator)
    }

    /// The operator's requests since the start on the controller, source and DR servers.
    async fn requests(&self, env: &Env) -> [dr_syncer_testenv::RequestCounts; 3] {
        let now = operator_requests(env).await;
        [0, 1, 2].map(|i| now[i].since(&self.requests[i]))
    }
}

/// Updates spread over every namespace of `sources` at `rate`/s for `secs` s; arrival − write on the DR
/// side (`label`'s namespaces).
async fn spread_latency(
    env: &Env,
    pid: u32,
    sources: &[String],
    per: usize,
    rate: u32,
    secs: u32,
) -> Latency {
    let round = now_micros();
    let (watch, mut rx) = arrivals(
        Api::all(env.dr.client()),
        watcher::Config::default().labels("lat=1"),
        round,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let meter = Meter::start(env, pid).await;
    let n = sources.len();
    let total = rate * secs;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let start = Instant::now();
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..total as usize {
        tokio::time::sleep_until((start + interval * i as u32).into()).await;
        let api: Api<ConfigMap> = Api::namespaced(env.prod.client(), &sources[i % n]);
        let name = format!("cm-{:05}", (i / n) % per);
        writes.spawn(async move {
            let _ = api
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": {"lat": "1"}}, "data": {"v": now_micros().to_string()}})),
                )
                .await;
        });
    }
    while writes.join_next().await.is_some() {}
    let elapsed = start.elapsed().as_secs_f64();
    let achieved = f64::from(total) / elapsed;
    let (machine_busy, operator_cpu) = meter.cpu();
    tokio::time::sleep(Duration::from_secs(5)).await;
    watch.abort();
    let mut per_change = [0.0; 3];
    let mut top: HashMap<String, u64> = HashMap::new();
    for (i, d) in meter.requests(env).await.into_iter().enumerate() {
        per_change[i] = d.total as f64 / f64::from(total);
        for (k, v) in d.by_resource {
            *top.entry(format!("{} {k}", ["ctl", "src", "dr"][i])).or_default() += v;
        }
    }
    let mut top: Vec<(String, u64)> = top.into_iter().collect();
    top.sort_by_key(|b| std::cmp::Reverse(b.1));
    top.truncate(6);
    let mut seen = Vec::new();
    while let Ok(v) = rx.try_recv() {
        seen.push(v);
    }
    seen.sort_by(f64::total_cmp);
    Latency {
        p50: percentile(&seen, 0.5),
        p99: percentile(&seen, 0.99),
        seen: seen.len(),
        total,
        achieved,
        per_change,
        top,
        machine_busy,
        operator_cpu,
    }
}

/// Least squares of `y = c0 + c1·x1 + c2·x2`.
fn fit(points: &[(f64, f64, f64)]) -> Option<[f64; 3]> {
    // Normal equations (XᵀX) c = Xᵀy, solved by Gaussian elimination.
    let mut a = [[0.0_f64; 4]; 3];
    for &(x1, x2, y) in points {
        let row = [1.0, x1, x2];
        for i in 0..3 {
            for j in 0..3 {
                a[i][j] += row[i] * row[j];
            }
            a[i][3] += row[i] * y;
        }
    }
    for col in 0..3 {
        let pivot = (col..3).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        a.swap(col, pivot);
        if a[col][col].abs() < 1e-12 {
            return None;
        }
        let pivot_row = a[col];
        for (r, row) in a.iter_mut().enumerate() {
            if r != col {
                let f = row[col] / pivot_row[col];
                for (x, p) in row.iter_mut().zip(pivot_row).skip(col) {
                    *x -= f * p;
                }
            }
        }
    }
    Some([a[0][3] / a[0][0], a[1][3] / a[1][1], a[2][3] / a[2][2]])
}

fn growth(runs: &[Run]) {
    println!("\n-- growth (one operator, Continuous mappings of ConfigMaps) --");
    println!(
        "{:>8} {:>8} {:>12} {:>12} {:>12} {:>10} {:>9}",
        "mappings", "objects", "first copy", "CPU, copy", "RSS, steady", "idle CPU", "watches"
    );
    for r in runs {
        println!(
            "{:>8} {:>8} {:>10.1} s {:>10.1} s {:>8.1} MiB {:>8.2} % {:>9}",
            r.mappings,
            r.objects(),
            r.first.last().copied().unwrap_or(f64::NAN),
            r.cpu_copy,
            r.rss,
            r.idle_cpu_pct,
            r.watches
        );
    }
    let points = |y: fn(&Run) -> f64| -> Vec<(f64, f64, f64)> {
        runs.iter()
            .map(|r| (r.mappings as f64, r.objects() as f64 / 1000.0, y(r)))
            .collect()
    };
    if let Some([base, per_mapping, per_k]) = fit(&points(|r| r.rss)) {
        println!(
            "RSS fit: {base:.1} MiB + {per_mapping:.3} MiB per mapping + {per_k:.3} MiB per 1,000 objects"
        );
    }
    if let Some([base, per_mapping, per_k]) = fit(&points(|r| r.cpu_copy)) {
        println!(
            "first-copy CPU fit: {base:.2} s + {per_mapping:.3} s per mapping + {per_k:.3} s per 1,000 objects"
        );
    }
    // One line per mapping count, over objects.
    let mut by_mappings: Vec<usize> = runs.iter().map(|r| r.mappings).collect();
    by_mappings.sort_unstable();
    by_mappings.dedup();
    let series = |y: fn(&Run) -> f64| -> Vec<plot::Series> {
        by_mappings
            .iter()
            .map(|m| plot::Series {
                label: format!("{m} mappings"),
                points: runs
                    .iter()
                    .filter(|r| r.mappings == *m)
                    .map(|r| (r.objects() as f64 / 1000.0, y(r)))
                    .collect(),
            })
            .collect()
    };
    let path = workspace_root().join("docs/scale-growth.png");
    let drawn = plot::draw(
        &path,
        &[
            plot::Panel {
                title: "operator RSS at rest".into(),
                x_label: "objects watched (thousands)".into(),
                y_label: "MiB".into(),
                series: series(|r| r.rss),
            },
            plot::Panel {
                title: "operator CPU for the first copy".into(),
                x_label: "objects copied (thousands)".into(),
                y_label: "CPU seconds".into(),
                series: series(|r| r.cpu_copy),
            },
        ],
    );
    match drawn {
        Ok(()) => println!("plot written to docs/scale-growth.png"),
        Err(e) => println!("plot not written: {e}"),
    }
}

/// 1,000 Scheduled mappings of 10 objects, every 30 s: how late the syncs run.
async fn scheduled(env: &Env, bin: &PathBuf) {
    let (n, per) = (1000, 10);
    let srcs = sources(env, "t", n, per).await;
    mappings(
        env,
        "sched",
        &srcs,
        "  replicationMode: Scheduled\n  schedule: \"@every 30s\"",
    )
    .await;
    println!("\n-- 1,000 Scheduled mappings × 10 ConfigMaps, @every 30s --");
    let op = start_operator(bin, env);
    let start = Instant::now();
    let first = first_syncs(env, "sched", n, start).await;
    line(
        "first syncs, 1,000",
        "(report)",
        format!(
            "{} done, last after {:.1} s",
            first.len(),
            first.last().copied().unwrap_or(f64::NAN)
        ),
        first.len() == n,
    );
    // Each mapping's announced next sync, and its last sync, as status has them (whole seconds), from a
    // watch (listing 1,000 mappings every few seconds would load the controller's server itself).
    let secs_of = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.as_ref().map(|t| t.0.as_second())
    };
    let mut announced: HashMap<String, i64> = HashMap::new();
    let mut last: HashMap<String, i64> = HashMap::new();
    let mut lateness: Vec<f64> = Vec::new();
    let watch_for = Duration::from_secs(150);
    let meter = Meter::start(env, op.0.id()).await;
    let mut updates = watcher(nm_api(env), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    let until = tokio::time::Instant::now() + watch_for;
    while let Ok(Some(item)) = tokio::time::timeout_at(until, updates.next()).await {
        let Ok(nm) = item else { continue };
        let name = nm.metadata.name.clone().unwrap_or_default();
        let Some(s) = nm.status else { continue };
        let (Some(ls), next) = (secs_of(&s.last_sync_time), secs_of(&s.next_sync_time)) else {
            continue;
        };
        if let (Some(prev), Some(due)) = (last.get(&name), announced.get(&name))
            && ls > *prev
        {
            lateness.push((ls - due) as f64);
        }
        last.insert(name.clone(), ls);
        if let Some(next) = next {
            announced.insert(name, next);
        }
    }
    drop(updates);
    let (machine_busy, operator_cpu) = meter.cpu();
    let syncs = lateness.len().max(1) as f64;
    let per_sync: Vec<String> = ["controller", "source", "DR"]
        .iter()
        .zip(meter.requests(env).await)
        .map(|(name, d)| format!("{name} {:.1}", d.total as f64 / syncs))
        .collect();
    lateness.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&lateness, 0.5), percentile(&lateness, 0.99));
    let expected = n * 150 / 30;
    line(
        "schedule lateness",
        "p99 <= 2 s",
        format!(
            "p50 {p50:.0} s  p99 {p99:.0} s  max {:.0} s ({} of ~{expected} syncs)",
            lateness.last().copied().unwrap_or(f64::NAN),
            lateness.len()
        ),
        p99 <= 2.0 && lateness.len() * 10 >= expected * 8,
    );
    println!(
        "  (machine CPU {:.0} % busy, operator {operator_cpu:.0} % of a core; operator requests per sync: {})",
        machine_busy * 100.0,
        per_sync.join(", ")
    );
    let rss = rss_mib(op.0.id());
    line(
        "RSS, 1,000 scheduled",
        "<= 300 MiB",
        format!("{rss:.1} MiB"),
        rss > 0.0 && rss <= 300.0,
    );
    delete_mappings(env).await;
    drop(op);
}

/// Whether part `name` (`growth`, `big`, `scheduled`) runs: all of them, unless `SCALE_PARTS` lists some
/// (comma-separated), e.g. `SCALE_PARTS=big` to look at the 100 × 1,000 lines alone.
fn part(name: &str) -> bool {
    std::env::var("SCALE_PARTS").map_or(true, |v| v.split(',').any(|p| p.trim() == name))
}

fn main() {
    run(|bin, env| async move {
        let big = if part("big") || part("growth") {
            sources(&env, "b", 100, 1000).await
        } else {
            Vec::new()
        };
        let small = if part("growth") {
            sources(&env, "s", 100, 100).await
        } else {
            Vec::new()
        };
        let mut runs = Vec::new();
        println!("\n== operator at scale: shared watches, 100,000 objects, 1,000 schedules ==");

        let growth_runs = [
            ("g100x100", &small[..], 100),
            ("g10x1000", &big[..10], 1000),
            ("g30x1000", &big[..30], 1000),
        ];
        for (label, srcs, per) in growth_runs.into_iter().filter(|_| part("growth")) {
            let (run, op) = continuous(&env, &bin, label, srcs, per).await;
            eprintln!(
                "({label}: first copy {:.1} s, RSS {:.1} MiB)",
                run.first.last().copied().unwrap_or(f64::NAN),
                run.rss
            );
            runs.push(run);
            delete_mappings(&env).await;
            drop(op);
        }

        if !part("big") {
            if part("growth") {
                growth(&runs);
            }
            if part("scheduled") {
                scheduled(&env, &bin).await;
            }
            return;
        }
        println!("\n-- 100 Continuous mappings × 1,000 ConfigMaps --");
        let (run, op) = continuous(&env, &bin, "g100x1000", &big, 1000).await;
        let first = |k: usize| run.first.get(k).copied().unwrap_or(f64::NAN);
        line(
            "first sync, 1st",
            "<= 15 s",
            format!("{:.1} s", first(0)),
            run.first.len() == 100 && first(0) <= 15.0,
        );
        line(
            "first sync, 100th",
            "<= 150 s",
            format!("{:.1} s ({} of 100 done)", first(99), run.first.len()),
            run.first.len() == 100 && first(99) <= 150.0,
        );
        line(
            "RSS, steady",
            "<= 300 MiB",
            format!("{:.1} MiB", run.rss),
            run.rss > 0.0 && run.rss <= 300.0,
        );
        line(
            "source watches",
            "<= 1 (types × clusters)",
            format!("{}", run.watches),
            run.watches <= 1,
        );
        noop_resync(&env, 100).await;
        // 300/s (the target), then up while the servers keep up, or down until they do.
        let mut rate = 300;
        let mut going_up = None;
        let mut last_fine = None;
        loop {
            let l = spread_latency(&env, op.0.id(), &big, 1000, rate, 15).await;
            let saturated = l.achieved < 0.9 * f64::from(rate) || l.p99 > 1.0;
            line(
                &format!("latency @{rate}/s"),
                if rate == 300 {
                    "p99 <= 500 ms"
                } else {
                    "(saturation search)"
                },
                format!(
                    "p50 {:.3} s  p99 {:.3} s  ({} of {} seen, wrote {:.0}/s)",
                    l.p50, l.p99, l.seen, l.total, l.achieved
                ),
                if rate == 300 { l.p99 <= 0.5 } else { !saturated },
            );
            println!(
                "  (machine CPU {:.0} % busy, operator {:.0} % of a core; operator requests per change: \
                 controller {:.2}, source {:.2}, DR {:.2}; most: {})",
                l.machine_busy * 100.0,
                l.operator_cpu,
                l.per_change[0],
                l.per_change[1],
                l.per_change[2],
                l.top
                    .iter()
                    .map(|(k, v)| format!("{k} {:.2}", *v as f64 / f64::from(l.total)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let up = *going_up.get_or_insert(!saturated);
            if !saturated {
                last_fine = Some(rate);
            }
            match (up, saturated) {
                (true, false) if rate < 2400 => rate *= 2,
                (false, true) if rate > 40 => rate /= 2,
                _ => {
                    match last_fine {
                        Some(fine) => println!(
                            "(on these cores the servers keep up with {fine} changes/s{})",
                            if saturated {
                                format!(", not with {rate}")
                            } else {
                                String::new()
                            }
                        ),
                        None => println!("(the servers do not keep up even at {rate} changes/s)"),
                    }
                    break;
                }
            }
        }
        runs.push(run);
        delete_mappings(&env).await;
        drop(op);
        if part("growth") {
            growth(&runs);
        }
        if part("scheduled") {
            scheduled(&env, &bin).await;
        }
    });
}
