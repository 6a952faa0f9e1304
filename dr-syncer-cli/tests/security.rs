//! The security suite, CLI part (issue 21; see dr-syncer-operator/tests/security.rs): each test is an
//! attack, refused.

use std::process::Command;

use dr_syncer_testenv::{ControlPlane, init_tracing};

const BIN: &str = env!("CARGO_BIN_EXE_dr-syncer-cli");

/// Every drill step that would write into `kube-system` (as the source, the destination, or the one side
/// of a fence or promote) exits 4 naming the protected namespace, and writes nothing on either cluster.
#[tokio::test]
async fn no_drill_step_touches_kube_system() {
    init_tracing();
    let [src, dst] = ControlPlane::start_many(["cli-sec-prod", "cli-sec-dr"])
        .await
        .unwrap();
    let reader = src.identity("dr-syncer-cli").await.unwrap();
    let writer = dst.identity("dr-syncer-cli").await.unwrap();
    let (r, w) = (
        reader.kubeconfig.to_str().unwrap(),
        writer.kubeconfig.to_str().unwrap(),
    );
    let both = |ns: &[&str], step: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = ["--source-kubeconfig", r, "--dest-kubeconfig", w]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        args.extend(ns.iter().map(|s| (*s).to_owned()));
        args.extend(["--resource-types".to_owned(), "configmaps".to_owned()]);
        args.extend(step.iter().map(|s| (*s).to_owned()));
        args
    };
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("source", both(&["--source-namespace", "kube-system"], &["stage"])),
        (
            "destination",
            both(
                &["--source-namespace", "default", "--dest-namespace", "kube-system"],
                &["stage"],
            ),
        ),
        (
            "source",
            both(&["--source-namespace", "kube-system"], &["cutover", "--yes"]),
        ),
        (
            "destination",
            vec![
                "--dest-kubeconfig".into(),
                w.into(),
                "--dest-namespace".into(),
                "kube-system".into(),
                "promote".into(),
                "--yes".into(),
            ],
        ),
        (
            "source",
            vec![
                "--source-kubeconfig".into(),
                r.into(),
                "--source-namespace".into(),
                "kube-node-lease".into(),
                "fence".into(),
                "--yes".into(),
            ],
        ),
    ];
    for (role, args) in cases {
        let out = Command::new(BIN).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("{role} namespace kube-")) && stderr.contains("is protected"),
            "{args:?}: {stderr}"
        );
    }
    for cp in [&src, &dst] {
        let writes = cp.requests("dr-syncer-cli").await.unwrap().stored_writes();
        assert_eq!(writes, 0, "nothing written");
    }
}
