//! Bytes the operator keeps per watched object, counted by the allocator (not resident memory, which
//! says as much about the allocator's habits as about what is held), against one test control plane.
//!
//! How to run (after `scripts/build-control-plane.sh`; a minute):
//! ```text
//! cargo bench -p dr-syncer-benches --bench cache_bytes
//! ```
//! Lines (measured, target, PASS/MISS), for a namespace of 10,000 ConfigMaps (200-byte payload each):
//! - `a list, dropped`: bytes still allocated after a list through dr-syncer's source whose objects were
//!   all dropped (the worst of three rounds). Target ≤ 100 bytes per object (nothing is kept).
//! - `live cache, whole`: what a `KubeApplier`'s cache of live DR objects holds after `prepare` lists
//!   them (as during a full sync), per object. Reported.
//! - `live cache, compacted`: the same cache after `compact` (as continuous mode keeps it between syncs).
//!   Target ≤ a tenth of the whole cache.
//! - `shared watch`: what `SharedWatches` keeps per object of a read namespace once its list is done
//!   (the fingerprint that drops no-op events). Target ≤ 200 bytes.
//!
//! Results are in docs/benchmarks.md.

use std::{alloc::System, sync::Arc};

use dr_syncer_core::{
    apply::Applier,
    kube::{ClientOptions, KubeApplier, KubeSource},
    resource::ResourceType,
    source::ResourceSource,
    source::SourceEvent,
    watches::SharedWatches,
};
use dr_syncer_testenv::{ControlPlane, create_namespace};
use futures::StreamExt;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[path = "common/operator_env.rs"]
mod operator_env;

use operator_env::{fill, line};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const OBJECTS: usize = 10_000;

/// Bytes allocated and not freed so far. `stats_alloc` already counts a realloc's growth in
/// `bytes_allocated` (and its shrinking in `bytes_deallocated`); `bytes_reallocated` is the same
/// difference again, so adding it would count every grown buffer twice.
fn live_bytes() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

fn per_object(bytes: isize) -> f64 {
    bytes as f64 / OBJECTS as f64
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this with other flags: only compile-check.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cp = ControlPlane::start("bench-cache").await.unwrap();
        let client = cp.client();
        let ns = create_namespace(&client, "cache").await.unwrap();
        fill(&client, &ns, OBJECTS).await;
        let cm = ResourceType::namespaced("", "v1", "ConfigMap", "configmaps");
        println!("\n== bytes kept per watched object ({OBJECTS} ConfigMaps) ==");

        let source = KubeSource::new(client.clone(), ClientOptions::default().calls());
        let scope = dr_syncer_core::source::SourceScope {
            namespace: Some(ns.clone()),
            types: vec![cm.clone()],
        };
        // A list whose objects were dropped leaves nothing behind (rounds after the first: the client's
        // connection and buffers are set up by then).
        drop(source.list(&scope).await.unwrap());
        let mut worst = 0isize;
        for _ in 0..3 {
            let before = live_bytes();
            drop(source.list(&scope).await.unwrap());
            worst = worst.max((live_bytes() - before).abs());
        }
        line(
            "a list, dropped",
            "<= 100 bytes/object left",
            format!("{:.0} bytes/object left (worst of 3)", per_object(worst)),
            per_object(worst) <= 100.0,
        );

        let applier = KubeApplier::new(client.clone(), ClientOptions::default().calls());
        let base = live_bytes();
        applier
            .prepare(Some(&ns), std::slice::from_ref(&cm))
            .await
            .unwrap();
        let whole = live_bytes() - base;
        let compacted_objects = applier.compact(0);
        let compact = live_bytes() - base;
        line(
            "live cache, whole",
            "(report)",
            format!("{:.0} bytes/object", per_object(whole)),
            whole > 0,
        );
        line(
            "live cache, compacted",
            "<= 1/10 of whole",
            format!(
                "{:.0} bytes/object ({compacted_objects} compacted)",
                per_object(compact)
            ),
            compacted_objects == OBJECTS && compact * 10 <= whole,
        );
        drop(applier);

        let calls = ClientOptions::default().calls();
        let watches = SharedWatches::new(Arc::new(KubeSource::new(client.clone(), calls)));
        let base = live_bytes();
        let mut sub = watches.subscribe(Some(&ns), std::slice::from_ref(&cm));
        let mut seen = 0;
        // The list arrives as events (consumed here, as a worker does), then the end of the list.
        while let Some(event) = sub.next().await {
            match event {
                Ok(SourceEvent::Applied(_)) => seen += 1,
                Ok(SourceEvent::Resynced(_)) => break,
                _ => {}
            }
        }
        // Give the feed task time to finish with its last page.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let kept = live_bytes() - base;
        line(
            "shared watch",
            "<= 200 bytes/object",
            format!("{:.0} bytes/object ({seen} listed)", per_object(kept)),
            seen == OBJECTS && per_object(kept) <= 200.0,
        );
    });
}
