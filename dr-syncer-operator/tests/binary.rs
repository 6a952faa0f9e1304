//! The binary answers `--help`, `--version` and `--version-json`.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_dr-syncer-operator");

#[test]
fn help_and_version() {
    let help = Command::new(BIN).arg("--help").output().expect("run --help");
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: dr-syncer-operator"));

    let version = Command::new(BIN)
        .arg("--version")
        .output()
        .expect("run --version");
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("dr-syncer-operator {}", env!("CARGO_PKG_VERSION"))
    );

    let json = Command::new(BIN)
        .arg("--version-json")
        .output()
        .expect("run --version-json");
    assert!(json.status.success());
    let info: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(info["program"], "dr-syncer-operator");
}

#[test]
fn unknown_flag_is_a_clear_error() {
    let out = Command::new(BIN).arg("--no-such-flag").output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}

/// `--shards` replaces leader election, and `--once`'s round is every mapping: either with it is refused
/// before anything runs.
#[test]
fn shards_exclude_leader_election_and_once() {
    for other in ["--leader-elect", "--once"] {
        let out = Command::new(BIN)
            .args(["--shards", "4", other])
            .env_remove("KUBECONFIG")
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{other}: {stderr}");
        assert!(
            stderr.contains("--shards") && stderr.contains(other),
            "{other}: {stderr}"
        );
    }
}
