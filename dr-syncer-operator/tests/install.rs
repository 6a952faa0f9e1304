//! `docs/install.md` sections 3 to 5, as written, against control planes that enforce RBAC: the generated
//! remote roles bound to a ServiceAccount, a token kubeconfig minted for it with `kubectl create token`,
//! the kubeconfig Secrets and `clusters.yaml` on the controller, the operator's first sync through
//! those identities, the checks of section 6, and the first step of uninstalling (the mappings deleted
//! while the operator runs: nothing stuck on a finalizer). Every command run here is checked to appear verbatim in the runbook, so the two
//! cannot drift apart.

mod common;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use common::{Operator, T};
use dr_syncer_core::api::SyncPhase;
use dr_syncer_testenv::{ControlPlane, apply_yaml, init_tracing, kubectl_path, wait_for, workspace_root};
use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::ConfigMap};
use kube::Api;

fn runbook() -> String {
    std::fs::read_to_string(workspace_root().join("docs/install.md")).unwrap()
}

/// The fenced block of the runbook that starts with `first_line`.
fn block(doc: &str, first_line: &str) -> String {
    let start = doc
        .find(first_line)
        .unwrap_or_else(|| panic!("install.md has no line {first_line:?}"));
    let end = doc[start..].find("\n```").unwrap() + start;
    doc[start..end].to_owned()
}

/// Run `line` with bash in `dir`, as the admin of `kubeconfig`, with `dr-syncer-cli` and `kubectl` on
/// PATH; `vars` are set first (a block's earlier assignments).
fn sh(dir: &Path, kubeconfig: &Path, vars: &BTreeMap<&str, String>, line: &str) -> String {
    let bin = dir.join("bin");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new("bash");
    cmd.current_dir(dir)
        .env("PATH", path)
        .env("KUBECONFIG", kubeconfig)
        .args(["-euo", "pipefail", "-c", line]);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{line}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`sh`] for a line the runbook has verbatim.
fn run(doc: &str, dir: &Path, kubeconfig: &Path, line: &str) -> String {
    assert!(doc.contains(line), "not in install.md: {line}");
    sh(dir, kubeconfig, &BTreeMap::new(), line)
}

/// Section 4's first block for one cluster (`prod`, or `dr` in its place as the runbook says), line by
/// line; the `NAME=$(…)` assignments carry over to the lines after them.
fn mint_kubeconfig(doc: &str, dir: &Path, admin: &Path, site: &str) -> PathBuf {
    let text = block(doc, "# On the source cluster, as its admin");
    let mut vars: BTreeMap<&str, String> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let line = line.replace("prod", site);
        match line.split_once("=$(") {
            Some(("TOKEN", command)) | Some(("SERVER", command)) => {
                let name = if line.starts_with("TOKEN") {
                    "TOKEN"
                } else {
                    "SERVER"
                };
                let value = sh(dir, admin, &vars, command.strip_suffix(')').unwrap());
                vars.insert(name, value.trim().to_owned());
            }
            _ => {
                sh(dir, admin, &vars, &line);
            }
        }
    }
    assert_eq!(vars.len(), 2, "the block assigns TOKEN and SERVER");
    dir.join(format!("{site}.kubeconfig"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_install_runbook_works_as_written() {
    init_tracing();
    let doc = runbook();
    let (controller, prod, dr) = tokio::join!(
        ControlPlane::builder("runbook-ctl").start(),
        ControlPlane::builder("runbook-prod")
            .rbac(true)
            .simulate_workloads(true)
            .start(),
        ControlPlane::builder("runbook-dr")
            .rbac(true)
            .simulate_workloads(true)
            .start(),
    );
    let (controller, prod, dr) = (controller.unwrap(), prod.unwrap(), dr.unwrap());
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    std::fs::create_dir(dir.join("bin")).unwrap();
    let cli = common::BIN.replace("dr-syncer-operator", "dr-syncer-cli");
    std::os::unix::fs::symlink(cli, dir.join("bin/dr-syncer-cli")).unwrap();
    std::os::unix::fs::symlink(kubectl_path().unwrap(), dir.join("bin/kubectl")).unwrap();

    // The application in production.
    let shop = "shop";
    apply_yaml(
        &prod.client(),
        None,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
    )
    .await
    .unwrap();
    apply_yaml(
        &prod.client(),
        Some(shop),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {LOG_LEVEL: info}\n",
    )
    .await
    .unwrap();

    // Section 3: the remote roles, bound to the ServiceAccount of section 4.
    let (p, d) = (prod.kubeconfig(), dr.kubeconfig());
    run(
        &doc,
        dir,
        p,
        "dr-syncer-cli rbac --source      --namespace shop --pvc-data --bind-service-account dr-syncer/dr-syncer-remote > source-rbac.yaml",
    );
    run(
        &doc,
        dir,
        p,
        "dr-syncer-cli rbac --destination --namespace shop --pvc-data --bind-service-account dr-syncer/dr-syncer-remote > dr-rbac.yaml",
    );
    for admin in [p, d] {
        run(&doc, dir, admin, "kubectl create namespace dr-syncer");
    }
    run(&doc, dir, p, "kubectl apply -f source-rbac.yaml");
    run(&doc, dir, d, "kubectl create namespace shop");
    run(&doc, dir, d, "kubectl apply -f dr-rbac.yaml");

    // Section 4: a token kubeconfig per cluster, with nothing of the admin's in it.
    let prod_kc = mint_kubeconfig(&doc, dir, p, "prod");
    let dr_kc = mint_kubeconfig(&doc, dir, d, "dr");
    for kc in [&prod_kc, &dr_kc] {
        let text = std::fs::read_to_string(kc).unwrap();
        assert!(text.contains("token: "), "{text}");
        assert!(text.contains("certificate-authority-data: "));
        for leak in [
            "client-key",
            "client-certificate",
            "exec:",
            "auth-provider",
            "tokenFile",
        ] {
            assert!(!text.contains(leak), "{} holds {leak}", kc.display());
        }
    }
    // The minted identity is the ServiceAccount, held to its roles.
    let whoami = Command::new(kubectl_path().unwrap())
        .args([
            "--kubeconfig",
            prod_kc.to_str().unwrap(),
            "get",
            "secrets",
            "-n",
            "kube-system",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&whoami.stderr);
    assert!(
        stderr.contains("system:serviceaccount:dr-syncer:dr-syncer-remote") && stderr.contains("forbidden"),
        "{stderr}"
    );

    // On the controller: the operator's namespace and CRDs (section 2), then the Secrets of section 4.
    let c = controller.kubeconfig();
    apply_yaml(
        &controller.client(),
        None,
        &dr_syncer_core::api::crds_yaml().unwrap(),
    )
    .await
    .unwrap();
    run(&doc, dir, c, "kubectl create namespace dr-syncer");
    run(
        &doc,
        dir,
        c,
        "kubectl -n dr-syncer create secret generic prod-kubeconfig --from-file=kubeconfig=prod.kubeconfig",
    );
    run(
        &doc,
        dir,
        c,
        "kubectl -n dr-syncer create secret generic dr-kubeconfig   --from-file=kubeconfig=dr.kubeconfig",
    );

    // Section 5: clusters.yaml as written, and the operator.
    let clusters = block(&doc, "# clusters.yaml");
    std::fs::write(dir.join("clusters.yaml"), &clusters).unwrap();
    wait_for("the CRDs served", T, || async {
        let out = Command::new(kubectl_path().unwrap())
            .current_dir(dir)
            .env("KUBECONFIG", c)
            .args(["apply", "-f", "clusters.yaml"])
            .output()
            .unwrap();
        Ok(out.status.success().then_some(()))
    })
    .await
    .unwrap();
    assert!(doc.contains("kubectl apply -f clusters.yaml"));
    let id = controller.identity("dr-syncer-operator").await.unwrap();
    let _op = Operator::spawn(&id, &[]);

    let nms: Api<dr_syncer_core::api::NamespaceMapping> = Api::namespaced(controller.client(), "dr-syncer");
    wait_for("the first mapping's first sync", T, || async {
        let nm = nms.get("shop").await?;
        Ok(nm
            .status
            .and_then(|s| s.phase)
            .filter(|p| *p == SyncPhase::Completed)
            .map(|_| ()))
    })
    .await
    .unwrap();
    let copied = Api::<ConfigMap>::namespaced(dr.client(), shop)
        .get("settings")
        .await
        .unwrap();
    assert_eq!(copied.data.unwrap()["LOG_LEVEL"], "info");
    // Section 6: the checks, as written.
    let rcs = run(&doc, dir, c, "kubectl -n dr-syncer get remoteclusters");
    assert!(rcs.contains("prod") && rcs.contains("dr"), "{rcs}");
    let nms_table = run(&doc, dir, c, "kubectl -n dr-syncer get namespacemappings");
    assert!(
        nms_table.contains("shop") && nms_table.contains("Completed"),
        "{nms_table}"
    );
    let described = run(
        &doc,
        dir,
        c,
        "kubectl -n dr-syncer describe namespacemapping shop",
    );
    assert!(described.contains("Conditions"), "{described}");
    // pvcSync on prod: the agents were deployed with the PVC roles of section 3.
    wait_for("the agents deployed on prod", T, || async {
        Ok(Api::<DaemonSet>::namespaced(prod.client(), "dr-syncer-system")
            .get_opt("dr-syncer-agent")
            .await?
            .map(|_| ()))
    })
    .await
    .unwrap();

    // Uninstalling, first step: the mappings go while the operator runs (kubectl waits for its
    // finalizers); with the default deletionPolicy the DR copies stay.
    run(
        &doc,
        dir,
        c,
        "kubectl -n dr-syncer delete namespacemappings,clustermappings --all",
    );
    assert!(
        nms.get_opt("shop").await.unwrap().is_none(),
        "the mapping is gone, not stuck"
    );
    assert!(
        Api::<ConfigMap>::namespaced(dr.client(), shop)
            .get_opt("settings")
            .await
            .unwrap()
            .is_some(),
        "Retain keeps the DR copy"
    );
}
