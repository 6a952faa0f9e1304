//! The released container images, run with podman by the container tests.
//!
//! `scripts/build-images.sh` builds them (the test script does so before the tests); these helpers run
//! podman the way that script does — default ulimits dropped (a sandbox without `CAP_SYS_RESOURCE` cannot
//! set them) and runc as the runtime (crun refuses a cgroup v1 "hybrid" layout) — with host networking,
//! so a container reaches the test control planes on loopback and serves on ports of its own.
//!
//! Where podman cannot run or the images are absent, [`available_or_skip`] prints `SKIPPED: <reason>`;
//! with `DR_SYNCER_REQUIRE_IMAGES=1` (set by `scripts/test.sh`) it panics instead: CI never skips them.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

/// Podman, configured as `scripts/build-images.sh` runs it.
#[derive(Debug, Clone)]
pub struct Podman {
    runtime: Option<PathBuf>,
    conf: PathBuf,
}

impl Podman {
    /// A `podman` command with this machine's settings.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", &self.conf);
        if let Some(runtime) = &self.runtime {
            cmd.arg("--runtime").arg(runtime);
        }
        cmd
    }

    /// Run `podman ARGS…` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running podman {args:?}: {e}"))
    }

    /// Whether `image` is in the local image storage.
    pub fn has_image(&self, image: &str) -> bool {
        self.run(&["image", "exists", image]).status.success()
    }

    /// Remove container `name` if it exists (a leftover of an earlier run).
    pub fn remove(&self, name: &str) {
        let _ = self.run(&["rm", "-f", "-t", "2", name]);
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(program))
        .find(|p| p.is_file())
}

/// Podman with this machine's settings, or why it cannot be used.
///
/// # Errors
/// A message saying what is missing.
pub fn podman() -> Result<Podman, String> {
    which("podman").ok_or("podman is not installed (scripts/test.sh installs it)")?;
    let dir = std::env::temp_dir().join("dr-syncer-podman");
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let conf = dir.join("containers.conf");
    std::fs::write(&conf, "[containers]\ndefault_ulimits = []\n")
        .map_err(|e| format!("writing {}: {e}", conf.display()))?;
    let podman = Podman {
        runtime: which("runc"),
        conf,
    };
    let info = podman.run(&["info", "--format", "{{.Host.OCIRuntime.Name}}"]);
    if !info.status.success() {
        return Err(format!(
            "podman cannot run here: {}",
            String::from_utf8_lossy(&info.stderr).trim()
        ));
    }
    Ok(podman)
}

/// Podman, when it runs here and has `images`; else prints `SKIPPED: <reason>` and returns `None` —
/// or panics with the reason when `DR_SYNCER_REQUIRE_IMAGES=1`.
pub fn available_or_skip(images: &[&str]) -> Option<Podman> {
    let why = match podman() {
        Err(why) => why,
        Ok(p) => match images.iter().find(|i| !p.has_image(i)) {
            None => return Some(p),
            Some(missing) => format!("image {missing} is not built (run scripts/build-images.sh)"),
        },
    };
    if std::env::var_os("DR_SYNCER_REQUIRE_IMAGES").is_some_and(|v| v == "1") {
        panic!("container test cannot run: {why}");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// A container removed (forcibly) when dropped.
#[derive(Debug)]
pub struct Container {
    podman: Podman,
    /// The container's name.
    pub name: String,
}

impl Container {
    /// Start `podman run -d --name NAME --network host ARGS…` (ARGS: options, the image, its arguments).
    ///
    /// # Panics
    /// When podman does not start it.
    pub fn start(podman: &Podman, name: &str, args: &[&str]) -> Container {
        podman.remove(name);
        let mut all = vec!["run", "-d", "--name", name, "--network", "host"];
        all.extend_from_slice(args);
        let out = podman.run(&all);
        assert!(
            out.status.success(),
            "podman run {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Container {
            podman: podman.clone(),
            name: name.into(),
        }
    }

    /// The container's log (standard output and error) so far.
    pub fn logs(&self) -> String {
        let out = self.podman.run(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.podman.remove(&self.name);
    }
}
