//! Build information shared by the binaries (`--version`, `--version-json`).

use serde::Serialize;

/// The version of this crate (and of the whole workspace).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The registry and path of dr-syncer's published images — the one place every default image name is
/// made from (`deploy/`, the chart and `scripts/build-images.sh` follow it; a test checks they agree).
macro_rules! image_registry {
    () => {
        "ghcr.io/dr-syncer"
    };
}

/// The registry and path of dr-syncer's published images.
pub const IMAGE_REGISTRY: &str = image_registry!();

/// The operator's image of this version.
pub const OPERATOR_IMAGE: &str = concat!(
    image_registry!(),
    "/dr-syncer-operator:",
    env!("CARGO_PKG_VERSION")
);

/// The agent's image of this version (agents, movers and mount pods): it follows the operator's version.
pub const AGENT_IMAGE: &str = concat!(image_registry!(), "/dr-syncer-agent:", env!("CARGO_PKG_VERSION"));

/// Build information, printed by `--version-json`: the Go project's keys where they apply (`version`,
/// `git_commit`, `build_time`; `os` and `arch` for its `go_os` and `go_arch`), plus the program and the
/// Kubernetes API version the build targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildInfo {
    /// The program name.
    pub program: &'static str,
    /// The semantic version.
    pub version: &'static str,
    /// The commit built (`DR_SYNCER_GIT_COMMIT` at build time, as `scripts/build-images.sh` sets it;
    /// else `unknown`).
    pub git_commit: &'static str,
    /// When it was built (`DR_SYNCER_BUILD_TIME` at build time; else `unknown`: builds stay
    /// reproducible).
    pub build_time: &'static str,
    /// Operating system.
    pub os: &'static str,
    /// CPU architecture.
    pub arch: &'static str,
    /// The Kubernetes API version the build targets.
    pub kubernetes_api: &'static str,
}

/// Build information for `program`.
pub fn build_info(program: &'static str) -> BuildInfo {
    BuildInfo {
        program,
        version: VERSION,
        git_commit: option_env!("DR_SYNCER_GIT_COMMIT").unwrap_or("unknown"),
        build_time: option_env!("DR_SYNCER_BUILD_TIME").unwrap_or("unknown"),
        os: std::env::consts::OS,
        arch: std::env::consts::ARCH,
        kubernetes_api: "1.36",
    }
}

impl std::fmt::Display for BuildInfo {
    /// The Go project's `--version` line: `Version: X, GitCommit: Y, BuildTime: Z`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Version: {}, GitCommit: {}, BuildTime: {}",
            self.version, self.git_commit, self.build_time
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_images_are_qualified_and_versioned() {
        for (image, name) in [
            (OPERATOR_IMAGE, "dr-syncer-operator"),
            (AGENT_IMAGE, "dr-syncer-agent"),
        ] {
            assert_eq!(image, format!("{IMAGE_REGISTRY}/{name}:{VERSION}"));
            let host = image.split('/').next().unwrap();
            assert!(
                host.contains('.'),
                "{image}: a registry host, not a Docker Hub short name"
            );
        }
    }

    #[test]
    fn build_info_serialises() {
        let json = serde_json::to_value(build_info("dr-syncer-cli")).unwrap();
        assert_eq!(json["program"], "dr-syncer-cli");
        assert_eq!(json["version"], VERSION);
        for key in ["git_commit", "build_time", "os", "arch", "kubernetes_api"] {
            assert!(json[key].is_string(), "{key} in {json}");
        }
        assert!(
            build_info("x")
                .to_string()
                .starts_with(&format!("Version: {VERSION}, GitCommit: "))
        );
    }
}
