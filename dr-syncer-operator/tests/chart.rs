//! The Helm chart `charts/dr-syncer`, rendered and linted by Helm's own engine (helm-python-sdk, through
//! `scripts/helm/render.py`): with default values it installs what `deploy/` installs (plus a
//! PodDisruptionBudget); its schema refuses bad values; the render applies server-side to a test control
//! plane, an upgrade updates it, and CRDs left by the Go project's chart (older schema, no Helm
//! ownership) are adopted as the chart's README says and updated to the new schema. Helm's own release
//! operations (install, upgrade, uninstall through `scripts/helm/release.py`) run against a control plane:
//! the README's steps for moving from the Go chart, an upgrade, and an uninstall that keeps the CRDs and
//! the users' resources and leaves nothing behind or stuck.
//!
//! The renderer needs the cached virtualenv `scripts/helm/venv.sh` makes (the test script does, and sets
//! `DR_SYNCER_HELM_PYTHON` and `DR_SYNCER_REQUIRE_HELM=1`); without it the Helm tests print `SKIPPED`.

mod common;

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Command, Output},
};

use common::T;
use dr_syncer_core::version::OPERATOR_IMAGE;
use dr_syncer_testenv::{ControlPlane, parse_yaml_documents, wait_for, workspace_root};
use serde_json::Value;

/// The Python of the helm-python-sdk virtualenv, or `None` (after printing `SKIPPED`).
fn helm_python() -> Option<PathBuf> {
    let candidate = std::env::var_os("DR_SYNCER_HELM_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            let cache = std::env::var_os("DR_SYNCER_CACHE_DIR")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/dr-syncer")))?;
            Some(cache.join("helm-venv/0.2.2/bin/python"))
        });
    match candidate.filter(|p| p.is_file()) {
        Some(p) => Some(p),
        None => {
            let why = "the helm-python-sdk virtualenv is missing (run scripts/helm/venv.sh)";
            if std::env::var_os("DR_SYNCER_REQUIRE_HELM").is_some_and(|v| v == "1") {
                panic!("{why}");
            }
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

/// `render.py charts/dr-syncer --release dr-syncer --namespace dr-syncer ARGS…`.
fn render(python: &PathBuf, args: &[&str]) -> Output {
    let root = workspace_root();
    Command::new(python)
        .arg(root.join("scripts/helm/render.py"))
        .arg(root.join("charts/dr-syncer"))
        .args(["--release", "dr-syncer", "--namespace", "dr-syncer"])
        .args(args)
        .output()
        .unwrap()
}

fn rendered(python: &PathBuf, args: &[&str]) -> String {
    let out = render(python, args);
    assert!(
        out.status.success(),
        "render {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Objects by `Kind/name`, without what Helm adds: its standard labels and the CRDs' keep policy.
fn objects(yaml: &str) -> BTreeMap<String, Value> {
    const HELM_LABELS: [&str; 4] = [
        "helm.sh/chart",
        "app.kubernetes.io/managed-by",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
    ];
    let strip = |meta: &mut Value| {
        for (field, keys) in [
            ("labels", &HELM_LABELS[..]),
            ("annotations", &["helm.sh/resource-policy"][..]),
        ] {
            if let Some(map) = meta.get_mut(field).and_then(Value::as_object_mut) {
                for k in keys {
                    map.remove(*k);
                }
                if map.is_empty() {
                    meta.as_object_mut().unwrap().remove(field);
                }
            }
        }
    };
    parse_yaml_documents(yaml)
        .unwrap()
        .into_iter()
        .map(|o| {
            let mut v = serde_json::to_value(&o).unwrap();
            strip(&mut v["metadata"]);
            if let Some(meta) = v.pointer_mut("/spec/template/metadata") {
                strip(meta);
            }
            let kind = v["kind"].as_str().unwrap_or_default().to_string();
            (
                format!("{kind}/{}", o.metadata.name.clone().unwrap_or_default()),
                v,
            )
        })
        .collect()
}

#[test]
fn the_charts_crds_and_alerts_are_the_deploy_files() {
    let root = workspace_root();
    let out = Command::new(root.join("scripts/helm/sync-crds.sh"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "run scripts/helm/sync-crds.sh: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(root.join("charts/dr-syncer/files/prometheus-rule.yaml")).unwrap(),
        std::fs::read_to_string(root.join("deploy/prometheus-rule.yaml")).unwrap(),
        "copy deploy/prometheus-rule.yaml to the chart's files/"
    );
    let chart = std::fs::read_to_string(root.join("charts/dr-syncer/Chart.yaml")).unwrap();
    let version = dr_syncer_core::version::VERSION;
    assert!(chart.contains(&format!("\nversion: {version}\n")), "{chart}");
    assert!(
        chart.contains(&format!("\nappVersion: \"{version}\"\n")),
        "{chart}"
    );
}

#[test]
fn with_default_values_the_chart_installs_what_deploy_installs() {
    let Some(python) = helm_python() else {
        return;
    };
    let chart = objects(&rendered(&python, &["--lint", "--strict"]));
    let root = workspace_root();
    let mut deploy = BTreeMap::new();
    for file in [
        "crds/remoteclusters.dr-syncer.io.yaml",
        "crds/clustermappings.dr-syncer.io.yaml",
        "crds/namespacemappings.dr-syncer.io.yaml",
        "rbac.yaml",
        "operator.yaml",
        "service.yaml",
    ] {
        deploy.extend(objects(
            &std::fs::read_to_string(root.join("deploy").join(file)).unwrap(),
        ));
    }
    for (key, want) in &deploy {
        let got = chart
            .get(key)
            .unwrap_or_else(|| panic!("{key} is not in the chart's render"));
        assert_eq!(got, want, "{key} differs from deploy/");
    }
    let extra: Vec<&String> = chart.keys().filter(|k| !deploy.contains_key(*k)).collect();
    assert_eq!(
        extra,
        ["PodDisruptionBudget/dr-syncer-operator"],
        "only the PDB is added"
    );
    assert_eq!(
        chart["Deployment/dr-syncer-operator"]["spec"]["template"]["spec"]["containers"][0]["image"],
        OPERATOR_IMAGE
    );
    // The monitoring objects exist, off by default.
    let monitoring = objects(&rendered(
        &python,
        &["--set", "serviceMonitor.enabled=true,prometheusRule.enabled=true"],
    ));
    assert!(
        monitoring.contains_key("ServiceMonitor/dr-syncer-operator"),
        "{:?}",
        monitoring.keys()
    );
    assert!(monitoring.keys().any(|k| k.starts_with("PrometheusRule/")));
    // One replica: no PDB; a value that is not in the schema, or of the wrong type: refused.
    let single = objects(&rendered(&python, &["--set", "replicas=1"]));
    assert!(!single.keys().any(|k| k.starts_with("PodDisruptionBudget/")));
    for bad in [
        &["--set-string", "replicas=two"][..],
        &["--set", "noSuchValue=1"][..],
        &["--set", "image.noSuchField=x"][..],
    ] {
        let out = render(&python, bad);
        assert!(!out.status.success(), "{bad:?} rendered");
    }
}

fn kubectl(cp: &ControlPlane, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = cp
        .kubectl()
        .unwrap()
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or("").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CRD as the Go project's chart left it: created outside Helm, with an older schema (without the
/// fields this version added).
fn go_era_crd(file: &str, drop: &[&str]) -> String {
    let text = std::fs::read_to_string(workspace_root().join("deploy/crds").join(file)).unwrap();
    let mut crd = serde_json::to_value(parse_yaml_documents(&text).unwrap().remove(0)).unwrap();
    let spec = crd
        .pointer_mut("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties")
        .unwrap()
        .as_object_mut()
        .unwrap();
    for path in drop {
        let mut parts = path.split('.');
        let first = parts.next().unwrap();
        match parts.next() {
            None => {
                spec.remove(first);
            }
            Some(inner) => {
                spec[first]["properties"].as_object_mut().unwrap().remove(inner);
            }
        }
    }
    serde_json::to_string(&crd).unwrap()
}

/// The operator's Deployment after an upgrade with `replicas=3,image.tag=0.1.1`.
fn assert_upgraded(cp: &ControlPlane) {
    let d: Value = serde_json::from_str(&kubectl(
        cp,
        &[
            "-n",
            "dr-syncer",
            "get",
            "deployment",
            "dr-syncer-operator",
            "-o",
            "json",
        ],
        None,
    ))
    .unwrap();
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/dr-syncer/dr-syncer-operator:0.1.1"
    );
}

/// What the Go chart left: its CRDs, created outside Helm, with an older schema.
fn create_go_era_crds(cp: &ControlPlane) {
    for (file, drop) in [
        (
            "remoteclusters.dr-syncer.io.yaml",
            &["pvcSync.moverSourceAddresses"][..],
        ),
        ("namespacemappings.dr-syncer.io.yaml", &["adoptExisting"][..]),
        ("clustermappings.dr-syncer.io.yaml", &[][..]),
    ] {
        kubectl(cp, &["create", "-f", "-"], Some(&go_era_crd(file, drop)));
    }
}

/// The chart README's step 3: label and annotate the CRDs so that the release adopts them.
fn adopt_crds(cp: &ControlPlane) {
    for crd in [
        "remoteclusters.dr-syncer.io",
        "clustermappings.dr-syncer.io",
        "namespacemappings.dr-syncer.io",
    ] {
        kubectl(
            cp,
            &[
                "label",
                "crd",
                crd,
                "app.kubernetes.io/managed-by=Helm",
                "--overwrite",
            ],
            None,
        );
        kubectl(
            cp,
            &[
                "annotate",
                "crd",
                crd,
                "meta.helm.sh/release-name=dr-syncer",
                "meta.helm.sh/release-namespace=dr-syncer",
                "--overwrite",
            ],
            None,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_applies_upgrades_and_adopts_the_go_charts_crds() {
    let Some(python) = helm_python() else {
        return;
    };
    let cp = ControlPlane::start("chart").await.unwrap();
    // What the Go chart left: CRDs without Helm ownership, with an older schema.
    create_go_era_crds(&cp);
    // The chart README's adoption steps.
    adopt_crds(&cp);
    kubectl(&cp, &["create", "namespace", "dr-syncer"], None);
    let install = rendered(&python, &[]);
    let apply = [
        "apply",
        "--server-side",
        "--field-manager",
        "helm",
        "--force-conflicts",
        "-f",
        "-",
    ];
    kubectl(&cp, &apply, Some(&install));
    let schema = |crd: &str, pointer: &str| {
        let out = kubectl(&cp, &["get", "crd", crd, "-o", "json"], None);
        let v: Value = serde_json::from_str(&out).unwrap();
        (
            v.pointer(pointer).is_some(),
            v["metadata"]["annotations"]["helm.sh/resource-policy"].clone(),
        )
    };
    assert_eq!(
        schema(
            "remoteclusters.dr-syncer.io",
            "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/pvcSync/properties/moverSourceAddresses"
        ),
        (true, Value::from("keep")),
        "the adopted CRD has the new schema and is kept on uninstall"
    );
    assert!(
        schema(
            "namespacemappings.dr-syncer.io",
            "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/adoptExisting"
        )
        .0
    );
    // The new field is served: an object using it keeps it.
    wait_for("the new schema served", T, || async {
        let out = cp
            .kubectl()
            .unwrap()
            .args(["apply", "--dry-run=server", "-o", "json", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(
                    b"apiVersion: dr-syncer.io/v1alpha1\nkind: RemoteCluster\nmetadata: {name: prod, namespace: dr-syncer}\nspec:\n  kubeconfigSecretRef: {name: prod-kubeconfig, namespace: dr-syncer}\n  pvcSync: {enabled: true, moverSourceAddresses: [\"203.0.113.0/24\"]}\n",
                )?;
                c.wait_with_output()
            })
            .unwrap();
        Ok(String::from_utf8_lossy(&out.stdout)
            .contains("203.0.113.0/24")
            .then_some(()))
    })
    .await
    .unwrap();

    // An upgrade: other values, applied over the first render.
    let upgrade = rendered(&python, &["--set", "replicas=3,image.tag=0.1.1"]);
    kubectl(&cp, &apply, Some(&upgrade));
    assert_upgraded(&cp);
}

/// `release.py ARGS…` (Helm's install/upgrade/uninstall through its Go SDK) against `cp`.
fn release(python: &PathBuf, cp: &ControlPlane, args: &[&str]) -> Value {
    let root = workspace_root();
    let out = Command::new(python)
        .current_dir(&root)
        .arg(root.join("scripts/helm/release.py"))
        .args(args)
        .arg("--kubeconfig")
        .arg(cp.kubeconfig())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "release.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `kubectl get KIND -n NS -o json` items' names (all namespaces for an empty `ns`).
fn names(cp: &ControlPlane, kind: &str, ns: &str) -> Vec<String> {
    let mut args = vec!["get", kind, "-o", "json"];
    if ns.is_empty() {
        args.push("--all-namespaces");
    } else {
        args.extend(["-n", ns]);
    }
    let v: Value = serde_json::from_str(&kubectl(cp, &args, None)).unwrap();
    let mut out: Vec<String> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installs_over_the_go_charts_crds_upgrades_and_uninstalls() {
    let Some(python) = helm_python() else {
        return;
    };
    let cp = ControlPlane::start("helm-release").await.unwrap();
    // The Go chart's leftovers: its CRDs (older schema, created outside Helm) and the user's resources.
    create_go_era_crds(&cp);
    kubectl(&cp, &["create", "namespace", "dr-syncer"], None);
    let remote_cluster = "apiVersion: dr-syncer.io/v1alpha1\nkind: RemoteCluster\nmetadata: {name: prod, namespace: dr-syncer}\nspec:\n  kubeconfigSecretRef: {name: prod-kubeconfig, namespace: dr-syncer}\n";
    wait_for("the Go-era CRDs served", T, || async {
        let out = cp
            .kubectl()
            .unwrap()
            .args(["create", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(remote_cluster.as_bytes())?;
                c.wait()
            })
            .unwrap();
        Ok(out.success().then_some(()))
    })
    .await
    .unwrap();

    // Without adoption Helm refuses the CRDs, naming the ownership problem.
    let root = workspace_root();
    let refused = Command::new(&python)
        .current_dir(&root)
        .arg("scripts/helm/release.py")
        .args([
            "upgrade",
            "dr-syncer",
            "charts/dr-syncer",
            "--install",
            "-n",
            "dr-syncer",
        ])
        .arg("--kubeconfig")
        .arg(cp.kubeconfig())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("invalid ownership metadata"), "{stderr}");
    let _ = release(
        &python,
        &cp,
        &["uninstall", "dr-syncer", "-n", "dr-syncer", "--ignore-not-found"],
    );

    // The chart README's steps 3 and 4: label and annotate the CRDs, then upgrade --install (Helm 4's
    // server-side apply needs --force-conflicts for the fields the Go chart's `kubectl create` owns).
    adopt_crds(&cp);
    let installed = release(
        &python,
        &cp,
        &[
            "upgrade",
            "dr-syncer",
            "charts/dr-syncer",
            "--install",
            "-n",
            "dr-syncer",
            "--create-namespace",
            "--force-conflicts",
        ],
    );
    assert_eq!(installed["status"], "deployed", "{installed}");
    assert_eq!(installed["revision"], 1);
    let crd: Value = serde_json::from_str(&kubectl(
        &cp,
        &["get", "crd", "remoteclusters.dr-syncer.io", "-o", "json"],
        None,
    ))
    .unwrap();
    assert!(
        crd.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/pvcSync/properties/moverSourceAddresses")
            .is_some(),
        "the release updated the adopted CRD's schema"
    );
    assert_eq!(crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep");
    assert_eq!(names(&cp, "deployments", "dr-syncer"), ["dr-syncer-operator"]);
    assert!(names(&cp, "clusterroles", "").contains(&"dr-syncer-operator".to_owned()));
    assert_eq!(names(&cp, "services", "dr-syncer").len(), 1);
    assert_eq!(names(&cp, "poddisruptionbudgets", "dr-syncer").len(), 1);

    // helm upgrade with other values: a second revision, applied.
    let upgraded = release(
        &python,
        &cp,
        &[
            "upgrade",
            "dr-syncer",
            "charts/dr-syncer",
            "-n",
            "dr-syncer",
            "--set",
            "replicas=3,image.tag=0.1.1",
        ],
    );
    assert_eq!(
        (upgraded["revision"].clone(), upgraded["status"].clone()),
        (Value::from(2), Value::from("deployed"))
    );
    assert_upgraded(&cp);
    assert_eq!(
        names(&cp, "secrets", "dr-syncer"),
        [
            "sh.helm.release.v1.dr-syncer.v1",
            "sh.helm.release.v1.dr-syncer.v2"
        ]
    );

    // helm uninstall: the operator's objects go, the CRDs and the user's RemoteCluster stay, nothing is
    // left terminating.
    let gone = release(&python, &cp, &["uninstall", "dr-syncer", "-n", "dr-syncer"]);
    assert_eq!(gone["uninstalled"], true);
    assert!(names(&cp, "deployments", "dr-syncer").is_empty());
    assert!(
        names(&cp, "serviceaccounts", "dr-syncer")
            .iter()
            .all(|n| n == "default")
    );
    assert!(names(&cp, "services", "dr-syncer").is_empty());
    assert!(names(&cp, "poddisruptionbudgets", "dr-syncer").is_empty());
    assert!(
        names(&cp, "secrets", "dr-syncer").is_empty(),
        "the release history is gone"
    );
    assert!(
        !names(&cp, "clusterroles", "")
            .iter()
            .any(|n| n.starts_with("dr-syncer")),
        "{:?}",
        names(&cp, "clusterroles", "")
    );
    assert_eq!(
        names(&cp, "crd", "")
            .into_iter()
            .filter(|n| n.ends_with(".dr-syncer.io"))
            .collect::<Vec<_>>(),
        [
            "clustermappings.dr-syncer.io",
            "namespacemappings.dr-syncer.io",
            "remoteclusters.dr-syncer.io"
        ]
    );
    assert_eq!(names(&cp, "remoteclusters", "dr-syncer"), ["prod"]);
    let all: Value = serde_json::from_str(&kubectl(
        &cp,
        &[
            "get",
            "remoteclusters,clustermappings,namespacemappings",
            "-A",
            "-o",
            "json",
        ],
        None,
    ))
    .unwrap();
    assert!(
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["metadata"]["deletionTimestamp"].is_null()),
        "nothing left terminating: {all}"
    );
}

/// `ci/flags-values.yaml` sets a value for every operator flag, and `ci/shards-values.yaml` for those that
/// exclude one of them (`--shards` instead of `--leader-elect`): each flag reaches the Deployment exactly
/// once (a repeatable one at least once) in one of the two, and never twice, as an argument or through
/// its environment variable (`LOG_LEVEL`, …). Flags without a named value are listed here with the reason.
#[test]
fn every_operator_flag_has_a_chart_value() {
    use clap::CommandFactory;
    let Some(python) = helm_python() else {
        return;
    };
    let renders: Vec<(Vec<String>, Vec<String>)> = ["flags-values.yaml", "shards-values.yaml"]
        .iter()
        .map(|file| {
            let rendered = objects(&rendered(
                &python,
                &[
                    "-f",
                    &workspace_root()
                        .join("charts/dr-syncer/ci")
                        .join(file)
                        .display()
                        .to_string(),
                ],
            ));
            let container =
                &rendered["Deployment/dr-syncer-operator"]["spec"]["template"]["spec"]["containers"][0];
            let args = container["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect();
            let env = container["env"]
                .as_array()
                .map(|e| e.iter().map(|v| v["name"].as_str().unwrap().to_owned()).collect())
                .unwrap_or_default();
            (args, env)
        })
        .collect();
    // No value of their own: the pod's service account and POD_NAME, printing and exiting, and the
    // one-round mode for Jobs and tests (a Deployment's pod would exit and restart).
    let unvalued = [
        "kubeconfig",
        "identity",
        "version-json",
        "help",
        "version",
        "once",
    ];
    let mut missing = Vec::new();
    for arg in dr_syncer_operator::Args::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if unvalued.contains(&long) {
            continue;
        }
        let flag = format!("--{long}");
        let repeatable = matches!(arg.get_action(), clap::ArgAction::Append);
        let counts: Vec<usize> = renders
            .iter()
            .map(|(args, env)| {
                let as_arg = args
                    .iter()
                    .filter(|a| **a == flag || a.starts_with(&format!("{flag}=")))
                    .count();
                let as_env = arg
                    .get_env()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| env.iter().any(|v| v == e));
                as_arg + usize::from(as_env)
            })
            .collect();
        let once = counts.iter().any(|c| *c == 1 || (repeatable && *c > 1));
        let twice = !repeatable && counts.iter().any(|c| *c > 1);
        if !once || twice {
            missing.push(format!("{flag}: {counts:?} in the two renders"));
        }
    }
    assert!(
        missing.is_empty(),
        "flags without exactly one chart value: {missing:#?}\nrenders: {renders:?}"
    );
}
