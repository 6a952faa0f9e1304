//! Build information shared by the binaries (`--version`, `--version-json`).

use serde::Serialize;

/// The version of this crate (and of the whole workspace).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

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
    fn build_info_serialises() {
        let json = serde_json::to_value(build_info("dr-syncer-cli")).unwrap();
        assert_eq!(json["program"], "dr-syncer-cli");
        assert_eq!(json["version"], VERSION);
    }
}
