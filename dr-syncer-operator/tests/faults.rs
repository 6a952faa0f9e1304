//! Faults (issue 20, first scenarios): the operator's calls are bounded, so a stalled cluster fails a
//! sync with a clear error instead of hanging it, and the mapping recovers when the cluster does.

mod common;

use common::{Env, NS, T};
use dr_syncer_core::api::SyncPhase;
use dr_syncer_testenv::{apply_yaml, create_namespace, wait_for};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

/// The DR control plane stops answering (SIGSTOP: connections are accepted, nothing is answered): the
/// running sync fails within its deadlines with "timed out" in `lastError` and the mapping does not stay
/// `Running`; after SIGCONT the next sync completes and carries the change made meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_dr_cluster_fails_the_sync_in_bounded_time_and_recovers() {
    let env = Env::start("fault-stall").await;
    let src = create_namespace(&env.prod.client(), "shop").await.unwrap();
    apply_yaml(
        &env.prod.client(),
        Some(&src),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {v: '1'}\n",
    )
    .await
    .unwrap();
    let _op = env
        .operator(
            "dr-syncer-operator",
            &["--request-timeout", "2s", "--sync-timeout", "30s"],
        )
        .await;
    env.apply(&format!(
        "apiVersion: dr-syncer.io/v1alpha1\nkind: NamespaceMapping\nmetadata: {{name: shop, namespace: {NS}}}\nspec:\n  replicationMode: Scheduled\n  schedule: \"*/2 * * * * *\"\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  resourceTypes: [configmaps]\n  retryConfig: {{maxRetries: 100, initialBackoff: 1s, maxBackoff: 2s}}\n"
    ))
    .await;
    env.wait_status("shop", "first sync", |s| s.phase == Some(SyncPhase::Completed))
        .await;

    // The DR server stops answering; production changes.
    let pid = env.dr.pid().expect("the DR control plane's process");
    signal(pid, "-STOP");
    Api::<ConfigMap>::namespaced(env.prod.client(), &src)
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": "2"}})),
        )
        .await
        .unwrap();
    let stalled_at = std::time::Instant::now();
    let nm = env
        .wait_status("shop", "the sync to fail as timed out", |s| {
            s.phase == Some(SyncPhase::Failed)
                && s.last_error
                    .as_ref()
                    .is_some_and(|e| e.message.contains("timed out"))
        })
        .await;
    let failed_after = stalled_at.elapsed();
    signal(pid, "-CONT");
    let err = nm.status.unwrap().last_error.unwrap().message;
    assert!(err.contains("timed out after"), "{err}");
    assert!(failed_after < T, "failed after {failed_after:?}");

    // The server answers again: the change arrives, the mapping completes.
    let cms: Api<ConfigMap> = Api::namespaced(env.dr.client(), &src);
    wait_for("the change after the stall", T, || async {
        Ok((cms.get("settings").await?.data.unwrap_or_default()["v"] == "2").then_some(()))
    })
    .await
    .unwrap();
    env.wait_status("shop", "completed again", |s| {
        s.phase == Some(SyncPhase::Completed)
    })
    .await;
}
