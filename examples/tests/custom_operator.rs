//! `examples/custom_operator.rs` (the bundled operator plus `RegistryMirror`, ~15 lines of `main`) against
//! three test control planes, bounded by `--once`: one sync of each mapping present at start (a Manual one
//! too, as if triggered), then exit. The DR copy of a Deployment pulls from the mirror; with a mapping
//! that cannot sync, the round exits 1.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use dr_syncer_testenv::{ControlPlane, apply_yaml, init_tracing, wait_for};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;

const NS: &str = "dr-syncer";

/// The example's binary, `target/<profile>/examples/custom_operator`, as `cargo build -p
/// dr-syncer-examples --examples` leaves it (the test script builds it before the tests: `cargo test
/// --all-targets` builds examples as test harnesses, not as the program).
fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples/custom_operator");
    assert!(
        bin.is_file(),
        "{} is not built: run `cargo build -p dr-syncer-examples --examples` first",
        bin.display()
    );
    bin
}

/// Run the example with `--once` against `controller` as `id`; its exit status and log.
fn run_once(kubeconfig: &std::path::Path, user: &str) -> (Option<i32>, String) {
    let mut child = Command::new(example())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("POD_NAMESPACE", NS)
        .env("MIRROR_FROM", "registry.prod.example/")
        .env("MIRROR_TO", "mirror.dr.example/")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--identity", user, "--once"])
        .args(["--metrics-bind-address", "0", "--health-probe-bind-address", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut log = String::new();
            use std::io::Read;
            child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
            return (status.code(), log);
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "--once did not end within 90 s:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_custom_operator_mirrors_images_in_one_round() {
    init_tracing();
    let [controller, prod, dr] = ControlPlane::start_many(["ex-op-ctl", "ex-op-prod", "ex-op-dr"])
        .await
        .unwrap();
    let c = controller.client();
    apply_yaml(&c, None, &dr_syncer_core::api::crds_yaml().unwrap())
        .await
        .unwrap();
    apply_yaml(
        &c,
        None,
        &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NS}}}\n"),
    )
    .await
    .unwrap();
    for (name, cp) in [("prod", &prod), ("dr", &dr)] {
        let id = cp.identity("dr-syncer-operator").await.unwrap();
        let kubeconfig = std::fs::read_to_string(&id.kubeconfig).unwrap();
        let secret = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("{name}-kubeconfig"), "namespace": NS},
            "stringData": {"kubeconfig": kubeconfig},
        });
        apply_yaml(&c, None, &serde_json::to_string(&secret).unwrap())
            .await
            .unwrap();
    }
    apply_yaml(
        &prod.client(),
        None,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: apps/v1\nkind: Deployment\n\
         metadata: {name: web, namespace: shop}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  \
         template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: \"registry.prod.example/shop/web:2\"}]}\n",
    )
    .await
    .unwrap();
    let resources = format!(
        "apiVersion: dr-syncer.io/v1alpha1\nkind: RemoteCluster\nmetadata: {{name: prod, namespace: {NS}}}\n\
         spec: {{kubeconfigSecretRef: {{name: prod-kubeconfig, namespace: {NS}}}}}\n---\n\
         apiVersion: dr-syncer.io/v1alpha1\nkind: RemoteCluster\nmetadata: {{name: dr, namespace: {NS}}}\n\
         spec: {{kubeconfigSecretRef: {{name: dr-kubeconfig, namespace: {NS}}}}}\n---\n\
         apiVersion: dr-syncer.io/v1alpha1\nkind: NamespaceMapping\nmetadata: {{name: shop, namespace: {NS}}}\n\
         spec: {{sourceCluster: prod, destinationCluster: dr, sourceNamespace: shop, resourceTypes: [deployments], \
         replicationMode: Manual}}\n"
    );
    wait_for("the CRDs served", Duration::from_secs(30), || async {
        Ok(apply_yaml(&c, None, &resources).await.ok())
    })
    .await
    .unwrap();
    let user = controller.identity("dr-syncer-operator").await.unwrap();

    let (code, log) = run_once(&user.kubeconfig, &user.user);
    assert_eq!(code, Some(0), "{log}");
    let web = Api::<Deployment>::namespaced(dr.client(), "shop")
        .get_opt("web")
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("web not copied; the operator's log:\n{log}"));
    let image = web.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap();
    assert_eq!(image, "mirror.dr.example/shop/web:2", "the added transformer ran");

    // A mapping that cannot sync (its source namespace does not exist): the round exits 1, naming it.
    apply_yaml(
        &c,
        None,
        &format!(
            "apiVersion: dr-syncer.io/v1alpha1\nkind: NamespaceMapping\nmetadata: {{name: missing, namespace: {NS}}}\n\
             spec: {{sourceCluster: prod, destinationCluster: dr, sourceNamespace: no-such-namespace, resourceTypes: [deployments]}}\n"
        ),
    )
    .await
    .unwrap();
    let (code, log) = run_once(&user.kubeconfig, &user.user);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("dr-syncer/missing"), "{log}");
}
