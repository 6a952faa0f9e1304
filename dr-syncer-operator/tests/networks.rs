//! The operator's data path across separated networks: the production and DR nodes are on networks of
//! their own, joined by a router through which DR nodes reach only the production nodes' external
//! addresses (`dr_syncer_testenv::kubelet::SimRouter`). A RemoteCluster whose agents are exposed by
//! InternalIP leaves its ClusterMapping not Connected with a message naming the mode that answers; set to
//! that mode (`NodeExternalIP`), the ClusterMapping reports each agent's address and mode and a
//! NamespaceMapping copies the data.

mod common;

use std::time::Duration;

use common::{Env, NS};
use dr_syncer_core::api::ClusterMapping;
use dr_syncer_testenv::{
    agent_path,
    kubelet::{Kubelet, Routes, SimNetwork, SimRouter},
    wait_for,
};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

fn remote_cluster(mode: &str) -> String {
    format!(
        r#"
apiVersion: dr-syncer.io/v1alpha1
kind: RemoteCluster
metadata: {{name: prod, namespace: {NS}}}
spec:
  kubeconfigSecretRef: {{name: prod-kubeconfig, namespace: {NS}}}
  pvcSync:
    enabled: true
    exposure: {{mode: {mode}}}
    healthCheck: {{sshTimeout: 5s, retryAttempts: 0}}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_mapping_names_the_exposure_mode_that_reaches_the_agents() {
    if !dr_syncer_testenv::kubelet::available_or_skip() {
        return;
    }
    let env = Env::start("op-net").await;
    let agent = agent_path().expect("the agent binary");
    let (prod_net, dr_net) = (SimNetwork::create().unwrap(), SimNetwork::create().unwrap());
    let router = SimRouter::create().unwrap();
    router.join(&prod_net, "10.96.0.1", Routes::Everything).unwrap();
    router.join(&dr_net, "10.97.0.1", Routes::ExternalOnly).unwrap();
    let prod = Kubelet::builder(&env.prod, &prod_net)
        .node("prod-a", "10.96.0.11")
        .node_external_ip("prod-a", "203.0.113.21")
        .image("dr-syncer-agent", &agent)
        .start()
        .await
        .unwrap();
    let dr = Kubelet::builder(&env.dr, &dr_net)
        .node("dr-a", "10.97.0.21")
        .image("dr-syncer-agent", &agent)
        .start()
        .await
        .unwrap();
    dr_syncer_testenv::apply_yaml(
        &env.prod.client(),
        None,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data, namespace: shop}\nspec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n",
    )
    .await
    .unwrap();
    let data = prod.bound_volume_dir("shop", "data", WAIT).await.unwrap();
    std::fs::write(data.join("orders.log"), "order #1\n").unwrap();

    let _op = env
        .operator("dr-syncer-operator", &["--data-wait-timeout", "60s"])
        .await;
    env.apply(&remote_cluster("NodeInternalIP")).await;
    env.apply(&format!(
        "apiVersion: dr-syncer.io/v1alpha1\nkind: ClusterMapping\nmetadata: {{name: prod-to-dr, namespace: {NS}}}\nspec: {{sourceCluster: prod, targetCluster: dr, connectivityTimeoutSeconds: 60}}\n"
    ))
    .await;
    let cms: Api<ClusterMapping> = Api::namespaced(env.controller.client(), NS);
    let connected = |cm: &ClusterMapping| {
        cm.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Connected").cloned())
    };
    // (Until the agent is ready the check fails for that; then for the address.)
    let failed = wait_for("the InternalIP check to fail", WAIT, || async {
        Ok(connected(&cms.get("prod-to-dr").await?)
            .filter(|c| c.status == "False" && c.message.contains("(NodeInternalIP)")))
    })
    .await
    .unwrap();
    assert!(
        failed.message.contains("10.96.0.11:2222 (NodeInternalIP)")
            && failed
                .message
                .contains("NodeExternalIP answers at 203.0.113.21:2222")
            && failed.message.contains("pvcSync.exposure.mode to NodeExternalIP"),
        "{}",
        failed.message
    );

    // The mode it names: the check passes and says how each agent was reached.
    env.apply(&remote_cluster("NodeExternalIP")).await;
    cms.patch(
        "prod-to-dr",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"connectivityTimeoutSeconds": 61}})),
    )
    .await
    .unwrap();
    let cm = wait_for("the ExternalIP check to pass", WAIT, || async {
        Ok(cms.get("prod-to-dr").await?.status.filter(|s| {
            s.connection_status
                .as_ref()
                .is_some_and(|c| c.connected_agents == 1)
        }))
    })
    .await
    .unwrap();
    let details = cm.connection_status.unwrap().connection_details.unwrap();
    assert_eq!(details[0].address.as_deref(), Some("203.0.113.21:2222"));
    assert_eq!(details[0].exposure_mode.as_deref(), Some("NodeExternalIP"));
    assert!(
        cm.message
            .as_deref()
            .is_some_and(|m| m.contains("by NodeExternalIP")),
        "{:?}",
        cm.message
    );

    // A copy takes that path.
    env.apply(&format!(
        r#"
apiVersion: dr-syncer.io/v1alpha1
kind: NamespaceMapping
metadata: {{name: shop, namespace: {NS}, annotations: {{dr-syncer.io/sync-now: "1"}}}}
spec:
  replicationMode: Manual
  sourceCluster: prod
  destinationCluster: dr
  sourceNamespace: shop
  resourceTypes: [persistentvolumeclaims]
  pvcConfig: {{syncData: true}}
"#
    ))
    .await;
    let nm = env
        .wait_status("shop", "data synced", |s| {
            s.data_sync
                .as_ref()
                .is_some_and(|v| v.len() == 1 && v[0].phase == "Synced")
        })
        .await;
    assert_eq!(
        nm.status.unwrap().data_sync.unwrap()[0].node.as_deref(),
        Some("prod-a")
    );
    let copy = dr.bound_volume_dir("shop", "data", WAIT).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(copy.join("orders.log")).ok().as_deref(),
        Some("order #1\n")
    );
    drop(router);
}
