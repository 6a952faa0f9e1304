//! Start-up cost and basic request latency of the local test control plane.
//!
//! How to run (after `scripts/build-control-plane.sh`):
//! ```text
//! cargo bench -p dr-syncer-benches --bench control_plane
//! ```
//! Measures: start → ready of `kapi serve` (fresh state directory, embedded etcd), and the round trip of
//! a ConfigMap get through kube-rs. These bound how fast the integration suite can be.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use dr_syncer_testenv::ControlPlane;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};

fn start_to_ready(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mut group = c.benchmark_group("control_plane");
    group.sample_size(10).measurement_time(Duration::from_secs(30));
    group.bench_function("start_to_ready", |b| {
        b.to_async(&rt).iter(|| async {
            let cp = ControlPlane::start("bench").await.expect("control plane starts");
            drop(cp);
        })
    });

    let cp = rt
        .block_on(ControlPlane::start("bench-requests"))
        .expect("control plane starts");
    let api: Api<ConfigMap> = Api::namespaced(cp.client(), "default");
    rt.block_on(api.create(
        &PostParams::default(),
        &ConfigMap {
            metadata: ObjectMeta {
                name: Some("probe".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    ))
    .expect("create configmap");
    group.bench_function("get_configmap", |b| {
        b.to_async(&rt)
            .iter(|| async { api.get("probe").await.expect("get") })
    });
    group.finish();
}

criterion_group!(benches, start_to_ready);
criterion_main!(benches);
