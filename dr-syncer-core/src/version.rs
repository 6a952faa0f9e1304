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

/// Build information, printed by `--version-json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildInfo {
    /// The program name.
    pub program: &'static str,
    /// The semantic version.
    pub version: &'static str,
    /// The Kubernetes API version the build targets.
    pub kubernetes_api: &'static str,
}

/// Build information for `program`.
pub fn build_info(program: &'static str) -> BuildInfo {
    BuildInfo {
        program,
        version: VERSION,
        kubernetes_api: "1.36",
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
    }
}
