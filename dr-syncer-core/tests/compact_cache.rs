//! A kept applier's compacted live cache (continuous mode keeps one per DR namespace between syncs): a
//! desired state the DR object was last found to hold costs no request on that object; any other desired
//! state is compared with the object read afresh, so source changes, hand edits on the DR side and
//! deletions are handled exactly as with whole objects. Requests come from the DR server's accounting.

mod common;

use common::{WRITER, pair};
use dr_syncer_core::{
    engine::Change,
    source::{ResourceSource, SourceObject, SourceScope},
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

const FIXTURE: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: a}
data: {v: "1"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: b}
data: {v: "1"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
data: {v: "1"}
"#;

/// Requests on ConfigMaps (any verb) in a counts delta.
fn on_configmaps(d: &dr_syncer_testenv::RequestCounts) -> Vec<(String, u64)> {
    d.by_resource
        .iter()
        .filter(|(k, _)| k.ends_with("/configmaps"))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

#[tokio::test]
async fn a_compacted_cache_answers_no_ops_without_requests_and_reads_the_rest_afresh() {
    let p = pair("compact").await;
    let src_ns = p.source_namespace("shop", FIXTURE).await;
    let dst_ns = format!("{src_ns}-dr");
    let target = p
        .target(
            &src_ns,
            &dst_ns,
            json!({"resourceTypes": ["configmaps"], "prune": true}),
        )
        .await;
    assert!(p.engine.sync(&target).await.unwrap().is_success());
    // A second full sync compares every object equal: each is verified against its desired state.
    let (r, writes) = p.sync_counting_writes(&target).await;
    assert!(r.is_success() && writes == 0, "{r:#?}");
    assert_eq!(p.applier.compact(0), 3, "three whole objects compacted");
    assert_eq!(p.applier.compact(0), 0, "nothing whole left");

    // (The target's own ConfigMap type: a change of another type would not be the target's.)
    let configmaps = target
        .types
        .iter()
        .find(|t| t.kind == "ConfigMap")
        .unwrap()
        .clone();
    let source = |name: &'static str| {
        let p = &p;
        let configmaps = configmaps.clone();
        let src_ns = src_ns.clone();
        async move {
            p.source
                .list(&SourceScope {
                    namespace: Some(src_ns),
                    types: vec![configmaps],
                })
                .await
                .unwrap()
                .into_iter()
                .find(|o: &SourceObject| o.object.metadata.name.as_deref() == Some(name))
                .unwrap()
        }
    };
    let counts = || async { p.dst.requests(WRITER).await.unwrap() };

    // Unchanged objects handed over again (as after a re-list): no request on any of them.
    let before = counts().await;
    let changes = vec![
        Change::Applied(source("a").await),
        Change::Applied(source("b").await),
        Change::Applied(source("c").await),
    ];
    let r = p.engine.sync_changes(&target, changes).await.unwrap();
    assert!(r.is_success(), "{r:#?}");
    assert_eq!(r.totals().unchanged, 3, "{r:#?}");
    assert_eq!(on_configmaps(&counts().await.since(&before)), vec![]);

    // A hand edit on the DR side and a source change of the same object: the object is read afresh and
    // the source's state written (one read, one write).
    let dr: Api<ConfigMap> = Api::namespaced(p.dst_client.clone(), &dst_ns);
    dr.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "edited", "extra": "x"}})),
    )
    .await
    .unwrap();
    let src: Api<ConfigMap> = Api::namespaced(p.src_client.clone(), &src_ns);
    src.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    let before = counts().await;
    let r = p
        .engine
        .sync_changes(&target, vec![Change::Applied(source("a").await)])
        .await
        .unwrap();
    assert_eq!(r.totals().updated, 1, "{r:#?}");
    let d = counts().await.since(&before);
    assert_eq!(d.by_resource.get("get /configmaps"), Some(&1), "{d:?}");
    assert_eq!(d.writes, 1, "{d:?}");
    assert_eq!(dr.get("a").await.unwrap().data.unwrap()["v"], "2");

    // A hand edit alone, then the same desired state handed over: the edit was never verified, so the
    // object is read afresh and repaired (drift repair stays exact).
    p.applier.compact(0);
    dr.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "edited"}})),
    )
    .await
    .unwrap();
    let r = p
        .engine
        .sync_changes(&target, vec![Change::Applied(source("b").await)])
        .await
        .unwrap();
    assert!(r.is_success(), "{r:#?}");
    // (b was verified before the edit: the cache cannot see a DR-side edit by itself, as with whole
    // objects; the next full sync lists the DR side afresh and repairs it.)
    assert_eq!(r.totals().unchanged, 1);
    let (r, writes) = p.sync_counting_writes(&target).await;
    assert!(r.is_success(), "{r:#?}");
    assert_eq!(writes, 1, "the full sync repairs the edit");
    assert_eq!(dr.get("b").await.unwrap().data.unwrap()["v"], "1");

    // A deletion at the source (prune): the compacted DR copy is read afresh and deleted exactly.
    p.applier.compact(0);
    let gone = source("c").await;
    src.delete("c", &DeleteParams::default()).await.unwrap();
    let r = p
        .engine
        .sync_changes(&target, vec![Change::Deleted(gone)])
        .await
        .unwrap();
    assert_eq!(r.totals().deleted, 1, "{r:#?}");
    assert!(dr.get_opt("c").await.unwrap().is_none());
}
