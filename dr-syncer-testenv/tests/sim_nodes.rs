//! The `sim-nodes` binary (simulated nodes for control planes this process did not start, as
//! `scripts/demo.sh` uses it): nodes registered, a pod's image run, PVC storage where its state file
//! says, and everything removed on SIGTERM. Needs root; skipped with a message otherwise.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use dr_syncer_testenv::{ControlPlane, apply_yaml, kubelet::available_or_skip, wait_for};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::Api;

const T: Duration = Duration::from_secs(30);
const BIN: &str = env!("CARGO_BIN_EXE_sim-nodes");

/// Stops the simulator if the test ends early.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = self.0.wait();
        }
    }
}

#[test]
fn bad_arguments_are_refused_with_the_usage() {
    let out = Command::new(BIN).arg("prod=only-two-parts").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CLUSTER=KUBECONFIG=NODE@IP"));
    let out = Command::new(BIN).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_nodes_run_pods_and_provide_storage_until_terminated() {
    if !available_or_skip() {
        return;
    }
    let cp = ControlPlane::start("sim-nodes-bin").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let marker = dir.path().join("ran");
    let mut child = Guard(
        Command::new(BIN)
            .arg("--state")
            .arg(&state)
            .args(["--image", "busybox=/bin/sh"])
            .arg(format!("c1={}=n1@10.89.0.11", cp.kubeconfig().display()))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + T;
    while !state.exists() {
        assert!(child.0.try_wait().unwrap().is_none(), "sim-nodes exited");
        assert!(Instant::now() < deadline, "no state file");
        std::thread::sleep(Duration::from_millis(100));
    }
    let line = std::fs::read_to_string(&state).unwrap();
    let storage = line.strip_prefix("c1 ").unwrap().trim().to_owned();

    let client = cp.client();
    let nodes: Api<Node> = Api::all(client.clone());
    assert!(nodes.get_opt("n1").await.unwrap().is_some());
    apply_yaml(
        &client,
        Some("default"),
        &format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: data}}\nspec: {{accessModes: [ReadWriteOnce], resources: {{requests: {{storage: 1Gi}}}}}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec: {{containers: [{{name: c, image: busybox, command: [sh, -c, 'touch {}; sleep 600']}}]}}\n",
            marker.display()
        ),
    )
    .await
    .unwrap();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pv = wait_for("PVC bound", T, || async {
        Ok(pvcs.get("data").await?.spec.and_then(|s| s.volume_name))
    })
    .await
    .unwrap();
    assert!(Path::new(&storage).join(&pv).is_dir());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_for("pod running", T, || async {
        Ok(pods
            .get("p")
            .await?
            .status
            .and_then(|s| s.phase)
            .filter(|p| p == "Running"))
    })
    .await
    .unwrap();
    wait_for("the container's process ran", T, || async {
        Ok(marker.exists().then_some(()))
    })
    .await
    .unwrap();

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!Path::new(&storage).exists(), "storage removed on exit");
}
