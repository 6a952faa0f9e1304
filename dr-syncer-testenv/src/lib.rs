//! Test harness for dr-syncer: local Kubernetes control planes with real API machinery.
//!
//! Every integration test of dr-syncer runs against `kapi`, our test control plane: one process built from
//! Kubernetes' own API-server libraries with embedded etcd (see `test-control-plane/README.md`). This crate
//! starts such servers on free loopback ports, hands out [`kube::Client`]s and kubeconfig files, and stops
//! the servers when the [`ControlPlane`] handle drops — also when a test panics. Servers additionally run
//! with `--exit-with-parent`, so they never outlive a test process that was killed.
//!
//! The server adds test hooks that a real cluster does not have, wrapped here as methods:
//! per-client request accounting ([`ControlPlane::requests`]), forced watch expiry
//! ([`ControlPlane::expire_watches`]) and a per-client deny list ([`ControlPlane::deny`]). Opt-in RBAC
//! enforcement ([`ControlPlaneBuilder::rbac`] with identities from [`ControlPlane::identity_in_groups`])
//! checks that least-privilege Roles and bindings are sufficient. Besides client certificates the server
//! accepts bearer tokens it minted ([`ControlPlane::mint_token`], [`ControlPlane::client_with_token`]) and
//! answers TokenReviews for them, as kube-apiserver does for its static tokens.
//!
//! kapi has no nodes, kubelets, scheduler or controllers. [`kubelet::Kubelet`] plays them for end-to-end
//! tests: simulated nodes in Linux network namespaces on a [`kubelet::SimNetwork`], scheduling, DaemonSet,
//! Deployment and StatefulSet pods, PV provisioning, pod volumes (real bind mounts for PVCs) and containers
//! run as real processes whose output `pods/log` serves ([`ControlPlane::pod_log_dir`]), stopped gracefully
//! before their pods are deleted. It needs root.
//!
//! ```no_run
//! # async fn demo() -> Result<(), dr_syncer_testenv::Error> {
//! use dr_syncer_testenv::ControlPlane;
//!
//! let cp = ControlPlane::start("prod").await?;
//! let client = cp.client();
//! let ns = dr_syncer_testenv::create_namespace(&client, "demo").await?;
//! dr_syncer_testenv::apply_yaml(&client, Some(&ns), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! The binaries come from `scripts/build-control-plane.sh` (run by `scripts/test.sh`), which links them under
//! `target/testenv/bin/`. `DR_SYNCER_KAPI` and `DR_SYNCER_KUBECTL` override their paths.

mod binaries;
mod control_plane;
mod error;
pub mod images;
pub mod kubelet;
mod names;
mod testing_api;
mod wait;
mod yaml;

pub use binaries::{agent_path, kapi_path, kubectl_path, workspace_root};
pub use control_plane::{ControlPlane, ControlPlaneBuilder, Identity, client_from_kubeconfig};
pub use error::{Error, Result};
pub use names::{create_namespace, unique_name};
pub use testing_api::{DenyRule, FaultRule, RequestCounts, WriteRecord, WriterRun, writer_runs};
pub use wait::{wait_for, wait_for_condition};
pub use yaml::{FIELD_MANAGER, apply_yaml, parse_yaml_documents};

/// A deterministic pseudo-random byte stream (xorshift), for incompressible test files and volumes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Write `content` to `dir/rel`, creating the directories on the way (to seed a volume's data).
///
/// # Panics
/// When it cannot be written: the test cannot go on.
pub fn write_file(dir: &std::path::Path, rel: &str, content: impl AsRef<[u8]>) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
    }
    std::fs::write(&path, content).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// The text of `dir/rel`, if it can be read (to check a copy).
pub fn read_file(dir: &std::path::Path, rel: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(rel)).ok()
}

/// Install a tracing subscriber that writes through the test harness's captured output.
///
/// Safe to call from every test; only the first call installs it. The filter comes from `RUST_LOG`
/// (default `warn`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// The API status of a failed request, if the server answered with one (e.g. 409, 422, 403).
pub fn api_status(err: &kube::Error) -> Option<&kube::core::Status> {
    match err {
        kube::Error::Api(status) => Some(status),
        _ => None,
    }
}

/// Like [`api_status`], for the harness's [`Error`].
pub fn status_of(err: &Error) -> Option<&kube::core::Status> {
    match err {
        Error::Kube(e) => api_status(e),
        _ => None,
    }
}
