//! Sharding across operator replicas (`--shards 6`, default lease timings), against three test control
//! planes: 30 Continuous mappings of a namespace of 50 ConfigMaps, each into its own DR namespace.
//!
//! How to run (after `scripts/build-control-plane.sh`; builds the release operator first; a few minutes):
//! ```text
//! cargo bench -p dr-syncer-benches --bench shards
//! ```
//! Lines (measured, target, PASS/MISS):
//! - `first copy, 1 process` / `first copy, 3 processes`: from applying the 30 mappings until every DR
//!   namespace has the 50 ConfigMaps, with one replica (holding all six shards) and with three (two
//!   each); the second line's target is not to be slower than one process (the work spreads).
//! - `takeover`: one of the three replicas is killed; the time until the two others hold all six shard
//!   Leases. Target ≤ 20 s (lease 15 s, retry 2 s).
//! - `change after the kill`: then a source ConfigMap changes; the time until all 30 DR copies have it
//!   (the dead replica's mappings included). Target ≤ 10 s.
//! - `overlapping writes`: from the DR server's write log (each replica names itself in its User-Agent),
//!   the DR namespaces that two replicas wrote at once (alternating, or one starting before the other's
//!   last write ended). Target 0.
//!
//! Results are in docs/benchmarks.md.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use dr_syncer_testenv::{Identity, create_namespace, writer_runs};
use k8s_openapi::api::{coordination::v1::Lease, core::v1::ConfigMap};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

#[path = "common/operator_env.rs"]
mod operator_env;

use operator_env::*;

const MAPPINGS: usize = 30;
const OBJECTS: usize = 50;

fn start(bin: &PathBuf, id: &Identity, lease_id: &str) -> Operator {
    start_operator_as(
        bin,
        id,
        &[
            "--shards",
            "6",
            "--leader-election-id",
            lease_id,
            "--identity",
            &id.user,
        ],
    )
}

/// Apply mappings `<prefix>0..` of `src` and wait until every DR namespace has the objects.
async fn first_copy(env: &Env, src: &str, prefix: &str) -> Option<Duration> {
    let started = Instant::now();
    for i in 0..MAPPINGS {
        mapping(
            env,
            &format!("{prefix}{i}"),
            &format!(
                "  replicationMode: Continuous\n  sourceNamespace: {src}\n  destinationNamespace: {src}-{prefix}{i}"
            ),
        )
        .await;
    }
    for i in 0..MAPPINGS {
        let left = Duration::from_secs(300).saturating_sub(started.elapsed());
        if !wait_count(&env.dr.client(), &format!("{src}-{prefix}{i}"), OBJECTS, left).await {
            return None;
        }
    }
    Some(started.elapsed())
}

/// Holders of the six shard Leases of `lease_id`.
async fn holders(env: &Env, lease_id: &str) -> Vec<Option<String>> {
    let api: Api<Lease> = Api::namespaced(env.ctl.client(), NS);
    let mut out = Vec::new();
    for i in 0..6 {
        out.push(
            api.get_opt(&format!("{lease_id}-shard-{i}"))
                .await
                .ok()
                .flatten()
                .and_then(|l| l.spec?.holder_identity)
                .filter(|h| !h.is_empty()),
        );
    }
    out
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("did not finish".into(), |d| format!("{:.1} s", d.as_secs_f64()))
}

fn main() {
    run(|bin, env| async move {
        let src = create_namespace(&env.prod.client(), "app").await.unwrap();
        fill(&env.prod.client(), &src, OBJECTS).await;
        println!("\n== operator sharding: 30 Continuous mappings × 50 ConfigMaps, --shards 6 ==");

        // One process.
        let one = env.ctl.identity("replica-solo").await.unwrap();
        let solo = start(&bin, &one, "bench-solo");
        let single = first_copy(&env, &src, "s").await;
        line(
            "first copy, 1 process",
            "(baseline)",
            secs(single),
            single.is_some(),
        );
        delete_mappings(&env).await;
        drop(solo);

        // Three processes.
        let mut ids = Vec::new();
        for r in ["replica-a", "replica-b", "replica-c"] {
            ids.push(env.ctl.identity(r).await.unwrap());
        }
        let mut ops: Vec<Operator> = ids.iter().map(|id| start(&bin, id, "bench-3")).collect();
        let spread = Instant::now();
        while holders(&env, "bench-3")
            .await
            .iter()
            .flatten()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            < 3
            && spread.elapsed() < Duration::from_secs(60)
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let three = first_copy(&env, &src, "t").await;
        line(
            "first copy, 3 processes",
            "≤ 1 process",
            format!(
                "{} ({:.2}× one process)",
                secs(three),
                match (single, three) {
                    (Some(a), Some(b)) => a.as_secs_f64() / b.as_secs_f64(),
                    _ => f64::NAN,
                }
            ),
            matches!((single, three), (Some(a), Some(b)) if b <= a),
        );

        // One dies.
        let victim = ids[0].user.clone();
        let killed = Instant::now();
        drop(ops.remove(0));
        let mut took = None;
        while killed.elapsed() < Duration::from_secs(60) {
            let h = holders(&env, "bench-3").await;
            if h.iter().all(|h| h.as_ref().is_some_and(|h| *h != victim)) {
                took = Some(killed.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        line(
            "takeover",
            "≤ 20 s",
            secs(took),
            took.is_some_and(|t| t <= Duration::from_secs(20)),
        );

        // A change reaches every mapping, the dead replica's included.
        let changed = Instant::now();
        Api::<ConfigMap>::namespaced(env.prod.client(), &src)
            .patch(
                "cm-00000",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"v": "1"}})),
            )
            .await
            .unwrap();
        let mut reached = Some(Duration::ZERO);
        for i in 0..MAPPINGS {
            let api = Api::<ConfigMap>::namespaced(env.dr.client(), &format!("{src}-t{i}"));
            loop {
                let v = api
                    .get("cm-00000")
                    .await
                    .ok()
                    .and_then(|c| c.data?.get("v").cloned());
                if v.as_deref() == Some("1") {
                    break;
                }
                if changed.elapsed() > Duration::from_secs(60) {
                    reached = None;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if reached.is_some() {
            reached = Some(changed.elapsed());
        }
        line(
            "change after the kill",
            "≤ 10 s to all 30",
            secs(reached),
            reached.is_some_and(|t| t <= Duration::from_secs(10)),
        );
        drop(ops);

        // The DR server's write log: the replicas share the DR kubeconfig, and each names itself in its
        // User-Agent. A DR namespace written by two replicas at once shows alternating runs, or a run
        // starting before the previous one ended.
        let writes = env.dr.writes(&env.dr_id.user).await.unwrap_or_default();
        let (mut overlapping, mut handed, mut total) = (0, 0, 0);
        for i in 0..MAPPINGS {
            let runs = writer_runs(&writes, &format!("{src}-t{i}"), |ua| {
                ua.rsplit_once('(')
                    .map(|(_, r)| r.trim_end_matches(')').to_owned())
            });
            total += runs.iter().map(|r| r.writes).sum::<usize>();
            let replicas: std::collections::BTreeSet<&str> = runs.iter().map(|r| r.writer.as_str()).collect();
            if runs.len() > replicas.len() || runs.windows(2).any(|w| w[0].last_end > w[1].first_start) {
                overlapping += 1;
            }
            if runs.len() > 1 {
                handed += 1;
            }
        }
        line(
            "overlapping writes",
            "0 (server's log)",
            format!(
                "{overlapping} of {MAPPINGS} DR namespaces ({total} writes; {handed} changed hands at the takeover)"
            ),
            overlapping == 0 && total > 0,
        );
    });
}
