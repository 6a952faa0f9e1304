//! The mixed object set of the benchmarks (ConfigMaps 40 %, Secrets 30 %, Services 15 %, Deployments
//! 15 %), shared by `sync.rs` and `plugins.rs` (`#[path]` module: not a bench target of its own).

#![allow(dead_code)]

use std::time::{Duration, Instant};

use dr_syncer_core::resource::ResourceType;
use futures::{StreamExt, stream};
use kube::{
    Api, Client,
    api::{DynamicObject, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

/// Writes in flight at once.
pub(crate) const PARALLEL: usize = 64;

/// The types of the mixed set.
pub(crate) fn types() -> Vec<ResourceType> {
    vec![
        ResourceType::namespaced("", "v1", "ConfigMap", "configmaps"),
        ResourceType::namespaced("", "v1", "Secret", "secrets"),
        ResourceType::namespaced("", "v1", "Service", "services"),
        ResourceType::namespaced("apps", "v1", "Deployment", "deployments"),
    ]
}

/// Object `i` of the mixed set, and its type.
pub(crate) fn object(i: usize) -> (ResourceType, Value) {
    let t = types();
    let name = format!("obj-{i:05}");
    match i % 20 {
        0..=7 => (
            t[0].clone(),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": "bench"}},
            "data": {"config.yaml": format!("replicas: {i}\nlevel: info\n"), "index": i.to_string()}}),
        ),
        8..=13 => (
            t[1].clone(),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "labels": {"app": "bench"}},
            "type": "Opaque", "stringData": {"password": format!("secret-{i}")}}),
        ),
        14..=16 => (
            t[2].clone(),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"app": "bench"}},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        ),
        _ => (
            t[3].clone(),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": "bench"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": "nginx:1.27", "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}}]}}}}),
        ),
    }
}

pub(crate) fn api(client: &Client, rt: &ResourceType, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &rt.api_resource())
}

/// Objects 0..n of the mixed set.
pub(crate) fn mixed_objects(n: usize) -> Vec<(ResourceType, DynamicObject)> {
    (0..n)
        .map(|i| {
            let (rt, v) = object(i);
            (rt, serde_json::from_value(v).expect("object"))
        })
        .collect()
}

/// Create (or with `apply`, server-side apply) `objects` into `ns`, `PARALLEL` at a time.
pub(crate) async fn write_all(
    client: &Client,
    ns: &str,
    objects: &[(ResourceType, DynamicObject)],
    apply: bool,
) -> Duration {
    let start = Instant::now();
    stream::iter(objects)
        .map(|(rt, obj)| async move {
            let api = api(client, rt, ns);
            if apply {
                let name = obj.metadata.name.clone().expect("name");
                api.patch(&name, &PatchParams::apply("raw").force(), &Patch::Apply(obj))
                    .await
                    .expect("apply");
            } else {
                api.create(&PostParams::default(), obj).await.expect("create");
            }
        })
        .buffer_unordered(PARALLEL)
        .collect::<Vec<_>>()
        .await;
    start.elapsed()
}
