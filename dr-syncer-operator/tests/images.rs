//! The operator image, as shipped (`scripts/build-images.sh`), run with podman against the test control
//! planes: it reports the workspace version, starts with a mounted kubeconfig on a read-only root file
//! system as its non-root user, and completes a NamespaceMapping's sync.
//!
//! Needs podman; without it (or without the image) it prints `SKIPPED` — CI builds the images first and
//! sets `DR_SYNCER_REQUIRE_IMAGES=1`, so there it never skips.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Env, NS, T};
use dr_syncer_core::{
    api::SyncPhase,
    version::{OPERATOR_IMAGE, VERSION},
};
use dr_syncer_testenv::{
    apply_yaml,
    images::{Container, available_or_skip},
    unique_name, wait_for,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_image_syncs_a_namespace_mapping() {
    let Some(podman) = available_or_skip(&[OPERATOR_IMAGE]) else {
        return;
    };
    let out = podman.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        OPERATOR_IMAGE,
        "--version-json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["version"], VERSION, "{info}");
    let user = podman.run(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}} {{index .Labels \"org.opencontainers.image.version\"}}",
        OPERATOR_IMAGE,
    ]);
    assert_eq!(
        String::from_utf8_lossy(&user.stdout).trim(),
        format!("65532:65532 {VERSION}"),
        "non-root, labelled with its version"
    );

    let env = Env::start("op-image").await;
    let src = env.prod.client();
    apply_yaml(
        &src,
        None,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: shop}\ndata: {color: blue}\n",
    )
    .await
    .unwrap();

    // The operator's kubeconfig, mounted read-only where the container's user can read it.
    let id = env.controller.identity("dr-syncer-operator").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::copy(&id.kubeconfig, &kubeconfig).unwrap();
    std::fs::set_permissions(&kubeconfig, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (metrics, probes) = (common::free_port(), common::free_port());
    let operator = Container::start(
        &podman,
        &unique_name("drs-operator"),
        &[
            "--read-only",
            "-v",
            &format!("{}:/etc/dr-syncer/kubeconfig:ro", kubeconfig.display()),
            "-e",
            "KUBECONFIG=/etc/dr-syncer/kubeconfig",
            "-e",
            &format!("POD_NAMESPACE={NS}"),
            OPERATOR_IMAGE,
            "--metrics-bind-address",
            &format!("127.0.0.1:{metrics}"),
            "--health-probe-bind-address",
            &format!("127.0.0.1:{probes}"),
            "--identity",
            &id.user,
            "--recheck-interval",
            "3s",
        ],
    );
    env.apply(&format!(
        "apiVersion: dr-syncer.io/v1alpha1\nkind: NamespaceMapping\nmetadata: {{name: shop, namespace: {NS}, annotations: {{dr-syncer.io/sync-now: \"1\"}}}}\nspec:\n  replicationMode: Manual\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: shop\n  resourceTypes: [configmaps]\n"
    ))
    .await;
    let api = env.nm_api();
    let nm = wait_for("the mapping synced by the image", T, || async {
        let nm = api.get("shop").await?;
        let done = nm
            .status
            .as_ref()
            .is_some_and(|s| s.phase == Some(SyncPhase::Completed));
        Ok(done.then_some(nm))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; the operator's log:\n{}", operator.logs()));
    assert!(nm.status.unwrap().last_successful_sync_time.is_some());
    let copied = Api::<ConfigMap>::namespaced(env.dr.client(), "shop")
        .get("settings")
        .await
        .unwrap();
    assert_eq!(
        copied.data.unwrap().get("color").map(String::as_str),
        Some("blue")
    );
}
