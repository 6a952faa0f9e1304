//! The operator as a library, in-process, against three control planes: `Operator` with a PVC data path of
//! the platform's own (`with_volume_sync`, here a recording stand-in for a snapshot- or CSI-based mover)
//! in place of the built-in rsync one. The mapping's PVC pair reaches the stand-in, its result reaches the
//! mapping's status, and `--once` ends the round.

mod common;

use std::sync::{Arc, Mutex};

use clap::Parser;
use common::{Env, NS};
use dr_syncer_core::{
    data::TransferStats,
    ops::{PvcDataSync, PvcPair, PvcProgressFn, PvcSyncOutcome, PvcSyncResult, VolumeSync},
};
use dr_syncer_testenv::{apply_yaml, create_namespace};

/// A mover that copies nothing and records what it was asked to copy, and from which clusters.
#[derive(Debug)]
struct Recording {
    pairs: Arc<Mutex<Vec<String>>>,
    built_in: PvcDataSync,
}

#[async_trait::async_trait]
impl VolumeSync for Recording {
    async fn sync_one(&self, pair: PvcPair, _progress: &PvcProgressFn<'_>) -> PvcSyncResult {
        // The built-in path's clients are there for a replacement that talks to both clusters.
        let (source, _destination) = self.built_in.clients();
        let reachable = source.apiserver_version().await.is_ok();
        self.pairs
            .lock()
            .unwrap()
            .push(format!("{pair} (source reachable: {reachable})"));
        PvcSyncResult {
            pair,
            node: Some("snapshot".into()),
            outcome: PvcSyncOutcome::Synced(TransferStats {
                bytes_sent: 42,
                ..TransferStats::default()
            }),
            duration: std::time::Duration::from_millis(1),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_data_path_replaces_the_built_in_one() {
    let env = Env::start("seams").await;
    env.apply(&format!(
        "apiVersion: dr-syncer.io/v1alpha1\nkind: RemoteCluster\nmetadata: {{name: prod, namespace: {NS}}}\n\
         spec:\n  kubeconfigSecretRef: {{name: prod-kubeconfig, namespace: {NS}}}\n  pvcSync: {{enabled: true}}\n"
    ))
    .await;
    let src = create_namespace(&env.prod.client(), "shop").await.unwrap();
    apply_yaml(
        &env.prod.client(),
        Some(&src),
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: db}\n\
         spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n",
    )
    .await
    .unwrap();
    env.apply(&common::mapping(
        "shop",
        &format!(
            "  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  \
             resourceTypes: [persistentvolumeclaims]\n  pvcConfig: {{syncData: true}}"
        ),
    ))
    .await;

    let id = env.controller.identity("dr-syncer-operator").await.unwrap();
    let args = dr_syncer_operator::Args::parse_from([
        "dr-syncer-operator",
        "--kubeconfig",
        id.kubeconfig.to_str().unwrap(),
        "--identity",
        &id.user,
        "--operator-namespace",
        NS,
        "--metrics-bind-address",
        "0",
        "--health-probe-bind-address",
        "0",
        "--once",
    ]);
    let pairs = Arc::new(Mutex::new(Vec::new()));
    let recorded = pairs.clone();
    let code = tokio::task::spawn_blocking(move || {
        dr_syncer_operator::Operator::new(args)
            .with_volume_sync(move |built_in| {
                Arc::new(Recording {
                    pairs: recorded.clone(),
                    built_in,
                })
            })
            .run()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    assert_eq!(
        *pairs.lock().unwrap(),
        [format!("{src}/db → {src}/db (source reachable: true)")],
        "the platform's mover got the pair"
    );
    let nm = env.nm_api().get("shop").await.unwrap();
    let volumes = nm.status.unwrap().data_sync.unwrap_or_default();
    assert_eq!(volumes.len(), 1, "{volumes:?}");
    assert_eq!(volumes[0].phase, "Synced", "{volumes:?}");
    assert_eq!(volumes[0].node.as_deref(), Some("snapshot"));
}
