//! Where the control plane and kubectl binaries are.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The root of the dr-syncer workspace (where `Cargo.toml` of the workspace is).
pub fn workspace_root() -> PathBuf {
    // This crate lives one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn locate(what: &'static str, env: &'static str, file: &str, explicit: Option<&Path>) -> Result<PathBuf> {
    let path = match (explicit, std::env::var_os(env)) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(p)) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join("target/testenv/bin").join(file),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingBinary { what, path, env })
    }
}

/// Path of the `kapi` test control plane binary (`DR_SYNCER_KAPI` overrides).
pub fn kapi_path() -> Result<PathBuf> {
    kapi_path_or(None)
}

/// `explicit` when given, otherwise [`kapi_path`]; either way it must exist.
pub(crate) fn kapi_path_or(explicit: Option<&Path>) -> Result<PathBuf> {
    locate(
        "the test control plane binary (kapi)",
        "DR_SYNCER_KAPI",
        "kapi",
        explicit,
    )
}

/// Path of the `kubectl` binary matching the control plane (`DR_SYNCER_KUBECTL` overrides).
pub fn kubectl_path() -> Result<PathBuf> {
    locate("kubectl", "DR_SYNCER_KUBECTL", "kubectl", None)
}

/// Path of the `dr-syncer-agent` binary of this workspace build (`DR_SYNCER_AGENT` overrides): next to
/// the running test's `deps` directory, where cargo puts the workspace's binaries. A workspace test run
/// builds it (the agent's own tests need it); for a single package, `cargo build -p dr-syncer-agent`.
pub fn agent_path() -> Result<PathBuf> {
    let explicit = std::env::var_os("DR_SYNCER_AGENT")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let path = explicit.unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| {
                exe.parent()
                    .and_then(Path::parent)
                    .map(|dir| dir.join("dr-syncer-agent"))
            })
            .unwrap_or_else(|| workspace_root().join("target/debug/dr-syncer-agent"))
    });
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingBinary {
            what: "the dr-syncer-agent binary (cargo build -p dr-syncer-agent)",
            path,
            env: "DR_SYNCER_AGENT",
        })
    }
}
