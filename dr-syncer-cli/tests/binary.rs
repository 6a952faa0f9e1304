//! The binary answers `--help`, `--version` and `--version-json`.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_dr-syncer-cli");

#[test]
fn help_and_version() {
    let help = Command::new(BIN).arg("--help").output().expect("run --help");
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: dr-syncer-cli"));
    // Flags grouped under headings; every flag is still accepted before or after the subcommand.
    let stage_help = Command::new(BIN).args(["stage", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&stage_help.stdout);
    for heading in ["Clusters and namespaces:", "Drill steps:", "PVC data:", "Output:"] {
        assert!(text.contains(heading), "{heading} in {text}");
    }

    let version = Command::new(BIN)
        .arg("--version")
        .output()
        .expect("run --version");
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("dr-syncer-cli {}", env!("CARGO_PKG_VERSION"))
    );

    let json = Command::new(BIN)
        .arg("--version-json")
        .output()
        .expect("run --version-json");
    assert!(json.status.success());
    let info: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(info["program"], "dr-syncer-cli");
}

#[test]
fn unknown_flag_is_a_clear_error() {
    let out = Command::new(BIN).arg("--no-such-flag").output().expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}

/// `deploy/remote-rbac/source-reader.yaml` and `dr-writer.yaml` are `dr-syncer-cli rbac`'s output for the
/// operator's default types (regenerate them with the commands in their headers when this fails).
#[test]
fn shipped_remote_rbac_is_the_generators_output() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (args, file) in [
        (&["rbac", "--source"][..], "deploy/remote-rbac/source-reader.yaml"),
        (
            &["rbac", "--destination", "--pvc-data"][..],
            "deploy/remote-rbac/dr-writer.yaml",
        ),
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let shipped = std::fs::read_to_string(root.join(file)).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            shipped,
            "{file} differs from `dr-syncer-cli {}`",
            args.join(" ")
        );
    }
    // The PVC data roles of the source side: `rbac --source --pvc-data` prints those of
    // deploy/remote-rbac/pvc-data.yaml, and with a subject binds them (in the agents' namespace).
    let roles = |yaml: &str| -> Vec<serde_json::Value> {
        dr_syncer_testenv::parse_yaml_documents(yaml)
            .unwrap()
            .into_iter()
            .map(|d| serde_json::to_value(d).unwrap())
            .filter(|d| {
                d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("dr-syncer-pvc-"))
                    && d["kind"] == "ClusterRole"
            })
            .map(|d| serde_json::json!({"name": d["metadata"]["name"], "rules": d["rules"]}))
            .collect()
    };
    let shipped = std::fs::read_to_string(root.join("deploy/remote-rbac/pvc-data.yaml")).unwrap();
    let out = Command::new(BIN)
        .args([
            "rbac",
            "--source",
            "--pvc-data",
            "--bind-service-account",
            "dr-syncer/dr-syncer-remote",
        ])
        .output()
        .unwrap();
    let generated = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(roles(&generated), roles(&shipped));
    assert_eq!(roles(&shipped).len(), 2);
    assert!(generated.contains(
        "kind: RoleBinding\nmetadata:\n  name: dr-syncer-pvc-agents\n  namespace: dr-syncer-system"
    ));
    assert!(generated.contains("kind: ClusterRoleBinding\nmetadata:\n  name: dr-syncer-pvc-mounts"));
    // Offline, and clear about what it cannot do.
    let wildcard = Command::new(BIN)
        .args(["rbac", "--source", "--resource-types", "*"])
        .output()
        .unwrap();
    assert_eq!(wildcard.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&wildcard.stderr).contains("cannot be listed offline"));
    let no_side = Command::new(BIN).args(["rbac"]).output().unwrap();
    assert_eq!(
        no_side.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&no_side.stderr)
    );
}

/// Shell completions and the man page come from the same argument definitions; a shell clap does not
/// know is a usage error.
#[test]
fn completions_and_the_man_page() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef dr-syncer-cli"),
        ("fish", "complete -c dr-syncer-cli"),
    ] {
        let out = Command::new(BIN).args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        for word in ["cutover", "failback", "source-kubeconfig"] {
            assert!(script.contains(word), "{shell} completes {word}");
        }
    }
    let bad = Command::new(BIN).args(["completions", "nosh"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let man = Command::new(BIN).arg("man").output().unwrap();
    assert!(man.status.success());
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(
        page.contains(".TH dr-syncer-cli 1") && page.contains("cutover"),
        "{page}"
    );
}

/// Installed as `kubectl-dr_syncer`, the CLI is a kubectl plugin: `kubectl dr-syncer …` runs it.
#[test]
fn it_runs_as_a_kubectl_plugin() {
    let Ok(kubectl) = dr_syncer_testenv::kubectl_path() else {
        eprintln!("SKIPPED: no kubectl (scripts/build-control-plane.sh provides one)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(BIN, dir.path().join("kubectl-dr_syncer")).unwrap();
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(&kubectl)
        .args(["dr-syncer", "--version-json"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(info["program"], "dr-syncer-cli");
    let list = Command::new(&kubectl)
        .args(["plugin", "list"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("kubectl-dr_syncer"),
        "{list:?}"
    );
}
