//! Deploy manifests and permissions: `kubectl apply --dry-run=server -k deploy/`, the Go-schema
//! example manifests applied unchanged, the operator under RBAC enforcement with exactly the
//! permissions of `deploy/rbac.yaml`, and a missing permission shown as a clear condition.

mod common;

use common::{Env, NS, T};
use dr_syncer_core::api::{RemoteCluster, SyncPhase};
use dr_syncer_testenv::{ControlPlane, DenyRule, apply_yaml, create_namespace, wait_for, workspace_root};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

fn kubectl(cp: &ControlPlane, args: &[&str]) -> (bool, String) {
    let out = cp.kubectl().unwrap().args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_manifests_pass_a_server_side_dry_run_and_examples_apply_unchanged() {
    let cp = ControlPlane::start("deploy").await.unwrap();
    let root = workspace_root();
    let deploy = root.join("deploy");
    // The namespace first (a dry run creates nothing for the namespaced objects to live in).
    let (ok, out) = kubectl(
        &cp,
        &["apply", "-f", deploy.join("namespace.yaml").to_str().unwrap()],
    );
    assert!(ok, "{out}");
    let (ok, out) = kubectl(
        &cp,
        &["apply", "--dry-run=server", "-k", deploy.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    for kind in [
        "customresourcedefinition.apiextensions.k8s.io/namespacemappings.dr-syncer.io",
        "serviceaccount/dr-syncer-operator",
        "clusterrole.rbac.authorization.k8s.io/dr-syncer-operator",
        "deployment.apps/dr-syncer-operator",
        "service/dr-syncer-operator-metrics",
    ] {
        assert!(out.contains(kind), "{kind} missing from:\n{out}");
    }
    for f in [
        "remote-rbac/source-reader.yaml",
        "remote-rbac/dr-writer.yaml",
        "remote-rbac/pvc-data.yaml",
    ] {
        let (ok, out) = kubectl(
            &cp,
            &[
                "apply",
                "--dry-run=server",
                "-f",
                deploy.join(f).to_str().unwrap(),
            ],
        );
        assert!(ok, "{f}: {out}");
    }

    // The Go project's example manifests, unchanged, against our CRDs.
    let (ok, out) = kubectl(&cp, &["apply", "-k", deploy.to_str().unwrap()]);
    assert!(ok, "{out}");
    let c = cp.client();
    wait_for("CRDs served", T, || async {
        Ok((Api::<RemoteCluster>::all(c.clone())
            .list(&Default::default())
            .await
            .is_ok())
        .then_some(()))
    })
    .await
    .unwrap();
    let mut files: Vec<_> = std::fs::read_dir(root.join("examples/manifests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 5);
    for f in files {
        let (ok, out) = kubectl(&cp, &["apply", "-f", f.to_str().unwrap()]);
        assert!(ok, "{}: {out}", f.display());
    }
}

/// The operator as the ServiceAccount of `deploy/rbac.yaml` on a controller cluster that enforces RBAC:
/// every controller works with exactly those permissions.
#[tokio::test(flavor = "multi_thread")]
async fn least_privilege_rbac_is_sufficient() {
    let env = Env::start_with("rbac", |b| b.rbac(true)).await;
    let root = workspace_root();
    let (ok, out) = kubectl(
        &env.controller,
        &["apply", "-f", root.join("deploy/rbac.yaml").to_str().unwrap()],
    );
    assert!(ok, "{out}");
    let sa = "system:serviceaccount:dr-syncer:dr-syncer-operator";
    let id = env
        .controller
        .identity_in_groups(
            sa,
            &["system:serviceaccounts", "system:serviceaccounts:dr-syncer"],
        )
        .await
        .unwrap();
    // Without a binding this identity can do nothing (the enforcement is real).
    assert!(
        Api::<ConfigMap>::namespaced(id.client.clone(), NS)
            .list(&Default::default())
            .await
            .is_err()
    );
    let src = create_namespace(&env.prod.client(), "app").await.unwrap();
    apply_yaml(
        &env.prod.client(),
        Some(&src),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {v: '1'}\n",
    )
    .await
    .unwrap();
    let op = common::Operator::spawn(&id, &["--leader-elect"]);
    env.apply(&format!(
        r#"
apiVersion: dr-syncer.io/v1alpha1
kind: ClusterMapping
metadata: {{name: prod-to-dr, namespace: {NS}}}
spec: {{sourceCluster: prod, targetCluster: dr}}
---
apiVersion: dr-syncer.io/v1alpha1
kind: NamespaceMapping
metadata: {{name: app, namespace: {NS}, annotations: {{dr-syncer.io/sync-now: "1"}}}}
spec:
  replicationMode: Manual
  clusterMappingRef: {{name: prod-to-dr}}
  sourceNamespace: {src}
  resourceTypes: [configmaps]
  deletionPolicy: DeleteSynced
"#
    ))
    .await;
    let rcs: Api<RemoteCluster> = Api::namespaced(env.controller.client(), NS);
    wait_for("RemoteClusters healthy", T, || async {
        Ok((rcs
            .list(&Default::default())
            .await?
            .items
            .iter()
            .all(|rc| rc.status.as_ref().and_then(|s| s.health.as_deref()) == Some("Healthy")))
        .then_some(()))
    })
    .await
    .unwrap();
    let cms: Api<dr_syncer_core::api::ClusterMapping> = Api::namespaced(env.controller.client(), NS);
    wait_for("ClusterMapping connected", T, || async {
        Ok((cms.get("prod-to-dr").await?.status.and_then(|s| s.phase)
            == Some(dr_syncer_core::api::ClusterMappingPhase::Connected))
        .then_some(()))
    })
    .await
    .unwrap();
    let nm = env
        .wait_status("app", "synced under RBAC", |s| {
            s.phase == Some(SyncPhase::Completed)
        })
        .await;
    assert!(
        !nm.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("dr-syncer.io/sync-now")
    );
    // (Events need their own permission.)
    env.wait_event("app", "SyncCompleted").await;
    // Deletion runs the finalizer (DeleteSynced) with the same permissions.
    env.nm_api().delete("app", &Default::default()).await.unwrap();
    let api = env.nm_api();
    wait_for("deleted", T, || async {
        Ok((api.get_opt("app").await?.is_none()).then_some(()))
    })
    .await
    .unwrap();
    let dr_cms: Api<ConfigMap> = Api::namespaced(env.dr.client(), &src);
    assert!(dr_cms.get_opt("a").await.unwrap().is_none());
    // Nothing was refused along the way.
    let refused = op.log().matches("forbidden").count();
    assert_eq!(refused, 0, "{}", op.log());
}

/// A permission the DR identity lacks, and one the operator lacks, each end up as a clear condition —
/// and the mapping recovers once the permission is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_permission_is_a_clear_condition() {
    let env = Env::start("perm").await;
    let src = create_namespace(&env.prod.client(), "app").await.unwrap();
    apply_yaml(
        &env.prod.client(),
        Some(&src),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {v: '1'}\n",
    )
    .await
    .unwrap();
    // The DR identity may not write ConfigMaps.
    env.dr
        .deny(&DenyRule::new(
            &env.dr_id.user,
            &["patch", "create"],
            &["configmaps"],
        ))
        .await
        .unwrap();
    let op = env.operator("dr-syncer-operator", &[]).await;
    env.apply(&format!(
        "apiVersion: dr-syncer.io/v1alpha1\nkind: NamespaceMapping\nmetadata: {{name: app, namespace: {NS}}}\nspec:\n  sourceCluster: prod\n  destinationCluster: dr\n  sourceNamespace: {src}\n  resourceTypes: [configmaps]\n  retryConfig: {{maxRetries: 20, initialBackoff: 1s, maxBackoff: 2s}}\n"
    ))
    .await;
    let nm = env
        .wait_status("app", "the refusal as a condition", |s| {
            s.phase == Some(SyncPhase::Failed)
        })
        .await;
    let s = nm.status.unwrap();
    let c = s
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Synced")
        .unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "SyncFailed"));
    assert!(
        c.message.contains("forbidden") && c.message.contains("configmaps"),
        "{c:?}"
    );
    assert_eq!(
        s.last_error.unwrap().resource.as_deref(),
        Some(format!("ConfigMap/{src}/a").as_str())
    );
    assert!(
        s.retry_status.is_some(),
        "a refusal is retried (failureHandling defaultMode RetryAndWait)"
    );
    env.dr.clear_denies().await.unwrap();
    env.wait_status("app", "recovered by a retry", |s| {
        s.phase == Some(SyncPhase::Completed)
    })
    .await;

    // The operator may not read kubeconfig Secrets: the RemoteClusters say so.
    env.controller
        .deny(&DenyRule::new(&op.user, &["get"], &["secrets"]))
        .await
        .unwrap();
    let rcs: Api<RemoteCluster> = Api::namespaced(env.controller.client(), NS);
    wait_for("RemoteCluster reports the refusal", T, || async {
        Ok((rcs.get("dr").await?.status.is_some_and(|s| {
            s.conditions.iter().flatten().any(|c| {
                c.type_ == "KubeconfigAvailable"
                    && c.status == "False"
                    && c.reason == "ControllerApiError"
                    && c.message.contains("forbidden")
            })
        }))
        .then_some(()))
    })
    .await
    .unwrap();
}

/// One place names the images: `deploy/operator.yaml`, the kustomization's `images:` and
/// `scripts/build-images.sh` agree with dr-syncer-core's `OPERATOR_IMAGE` and `AGENT_IMAGE`.
#[test]
fn deploy_and_the_image_script_name_the_published_images() {
    use dr_syncer_core::version::{AGENT_IMAGE, IMAGE_REGISTRY, OPERATOR_IMAGE, VERSION};
    let root = workspace_root();
    let operator = std::fs::read_to_string(root.join("deploy/operator.yaml")).unwrap();
    assert!(
        operator.contains(&format!("image: {OPERATOR_IMAGE}\n")),
        "deploy/operator.yaml runs {OPERATOR_IMAGE}"
    );
    let kustomization = std::fs::read_to_string(root.join("deploy/kustomization.yaml")).unwrap();
    assert!(
        kustomization.contains(&format!(
            "- name: {IMAGE_REGISTRY}/dr-syncer-operator\n  newTag: {VERSION}\n"
        )),
        "{kustomization}"
    );
    let out = std::process::Command::new(root.join("scripts/build-images.sh"))
        .arg("--print-names")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{OPERATOR_IMAGE}\n{AGENT_IMAGE}\n")
    );
}
