//! The built `dr-syncer-cli` binary against two test control planes: stage (twice, zero writes the second
//! time), plan (zero writes, secrets redacted), diff, cutover and failback restoring exact counts, the Go
//! flag form, JSON output, and bad input.

use std::{path::PathBuf, process::Command};

use dr_syncer_testenv::{ControlPlane, Identity, apply_yaml, create_namespace, init_tracing};
use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, StatefulSet},
    batch::v1::CronJob,
    core::v1::{ConfigMap, Namespace},
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_dr-syncer-cli");
/// Every kind of the sample application (the Go CLI's default list has no CronJobs).
const TYPES: &str = "configmaps,secrets,services,deployments,statefulsets,daemonsets,cronjobs";

const APP: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {LOG_LEVEL: info}
---
apiVersion: v1
kind: Secret
metadata: {name: db-credentials}
type: Opaque
stringData: {password: s3cret-value}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 2
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: postgres}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {nodeSelector: {pool: general}, containers: [{name: a, image: busybox}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report}
spec:
  schedule: "0 2 * * *"
  jobTemplate: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: r, image: busybox}]}}}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80}]}
"#;

struct Env {
    src: ControlPlane,
    dst: ControlPlane,
    reader: Identity,
    writer: Identity,
    ns: String,
}

async fn env(name: &str) -> Env {
    init_tracing();
    let [src, dst] = ControlPlane::start_many([&format!("{name}-prod"), &format!("{name}-dr")])
        .await
        .unwrap();
    let reader = src.identity("dr-syncer-cli").await.unwrap();
    let writer = dst.identity("dr-syncer-cli").await.unwrap();
    let ns = create_namespace(&src.client(), "shop").await.unwrap();
    apply_yaml(&src.client(), Some(&ns), APP).await.unwrap();
    Env {
        src,
        dst,
        reader,
        writer,
        ns,
    }
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Env {
    fn cli(&self, args: &[&str]) -> Out {
        self.cli_typed(Some(TYPES), args)
    }

    /// The CLI with `--resource-types types`, or without the flag.
    fn cli_typed(&self, types: Option<&str>, args: &[&str]) -> Out {
        let mut cmd = Command::new(BIN);
        cmd.arg("--source-kubeconfig")
            .arg(&self.reader.kubeconfig)
            .arg("--dest-kubeconfig")
            .arg(&self.writer.kubeconfig)
            .args(["--source-namespace", &self.ns]);
        if let Some(types) = types {
            cmd.args(["--resource-types", types]);
        }
        let out = cmd.args(args).output().expect("run dr-syncer-cli");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Writes to stored state (access reviews made by preflight do not count: they store nothing).
    async fn dst_writes(&self) -> u64 {
        self.dst.requests("dr-syncer-cli").await.unwrap().stored_writes()
    }

    async fn src_writes(&self) -> u64 {
        self.src.requests("dr-syncer-cli").await.unwrap().stored_writes()
    }
}

/// The Events in namespace `ns` of `cp`.
async fn events(cp: &ControlPlane, ns: &str) -> Vec<k8s_openapi::api::core::v1::Event> {
    Api::namespaced(cp.client(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
}

fn ok(o: &Out) {
    assert_eq!(o.code, 0, "stdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
}

#[tokio::test]
async fn stage_twice_plan_and_diff() {
    let e = env("cli-stage").await;
    // plan first: nothing written, secret values redacted.
    let before = e.dst_writes().await;
    let plan = e.cli(&["plan"]);
    ok(&plan);
    // Its progress (plain lines on a pipe) counts objects compared, not applied.
    assert!(plan.stderr.contains("objects to compare"), "{}", plan.stderr);
    assert!(!plan.stderr.contains("applied"), "{}", plan.stderr);
    assert_eq!(e.dst_writes().await - before, 0, "plan wrote");
    assert!(plan.stdout.contains("create"), "{}", plan.stdout);
    for secret in ["s3cret-value", "czNjcmV0LXZhbHVl"] {
        assert!(
            !plan.stdout.contains(secret) && !plan.stderr.contains(secret),
            "secret leaked:\n{}",
            plan.stdout
        );
    }
    let shown = e.cli(&["plan", "--show-secrets"]);
    ok(&shown);
    assert!(
        shown.stdout.contains("czNjcmV0LXZhbHVl"),
        "--show-secrets shows the value"
    );

    // diff before stage: drift (exit 3).
    let d = e.cli(&["diff"]);
    assert_eq!(d.code, 3, "{}", d.stdout);
    assert!(d.stdout.contains("missing on DR"), "{}", d.stdout);

    let first = e.cli(&["stage"]);
    ok(&first);
    // Not a terminal: progress as plain lines.
    assert!(
        first.stderr.contains("[stage] 7 objects to apply")
            && first.stderr.contains("[stage] applied 7/7 objects"),
        "{}",
        first.stderr
    );
    assert_eq!(e.src_writes().await, 0, "stage never writes to the source");
    assert!(
        events(&e.dst, &e.ns)
            .await
            .iter()
            .any(|ev| ev.reason.as_deref() == Some("Stage")
                && ev
                    .message
                    .as_deref()
                    .is_some_and(|m| m.contains("8 created") && m.contains("dr-syncer-cli"))),
        "the stage is recorded on the DR namespace"
    );
    let dep: Deployment = Api::namespaced(e.dst.client(), &e.ns).get("web").await.unwrap();
    assert_eq!(dep.spec.unwrap().replicas, Some(0), "DR side quiet");
    let before = e.dst_writes().await;
    let second = e.cli(&["stage"]);
    ok(&second);
    assert_eq!(
        e.dst_writes().await - before,
        0,
        "second stage wrote:\n{}",
        second.stdout
    );

    // In sync now; a source change is drift again.
    ok(&e.cli(&["diff"]));
    Api::<ConfigMap>::namespaced(e.src.client(), &e.ns)
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"LOG_LEVEL": "debug"}})),
        )
        .await
        .unwrap();
    let d = e.cli(&["diff", "-o", "json"]);
    assert_eq!(d.code, 3);
    let v: serde_json::Value = serde_json::from_str(&d.stdout).expect("JSON");
    assert_eq!(v["inSync"], false);
    assert!(
        v["differing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o.as_str().unwrap().ends_with("/settings"))
    );

    // JSON plan output has the documented shape.
    let p = e.cli(&["plan", "--output", "json"]);
    ok(&p);
    let v: serde_json::Value = serde_json::from_str(&p.stdout).expect("JSON");
    assert_eq!(v["mode"], "plan");
    assert_eq!(v["schemaVersion"], 1);
    assert_eq!(v["dryRun"], true);
    assert_eq!(v["sync"]["kinds"]["ConfigMap"]["updated"], 1);
    // The same report as YAML; `-o name`: the objects it would change, one per line.
    let y = e.cli(&["plan", "-o", "yaml"]);
    ok(&y);
    let from_yaml: serde_json::Value = serde_saphyr::from_str(&y.stdout).expect("YAML");
    assert_eq!(from_yaml["mode"], "plan");
    assert_eq!(from_yaml["sync"]["kinds"], v["sync"]["kinds"]);
    let n = e.cli(&["diff", "-o", "name"]);
    assert_eq!(n.code, 3, "{}", n.stderr);
    let names: Vec<&str> = n.stdout.lines().collect();
    assert!(
        names
            .iter()
            .any(|l| l.starts_with("ConfigMap/") && l.ends_with("/settings")),
        "{names:?}"
    );
    assert!(names.iter().all(|l| l.split('/').count() == 3), "{names:?}");
}

async fn replicas(cp: &ControlPlane, ns: &str) -> (Option<i32>, Option<i32>, Option<bool>, Option<String>) {
    let c = cp.client();
    let web = Api::<Deployment>::namespaced(c.clone(), ns)
        .get("web")
        .await
        .unwrap()
        .spec
        .unwrap()
        .replicas;
    let db = Api::<StatefulSet>::namespaced(c.clone(), ns)
        .get("db")
        .await
        .unwrap()
        .spec
        .unwrap()
        .replicas;
    let cron = Api::<CronJob>::namespaced(c.clone(), ns)
        .get("report")
        .await
        .unwrap()
        .spec
        .suspend;
    let ds: DaemonSet = Api::namespaced(c.clone(), ns).get("agent").await.unwrap();
    let sel = ds
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .node_selector
        .unwrap_or_default();
    let mut keys: Vec<String> = sel.iter().map(|(k, v)| format!("{k}={v}")).collect();
    keys.sort();
    (web, db, cron, Some(keys.join(",")))
}

#[tokio::test]
async fn cutover_and_failback_restore_exactly_and_are_rerunnable() {
    let e = env("cli-cutover").await;
    let original = replicas(&e.src, &e.ns).await;
    assert_eq!(
        original,
        (Some(3), Some(2), Some(false), Some("pool=general".into()))
    );

    // The Go CLI's form, single dashes included.
    let staged = Command::new(BIN)
        .arg(format!("-source-kubeconfig={}", e.reader.kubeconfig.display()))
        .arg(format!("-dest-kubeconfig={}", e.writer.kubeconfig.display()))
        .arg(format!("-source-namespace={}", e.ns))
        .arg(format!("-resource-types={TYPES}"))
        .arg("-mode=Stage")
        .output()
        .unwrap();
    assert!(
        staged.status.success(),
        "{}",
        String::from_utf8_lossy(&staged.stderr)
    );

    for round in 0..2 {
        let c = e.cli(&["cutover", "--yes"]);
        ok(&c);
        let src = replicas(&e.src, &e.ns).await;
        assert_eq!(
            src,
            (
                Some(0),
                Some(0),
                Some(true),
                Some("dr-syncer.io/quiet=true,pool=general".into())
            ),
            "round {round}"
        );
        let dr = replicas(&e.dst, &e.ns).await;
        assert_eq!(
            dr, original,
            "DR active with the source's original counts (round {round})"
        );
        let ns: Namespace = Api::all(e.dst.client()).get(&e.ns).await.unwrap();
        assert_eq!(
            ns.annotations().get("dr-syncer.io/active").map(String::as_str),
            Some("true")
        );
        assert_eq!(
            ns.annotations()
                .get("dr-syncer.io/activated-by")
                .map(String::as_str),
            Some("cutover")
        );
        assert!(ns.annotations().contains_key("dr-syncer.io/active-since"));
        let prod: Namespace = Api::all(e.src.client()).get(&e.ns).await.unwrap();
        assert_eq!(
            prod.annotations().get("dr-syncer.io/standby").map(String::as_str),
            Some("true"),
            "production marked standby (round {round})"
        );
    }
    // The drill steps are recorded as Events on the namespaces they changed.
    for (cp, reason) in [(&e.src, "Cutover"), (&e.dst, "Cutover")] {
        let list = events(cp, &e.ns).await;
        let ours: Vec<_> = list
            .iter()
            .filter(|ev| ev.reason.as_deref() == Some(reason))
            .filter(|ev| ev.involved_object.kind.as_deref() == Some("Namespace"))
            .collect();
        assert!(!ours.is_empty(), "{reason} event on {}: {list:?}", cp.name());
        let msg = ours[0].message.clone().unwrap_or_default();
        assert!(
            msg.contains("via dr-syncer-cli") && msg.contains('@'),
            "who and how: {msg}"
        );
    }
    // A stage onto the live DR site is refused before anything is written there.
    let before = e.dst_writes().await;
    let refused = e.cli(&["stage"]);
    assert_eq!(refused.code, 9, "{}{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("the DR side is the live site"),
        "{}",
        refused.stderr
    );
    assert_eq!(e.dst_writes().await - before, 0);
    assert_eq!(replicas(&e.dst, &e.ns).await, original);

    // A change made on the DR side while it is active shows in failback's reverse diff — and nothing
    // else does (no bookkeeping annotations, no activation state).
    Api::<ConfigMap>::namespaced(e.dst.client(), &e.ns)
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"LOG_LEVEL": "debug"}})),
        )
        .await
        .unwrap();
    let preview = e.cli(&["failback", "--dry-run", "-o", "json"]);
    ok(&preview);
    let v: serde_json::Value = serde_json::from_str(&preview.stdout).expect("JSON");
    let changed: Vec<&str> = v["reverseDiff"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["object"].as_str().unwrap())
        .collect();
    assert_eq!(
        changed,
        [format!("ConfigMap/{}/settings", e.ns)],
        "{}",
        preview.stdout
    );
    assert_eq!(
        replicas(&e.dst, &e.ns).await,
        original,
        "a dry run changes nothing"
    );

    // --sync-back carries the DR-side change to the source; the source still comes back with its
    // recorded originals. (Then cut over again for the failback rounds below.)
    let f = e.cli(&["failback", "--yes", "--sync-back"]);
    ok(&f);
    let cm: ConfigMap = Api::namespaced(e.src.client(), &e.ns)
        .get("settings")
        .await
        .unwrap();
    assert_eq!(cm.data.unwrap()["LOG_LEVEL"], "debug", "{}", f.stdout);
    assert_eq!(replicas(&e.src, &e.ns).await, original);
    ok(&e.cli(&["cutover", "--yes"]));
    assert_eq!(replicas(&e.dst, &e.ns).await, original);

    for round in 0..2 {
        let f = e.cli(&["failback", "--yes"]);
        ok(&f);
        assert_eq!(
            replicas(&e.src, &e.ns).await,
            original,
            "source restored exactly (round {round})"
        );
        let dr = replicas(&e.dst, &e.ns).await;
        assert_eq!(dr.0, Some(0));
        assert_eq!(dr.2, Some(true));
        let ns: Namespace = Api::all(e.dst.client()).get(&e.ns).await.unwrap();
        assert!(
            !ns.annotations()
                .keys()
                .any(|k| k.starts_with("dr-syncer.io/activ")),
            "{:?}",
            ns.annotations()
        );
        let prod: Namespace = Api::all(e.src.client()).get(&e.ns).await.unwrap();
        assert!(
            !prod
                .annotations()
                .keys()
                .any(|k| k.starts_with("dr-syncer.io/standby")),
            "{:?}",
            prod.annotations()
        );
        assert!(
            events(&e.src, &e.ns)
                .await
                .iter()
                .any(|ev| ev.reason.as_deref() == Some("Failback")),
            "failback recorded on production's namespace"
        );
        // Production is itself again: no records left on its workloads.
        let web: Deployment = Api::namespaced(e.src.client(), &e.ns).get("web").await.unwrap();
        assert!(
            !web.annotations()
                .keys()
                .any(|k| k.starts_with("dr-syncer.io/original-")),
            "{:?}",
            web.annotations()
        );
    }
}

#[tokio::test]
async fn bad_input_gets_one_clear_message_and_no_write() {
    let e = env("cli-bad").await;
    let before = e.dst_writes().await;
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec!["stage".into(), "--resource-types".into(), "gizmos".into()],
            4,
            "gizmos",
        ),
        (
            vec!["stage".into(), "--source-context".into(), "nope".into()],
            4,
            "nope",
        ),
        (
            vec!["stage".into(), "--source-namespace".into(), "missing-ns".into()],
            8,
            "missing-ns does not exist",
        ),
        (
            vec![
                "stage".into(),
                "--skip-preflight".into(),
                "--source-namespace".into(),
                "missing-ns".into(),
            ],
            4,
            "missing-ns",
        ),
        (
            vec!["failback".into(), "--yes".into(), "--migrate-pvc-data".into()],
            2,
            "--migrate-pvc-data applies to stage, cutover and preflight",
        ),
        (
            vec!["stage".into(), "--reverse-migrate-pvc-data".into()],
            2,
            "--reverse-migrate-pvc-data applies to failback",
        ),
        (
            vec![
                "stage".into(),
                "--migrate-pvc-data".into(),
                "--data-wait-timeout".into(),
                "soon".into(),
            ],
            2,
            "--data-wait-timeout",
        ),
        (vec![], 2, "subcommand"),
    ];
    for (args, code, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = e.cli(&args);
        assert_eq!(o.code, code, "{args:?}: {}", o.stderr);
        assert!(o.stderr.contains(needle), "{args:?}: {}", o.stderr);
        assert_eq!(
            o.stderr
                .lines()
                .filter(|l| l.starts_with("dr-syncer-cli:"))
                .count(),
            1,
            "{}",
            o.stderr
        );
    }
    // Unreadable kubeconfig and a mapping that does not parse.
    let dir = tempfile::tempdir().unwrap();
    let garbage: PathBuf = dir.path().join("garbage");
    std::fs::write(&garbage, "{not yaml: [").unwrap();
    let o = Command::new(BIN)
        .arg("--source-kubeconfig")
        .arg(&garbage)
        .args(["--source-namespace", "x", "stage"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", String::from_utf8_lossy(&o.stderr));
    let o = e.cli(&["stage", "--mapping", garbage.to_str().unwrap()]);
    assert_eq!(o.code, 4, "{}", o.stderr);
    assert!(o.stderr.contains("NamespaceMapping"), "{}", o.stderr);
    // An unreachable cluster.
    let unreachable = dir.path().join("unreachable");
    let kc = std::fs::read_to_string(&e.writer.kubeconfig).unwrap();
    let port = e.dst.port().to_string();
    std::fs::write(&unreachable, kc.replace(&port, "1")).unwrap();
    let o = Command::new(BIN)
        .arg("--source-kubeconfig")
        .arg(&e.reader.kubeconfig)
        .arg("--dest-kubeconfig")
        .arg(&unreachable)
        .args(["--source-namespace", &e.ns, "stage"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(e.dst_writes().await - before, 0, "bad input must not write");
}

#[tokio::test]
async fn preflight_finds_a_missing_storage_class_a_missing_crd_and_missing_permissions() {
    let e = env("cli-preflight").await;
    // Nothing blocks the sample application.
    let o = e.cli(&["preflight"]);
    ok(&o);
    assert!(o.stdout.contains("permissions"), "{}", o.stdout);

    // A PVC whose class the DR side lacks, and a custom resource whose CRD it lacks.
    apply_yaml(
        &e.src.client(),
        None,
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: gizmos.example.com}\nspec:\n  group: example.com\n  scope: Namespaced\n  names: {plural: gizmos, singular: gizmo, kind: Gizmo}\n  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}]\n",
    )
    .await
    .unwrap();
    apply_yaml(
        &e.src.client(),
        Some(&e.ns),
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec: {accessModes: [ReadWriteOnce], storageClassName: fast-ssd, resources: {requests: {storage: 1Gi}}}\n",
    )
    .await
    .unwrap();
    let mut found = false;
    for _ in 0..50 {
        let o = e.cli(&[
            "preflight",
            "--resource-types",
            "configmaps,persistentvolumeclaims,gizmos",
            "-o",
            "json",
        ]);
        if o.code == 8 {
            let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("JSON");
            let failed: Vec<String> = v["checks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["status"] == "fail")
                .map(|c| {
                    format!(
                        "{}: {}",
                        c["name"].as_str().unwrap(),
                        c["message"].as_str().unwrap()
                    )
                })
                .collect();
            assert!(
                failed
                    .iter()
                    .any(|f| f.starts_with("storage classes") && f.contains("fast-ssd")),
                "{failed:?}"
            );
            assert!(
                failed.iter().any(|f| f.starts_with("resource types")
                    && f.contains("gizmos.example.com")
                    && f.contains("install the CRDs")),
                "{failed:?}"
            );
            found = true;
            break;
        }
        // The new CRD may take a moment to appear in discovery.
        assert!(o.stderr.contains("gizmos") || o.code == 0, "{}", o.stderr);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(found, "preflight never reported the problems");

    // Stage runs preflight first and writes nothing when it blocks.
    let before = e.dst_writes().await;
    let o = e.cli(&["stage", "--resource-types", "configmaps,persistentvolumeclaims"]);
    assert_eq!(o.code, 8, "{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("fast-ssd"), "{}", o.stdout);
    assert_eq!(e.dst_writes().await - before, 0);

    // Permissions the destination identity lacks.
    e.dst
        .deny(&dr_syncer_testenv::DenyRule::new(
            "dr-syncer-cli",
            &["create", "patch"],
            &["configmaps"],
        ))
        .await
        .unwrap();
    let o = e.cli(&["preflight", "--resource-types", "configmaps"]);
    assert_eq!(o.code, 8, "{}", o.stdout);
    assert!(
        o.stdout.contains("destination: create configmaps"),
        "{}",
        o.stdout
    );

    // Without access reviews the same is found by trying each operation as a dry run.
    for cp in [&e.src, &e.dst] {
        cp.deny(&dr_syncer_testenv::DenyRule::new(
            "dr-syncer-cli",
            &["create"],
            &["selfsubjectaccessreviews.authorization.k8s.io"],
        ))
        .await
        .unwrap();
    }
    let o = e.cli(&["preflight", "--resource-types", "configmaps", "-o", "json"]);
    assert_eq!(o.code, 8, "{}\n{}", o.stdout, o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).expect("JSON");
    let permissions = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "permissions")
        .expect("a permissions check");
    assert_eq!(permissions["status"], "fail");
    let message = permissions["message"].as_str().unwrap();
    assert!(
        message.contains("destination: create configmaps")
            && message.contains("destination: patch configmaps"),
        "{message}"
    );
    assert!(
        !message.contains("get configmaps") && !message.contains("list configmaps"),
        "reads are allowed: {message}"
    );
    // The probes stored nothing.
    assert!(
        Api::<Namespace>::all(e.dst.client())
            .get_opt("dr-syncer-preflight-probe")
            .await
            .unwrap()
            .is_none()
    );
}

/// A cutover stopped at several points (here: the cluster refuses the next step, as a crash there would
/// leave it) and run again ends exactly as an uninterrupted one; so does an interrupted failback.
#[tokio::test]
async fn interrupted_cutover_and_failback_finish_when_run_again() {
    let e = env("cli-interrupt").await;
    let original = replicas(&e.src, &e.ns).await;
    ok(&e.cli(&["stage"]));
    let deny = |resources: &'static [&'static str]| {
        dr_syncer_testenv::DenyRule::new("dr-syncer-cli", &["patch"], resources)
    };

    let marks = |cp: &ControlPlane| {
        let (client, ns) = (cp.client(), e.ns.clone());
        async move {
            let ns: Namespace = Api::all(client).get(&ns).await.unwrap();
            let a = ns.annotations();
            (
                a.get("dr-syncer.io/standby").cloned(),
                a.get("dr-syncer.io/active").cloned(),
            )
        }
    };
    let workloads = &[
        "deployments.apps",
        "statefulsets.apps",
        "daemonsets.apps",
        "cronjobs.batch",
    ];

    // 1. Stopped after production is quiet, before it is marked standby.
    e.src.deny(&deny(&["namespaces"])).await.unwrap();
    // (preflight would see the missing permission and stop before the source is touched)
    let o = e.cli(&["cutover", "--yes", "--skip-preflight"]);
    assert_ne!(o.code, 0, "{}", o.stdout);
    assert_eq!(replicas(&e.src, &e.ns).await.0, Some(0), "source quiet");
    assert_eq!(marks(&e.src).await.0, None, "not yet marked standby");
    assert_eq!(replicas(&e.dst, &e.ns).await.0, Some(0), "DR not yet active");
    e.src.clear_denies().await.unwrap();

    // 2. Stopped after production is marked standby, before the DR namespace is marked active.
    e.dst.deny(&deny(&["namespaces"])).await.unwrap();
    let o = e.cli(&["cutover", "--yes", "--skip-preflight"]);
    assert_ne!(o.code, 0, "{}", o.stdout);
    assert_eq!(marks(&e.src).await.0.as_deref(), Some("true"));
    assert_eq!(marks(&e.dst).await.1, None, "DR not marked");
    assert_eq!(replicas(&e.dst, &e.ns).await.0, Some(0), "DR not yet active");
    e.dst.clear_denies().await.unwrap();

    // 3. Stopped after the DR namespace is marked active, before its workloads are activated.
    e.dst.deny(&deny(workloads)).await.unwrap();
    let o = e.cli(&["cutover", "--yes", "--skip-preflight"]);
    assert_ne!(o.code, 0, "{}", o.stdout);
    assert_eq!(marks(&e.dst).await.1.as_deref(), Some("true"));
    assert_eq!(
        replicas(&e.dst, &e.ns).await.0,
        Some(0),
        "DR workloads not yet active"
    );
    e.dst.clear_denies().await.unwrap();

    // Run again: it finds the DR side live, so it neither syncs nor copies over it; it finishes the
    // switch, to the exact end state of a clean cutover.
    let o = e.cli(&["cutover", "--yes", "-o", "json"]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert!(
        v.get("sync").is_none(),
        "no sync over the live side: {}",
        o.stdout
    );
    assert!(
        v["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().starts_with("sync skipped")),
        "{}",
        o.stdout
    );
    assert_eq!(replicas(&e.dst, &e.ns).await, original);
    let src = replicas(&e.src, &e.ns).await;
    assert_eq!((src.0, src.1, src.2), (Some(0), Some(0), Some(true)));
    assert_eq!(marks(&e.dst).await.1.as_deref(), Some("true"));

    // Failback stopped after the DR side is quiet, before the source is reactivated.
    e.src.deny(&deny(workloads)).await.unwrap();
    // Preflight sees that the source workloads cannot be reactivated and writes nothing …
    let (src_before, dst_before) = (e.src_writes().await, e.dst_writes().await);
    let o = e.cli(&["failback", "--yes"]);
    assert_eq!(o.code, 8, "{}\n{}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains("source: patch deployments.apps"),
        "{}",
        o.stdout
    );
    assert_eq!(e.src_writes().await - src_before, 0);
    assert_eq!(e.dst_writes().await - dst_before, 0);
    assert_eq!(replicas(&e.dst, &e.ns).await.0, Some(3), "DR still active");
    // … and without it the failback stops after the DR side is quiet.
    let o = e.cli(&["failback", "--yes", "--skip-preflight"]);
    assert_ne!(o.code, 0, "{}", o.stdout);
    assert_eq!(replicas(&e.dst, &e.ns).await.0, Some(0), "DR quiet");
    e.src.clear_denies().await.unwrap();
    assert_eq!(
        (marks(&e.src).await.0.as_deref(), marks(&e.dst).await.1.as_deref()),
        (Some("true"), Some("true")),
        "the marks record how far it got"
    );
    ok(&e.cli(&["failback", "--yes"]));
    assert_eq!(replicas(&e.src, &e.ns).await, original, "source restored exactly");
    assert_eq!(
        (marks(&e.src).await, marks(&e.dst).await),
        ((None, None), (None, None))
    );
    // A failback with nothing left to fail back writes nothing.
    let (src_before, dst_before) = (e.src_writes().await, e.dst_writes().await);
    let o = e.cli(&["failback", "--yes", "-o", "json"]);
    ok(&o);
    assert!(
        o.stdout.contains("NothingToFailBack") || o.stdout.contains("nothing to fail back"),
        "{}",
        o.stdout
    );
    assert_eq!(e.src_writes().await - src_before, 0);
    assert_eq!(e.dst_writes().await - dst_before, 0);
}

#[tokio::test]
async fn mapping_file_gives_the_operators_transformations() {
    let e = env("cli-mapping").await;
    let dir = tempfile::tempdir().unwrap();
    let mapping = dir.path().join("mapping.yaml");
    let dest = format!("{}-mapped", e.ns);
    std::fs::write(
        &mapping,
        format!(
            r#"apiVersion: dr-syncer.io/v1alpha1
kind: NamespaceMapping
metadata: {{name: shop, namespace: dr-syncer}}
spec:
  sourceCluster: prod
  destinationCluster: dr
  sourceNamespace: {src}
  destinationNamespace: {dest}
  resourceTypes: [configmaps, secrets, deployments]
  excludeResources: [{{kind: Secret, name: db-credentials}}]
  namespaceConfig: {{createNamespace: true, preserveLabels: true}}
  transformRules:
    - match: {{kind: Deployment}}
      patches: [{{op: add, path: /metadata/labels, value: {{site: dr}}}}]
"#,
            src = e.ns
        ),
    )
    .unwrap();
    let path = mapping.to_str().unwrap();
    let o = e.cli_typed(None, &["stage", "--mapping", path]);
    ok(&o);
    let dst = e.dst.client();
    let dep: Deployment = Api::namespaced(dst.clone(), &dest).get("web").await.unwrap();
    assert_eq!(
        dep.spec.as_ref().unwrap().replicas,
        Some(0),
        "scaleToZero (schema default)"
    );
    assert_eq!(
        dep.labels().get("site").map(String::as_str),
        Some("dr"),
        "transformRules applied"
    );
    assert_eq!(
        dep.annotations()
            .get("dr-syncer.io/synced-by")
            .map(String::as_str),
        Some(format!("cli/{}", e.ns).as_str())
    );
    let ns: Namespace = Api::all(dst.clone()).get(&dest).await.unwrap();
    assert_eq!(
        ns.annotations()
            .get("dr-syncer.io/source-cluster")
            .map(String::as_str),
        Some("prod"),
        "sourceCluster from the mapping"
    );
    assert!(
        Api::<ConfigMap>::namespaced(dst.clone(), &dest)
            .get_opt("settings")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(dst.clone(), &dest)
            .get_opt("db-credentials")
            .await
            .unwrap()
            .is_none(),
        "excludeResources honoured"
    );
    assert!(
        Api::<StatefulSet>::namespaced(dst.clone(), &dest)
            .get_opt("db")
            .await
            .unwrap()
            .is_none(),
        "resourceTypes honoured"
    );
    // The destination namespace comes from the mapping, so the second run finds everything in sync.
    let d = e.cli_typed(None, &["diff", "--mapping", path]);
    assert_eq!(d.code, 0, "{}\n{}", d.stdout, d.stderr);
}

/// A CRD in a `*.k8s.io` group (as the Gateway API's are) and one in a group of its own.
fn crd(group: &str, plural: &str, kind: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: {plural}.{group}\n  annotations: {{api-approved.kubernetes.io: \"https://github.com/kubernetes/enhancements/pull/1111\"}}\nspec:\n  group: {group}\n  scope: Namespaced\n  names: {{plural: {plural}, singular: {singular}, kind: {kind}}}\n  versions: [{{name: v1, served: true, storage: true, schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}}}]\n",
        singular = kind.to_lowercase()
    )
}

#[tokio::test]
async fn include_custom_resources_copies_every_crd_backed_type() {
    let e = env("cli-crs").await;
    for cp in [&e.src, &e.dst] {
        for (group, plural, kind) in [
            ("example.com", "gizmos", "Gizmo"),
            ("gateway.networking.k8s.io", "httproutes", "HTTPRoute"),
        ] {
            apply_yaml(&cp.client(), None, &crd(group, plural, kind))
                .await
                .unwrap();
        }
    }
    // The new types are served once their CRDs are established: retry until they are.
    dr_syncer_testenv::wait_for("the custom resources created", std::time::Duration::from_secs(30), || async {
        Ok(apply_yaml(
            &e.src.client(),
            Some(&e.ns),
            "apiVersion: example.com/v1\nkind: Gizmo\nmetadata: {name: g1}\nspec: {size: 3}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web}\nspec: {hostnames: [shop.example.com]}\n",
        )
        .await
        .ok())
    })
    .await
    .unwrap();
    let gizmo = kube::discovery::ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Gizmo".into(),
        plural: "gizmos".into(),
    };
    let route = kube::discovery::ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: "HTTPRoute".into(),
        plural: "httproutes".into(),
    };
    let get = |ar: &kube::discovery::ApiResource, name: &str| {
        let api: Api<kube::core::DynamicObject> = Api::namespaced_with(e.dst.client(), &e.ns, ar);
        let name = name.to_owned();
        async move { api.get_opt(&name).await.unwrap() }
    };

    // Both types served on the DR side too before anything is read there.
    for ar in [&gizmo, &route] {
        let api: Api<kube::core::DynamicObject> = Api::namespaced_with(e.dst.client(), &e.ns, ar);
        dr_syncer_testenv::wait_for(
            "the DR side serving the custom types",
            std::time::Duration::from_secs(30),
            || async { Ok(api.list(&Default::default()).await.ok().map(|_| ())) },
        )
        .await
        .unwrap();
    }

    // Without the flag: the default types only.
    ok(&e.cli(&["stage"]));
    assert!(get(&gizmo, "g1").await.is_none());

    // With it: both custom resources (discovery of the new CRDs may lag a moment).
    let mut copied = false;
    for _ in 0..50 {
        let o = e.cli(&["stage", "--include-custom-resources"]);
        ok(&o);
        if get(&gizmo, "g1").await.is_some() && get(&route, "web").await.is_some() {
            copied = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(copied, "custom resources not copied");
    let r = get(&route, "web").await.unwrap();
    assert_eq!(r.data["spec"]["hostnames"][0], "shop.example.com");
    // Only CRD-backed types were added: no other type showed up.
    let o = e.cli(&["plan", "--include-custom-resources", "-o", "json"]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    let kinds: Vec<&String> = v["sync"]["kinds"].as_object().unwrap().keys().collect();
    for k in &kinds {
        assert!(
            [
                "ConfigMap",
                "Secret",
                "Service",
                "Deployment.apps",
                "StatefulSet.apps",
                "DaemonSet.apps",
                "CronJob.batch",
                "Namespace",
                "Gizmo.example.com",
                "HTTPRoute.gateway.networking.k8s.io"
            ]
            .contains(&k.as_str()),
            "unexpected kind {k}: {kinds:?}"
        );
    }
}

/// Replicas of the realistic namespace's Deployment and StatefulSet and whether its CronJob is suspended.
async fn realistic_state(cp: &ControlPlane, ns: &str) -> (Option<i32>, Option<i32>, Option<bool>) {
    let c = cp.client();
    let web = Api::<Deployment>::namespaced(c.clone(), ns)
        .get("storefront")
        .await
        .unwrap();
    let db = Api::<StatefulSet>::namespaced(c.clone(), ns)
        .get("db")
        .await
        .unwrap();
    let cron = Api::<CronJob>::namespaced(c.clone(), ns)
        .get("nightly-report")
        .await
        .unwrap();
    (
        web.spec.unwrap().replicas,
        db.spec.unwrap().replicas,
        cron.spec.suspend,
    )
}

#[tokio::test]
async fn every_subcommand_twice_on_the_realistic_namespace() {
    init_tracing();
    let [src, dst] = ControlPlane::start_many(["cli-real-prod", "cli-real-dr"])
        .await
        .unwrap();
    let crd = include_str!("../../dr-syncer-core/tests/fixtures/widget-crd.yaml");
    for cp in [&src, &dst] {
        apply_yaml(&cp.client(), None, crd).await.unwrap();
    }
    apply_yaml(
        &dst.client(),
        None,
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: standard}\nprovisioner: example.com/fake\n",
    )
    .await
    .unwrap();
    let ns = create_namespace(&src.client(), "realistic").await.unwrap();
    let e = Env {
        reader: src.identity("dr-syncer-cli").await.unwrap(),
        writer: dst.identity("dr-syncer-cli").await.unwrap(),
        src,
        dst,
        ns,
    };
    // The Widget type may take a moment to appear in discovery.
    let fixture = include_str!("../../dr-syncer-core/tests/fixtures/realistic.yaml");
    let mut applied = false;
    for _ in 0..50 {
        if apply_yaml(&e.src.client(), Some(&e.ns), fixture).await.is_ok() {
            applied = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(applied, "fixture not applied");
    let original = realistic_state(&e.src, &e.ns).await;
    assert_eq!(original, (Some(3), Some(2), Some(false)));
    let all = Some("*");

    for round in 0..2 {
        let p = e.cli_typed(all, &["preflight"]);
        ok(&p);
        let before = e.dst_writes().await;
        let plan = e.cli_typed(all, &["plan", "-o", "json"]);
        ok(&plan);
        assert_eq!(e.dst_writes().await - before, 0, "plan wrote");
        let v: serde_json::Value = serde_json::from_str(&plan.stdout).unwrap();
        for kind in [
            "ConfigMap",
            "Secret",
            "ServiceAccount",
            "Role.rbac.authorization.k8s.io",
            "RoleBinding.rbac.authorization.k8s.io",
            "PersistentVolumeClaim",
            "Deployment.apps",
            "StatefulSet.apps",
            "DaemonSet.apps",
            "CronJob.batch",
            "Service",
            "Ingress.networking.k8s.io",
            "Widget.example.com",
        ] {
            assert!(
                v["sync"]["kinds"].get(kind).is_some(),
                "round {round}: {kind} not planned: {}",
                plan.stdout
            );
        }
        assert!(
            !plan.stdout.contains("s3cret") && !plan.stdout.contains("czNjcmV0"),
            "secret leaked"
        );
    }
    for round in 0..2 {
        let before = e.dst_writes().await;
        let s = e.cli_typed(all, &["stage", "-o", "json"]);
        ok(&s);
        let v: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
        assert!(
            v["sync"]["failures"].as_array().unwrap().is_empty(),
            "{}",
            s.stdout
        );
        if round == 1 {
            assert_eq!(
                e.dst_writes().await - before,
                0,
                "second stage wrote: {}",
                s.stdout
            );
        }
        assert_eq!(
            realistic_state(&e.dst, &e.ns).await,
            (Some(0), Some(0), Some(true))
        );
        ok(&e.cli_typed(all, &["diff"]));
    }
    for round in 0..2 {
        ok(&e.cli_typed(all, &["cutover", "--yes"]));
        assert_eq!(
            realistic_state(&e.src, &e.ns).await,
            (Some(0), Some(0), Some(true)),
            "round {round}"
        );
        assert_eq!(
            realistic_state(&e.dst, &e.ns).await,
            (Some(3), Some(2), Some(false)),
            "round {round}"
        );
    }
    for round in 0..2 {
        ok(&e.cli_typed(all, &["failback", "--yes"]));
        assert_eq!(realistic_state(&e.src, &e.ns).await, original, "round {round}");
        assert_eq!(
            realistic_state(&e.dst, &e.ns).await,
            (Some(0), Some(0), Some(true)),
            "round {round}"
        );
    }
    // Back where we started: in sync.
    ok(&e.cli_typed(all, &["diff"]));
}

/// `diff` reports each kind of drift: an object missing on DR, one that differs, one that is extra on DR
/// (its source is gone), and activation state changed by hand on DR — each with exit code 3.
#[tokio::test]
async fn diff_reports_every_kind_of_drift() {
    let e = env("drift").await;
    ok(&e.cli(&["stage"]));
    ok(&e.cli(&["diff"]));
    let diff = |e: &Env| {
        let d = e.cli(&["diff", "-o", "json"]);
        assert_eq!(d.code, 3, "{}\n{}", d.stdout, d.stderr);
        serde_json::from_str::<serde_json::Value>(&d.stdout).expect("JSON")
    };
    let names = |v: &serde_json::Value, key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap().to_owned())
            .collect()
    };

    // Extra on DR: the source object is gone.
    Api::<ConfigMap>::namespaced(e.src.client(), &e.ns)
        .delete("settings", &Default::default())
        .await
        .unwrap();
    let v = diff(&e);
    assert_eq!(v["inSync"], false);
    assert_eq!(
        names(&v, "extra"),
        vec![format!("ConfigMap/{}/settings", e.ns)],
        "{v:#}"
    );
    assert!(
        names(&v, "missing").is_empty() && names(&v, "differing").is_empty(),
        "{v:#}"
    );
    ok(&e.cli(&["stage"]));
    Api::<ConfigMap>::namespaced(e.dst.client(), &e.ns)
        .delete("settings", &Default::default())
        .await
        .unwrap();

    // Activation state changed by hand on the DR side (the staged site should be quiet).
    Api::<Deployment>::namespaced(e.dst.client(), &e.ns)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    let v = diff(&e);
    assert_eq!(
        names(&v, "differing"),
        vec![format!("Deployment.apps/{}/web", e.ns)],
        "{v:#}"
    );
    let table = e.cli(&["diff"]);
    assert_eq!(table.code, 3);
    assert!(table.stdout.contains("/spec/replicas"), "{}", table.stdout);

    // Missing on DR.
    Api::<ConfigMap>::namespaced(e.src.client(), &e.ns)
        .create(
            &Default::default(),
            &serde_json::from_value(json!({"metadata": {"name": "new-one"}, "data": {"a": "1"}})).unwrap(),
        )
        .await
        .unwrap();
    let v = diff(&e);
    assert_eq!(
        names(&v, "missing"),
        vec![format!("ConfigMap/{}/new-one", e.ns)],
        "{v:#}"
    );

    ok(&e.cli(&["stage"]));
    ok(&e.cli(&["diff"]));
}

/// A source and destination that are one cluster and one namespace are refused (exit 4) before anything
/// runs: with both kubeconfigs left to `KUBECONFIG`, with the same file twice, and with two identities of
/// the same API server. Another namespace on the same cluster is a legitimate pair.
#[tokio::test]
async fn the_same_cluster_and_namespace_are_refused_before_anything_runs() {
    let e = env("cli-same").await;
    let other = e.src.identity("someone-else").await.unwrap();
    let writes = || async {
        let a = e.src.requests("dr-syncer-cli").await.unwrap();
        let b = e.src.requests("someone-else").await.unwrap();
        a.stored_writes() + b.stored_writes()
    };
    let before = writes().await;
    let run = |envs: &[(&str, &std::path::Path)], args: &[&str]| {
        let mut cmd = Command::new(BIN);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd
            .args(["--source-namespace", &e.ns, "--resource-types", TYPES])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let kc = e.reader.kubeconfig.to_str().unwrap().to_owned();
    let kc2 = other.kubeconfig.to_str().unwrap().to_owned();
    for (envs, args) in [
        (vec![("KUBECONFIG", e.reader.kubeconfig.as_path())], vec!["stage"]),
        (
            vec![],
            vec![
                "--source-kubeconfig",
                &kc,
                "--dest-kubeconfig",
                &kc,
                "cutover",
                "--yes",
            ],
        ),
        (
            vec![],
            vec!["--source-kubeconfig", &kc, "--dest-kubeconfig", &kc2, "stage"],
        ),
    ] {
        let (code, stderr) = run(&envs, &args);
        assert_eq!(code, 4, "{args:?}: {stderr}");
        assert!(stderr.contains("the same cluster"), "{stderr}");
    }
    let after = writes().await;
    assert_eq!(after - before, 0, "nothing written");
    // Another namespace of the same cluster may be the DR copy.
    let (code, stderr) = run(
        &[],
        &[
            "--source-kubeconfig",
            &kc,
            "--dest-kubeconfig",
            &kc2,
            "--dest-namespace",
            &format!("{}-copy", e.ns),
            "plan",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
}

/// `cleanup` finds what a killed run left on either cluster (by the run's label), lists it with
/// `--dry-run`, removes it, and leaves everything else alone.
#[tokio::test]
async fn cleanup_removes_what_interrupted_runs_left() {
    let e = env("cli-cleanup").await;
    let leftover = |name: &str, run: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, labels: {{dr-syncer.io/cli-run: {run}}}}}\nstringData: {{k: v}}\n"
        )
    };
    apply_yaml(&e.src.client(), Some(&e.ns), &leftover("key-a", "r1"))
        .await
        .unwrap();
    apply_yaml(&e.dst.client(), Some("default"), &leftover("key-b", "r2"))
        .await
        .unwrap();
    apply_yaml(
        &e.dst.client(),
        Some("default"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: unrelated}\ndata: {a: b}\n",
    )
    .await
    .unwrap();
    let secrets =
        |cp: &ControlPlane, ns: &str| Api::<k8s_openapi::api::core::v1::Secret>::namespaced(cp.client(), ns);
    let dry = e.cli(&["cleanup", "--dry-run", "-o", "json"]);
    ok(&dry);
    let found: serde_json::Value = serde_json::from_str(&dry.stdout).unwrap();
    assert_eq!(found["schemaVersion"], 1);
    let names: Vec<&str> = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["leftovers"].as_array().unwrap())
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["key-a", "key-b"], "{}", dry.stdout);
    assert!(
        secrets(&e.src, &e.ns).get_opt("key-a").await.unwrap().is_some(),
        "dry run"
    );
    // One run only, then the rest.
    ok(&e.cli(&["cleanup", "--run", "r2", "--yes"]));
    assert!(
        secrets(&e.dst, "default")
            .get_opt("key-b")
            .await
            .unwrap()
            .is_none()
    );
    assert!(secrets(&e.src, &e.ns).get_opt("key-a").await.unwrap().is_some());
    ok(&e.cli(&["cleanup", "--yes"]));
    assert!(secrets(&e.src, &e.ns).get_opt("key-a").await.unwrap().is_none());
    assert!(
        Api::<ConfigMap>::namespaced(e.dst.client(), "default")
            .get_opt("unrelated")
            .await
            .unwrap()
            .is_some()
    );
}

/// A cutover whose DR copy of a workload is not dr-syncer's (another owner took it over) cannot activate
/// it: the command fails with exit 6 naming the workload, rather than reporting success with the workload
/// quiet on both sides.
#[tokio::test]
async fn a_cutover_that_leaves_a_workload_inactive_fails_naming_it() {
    let e = env("cli-incomplete").await;
    ok(&e.cli(&["stage"]));
    // Interrupted after the DR namespace is marked active (the workloads not yet activated) …
    e.dst
        .deny(&dr_syncer_testenv::DenyRule::new(
            "dr-syncer-cli",
            &["patch"],
            &[
                "deployments.apps",
                "statefulsets.apps",
                "daemonsets.apps",
                "cronjobs.batch",
            ],
        ))
        .await
        .unwrap();
    assert_ne!(e.cli(&["cutover", "--yes", "--skip-preflight"]).code, 0);
    e.dst.clear_denies().await.unwrap();
    // … and meanwhile someone else took the DR Deployment over.
    Api::<Deployment>::namespaced(e.dst.client(), &e.ns)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"dr-syncer.io/synced-by": null}}})),
        )
        .await
        .unwrap();
    let o = e.cli(&["cutover", "--yes", "--wait", "20s"]);
    assert_eq!(o.code, 6, "{}\n{}", o.stdout, o.stderr);
    assert!(
        o.stderr.contains("Deployment/web") && o.stderr.contains("not dr-syncer's"),
        "{}",
        o.stderr
    );
    assert_eq!(replicas(&e.dst, &e.ns).await.0, Some(0), "left alone");
    // The rest was activated; the recorded state tells the next step what to do.
    assert_eq!(replicas(&e.dst, &e.ns).await.1, Some(2));
    assert!(events(&e.dst, &e.ns).await.iter().any(
        |ev| ev.reason.as_deref() == Some("CutoverIncomplete") && ev.type_.as_deref() == Some("Warning")
    ));
}

/// Without `--resource-types` the CLI copies the Go CLI's 13 types plus CronJobs (suspended on the DR
/// side until a cutover).
#[tokio::test]
async fn the_default_types_include_cronjobs() {
    let e = env("cli-defaults").await;
    let o = e.cli_typed(None, &["plan", "-o", "json"]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert!(v["sync"]["kinds"].get("CronJob.batch").is_some(), "{}", o.stdout);
    ok(&e.cli_typed(None, &["stage"]));
    let cron: CronJob = Api::namespaced(e.dst.client(), &e.ns)
        .get("report")
        .await
        .unwrap();
    assert_eq!(cron.spec.suspend, Some(true), "copied suspended");
}

/// A stage with `prune: true` after most of production's ConfigMaps were deleted: the deletions are held
/// (exit 10, the report says how to allow them, nothing deleted); `--allow-deletions` deletes exactly
/// those; small deletions need no go-ahead.
#[tokio::test]
async fn a_mass_deletion_is_held_until_allowed() {
    let e = env("cli-brake").await;
    let dir = tempfile::tempdir().unwrap();
    let mapping = dir.path().join("mapping.yaml");
    std::fs::write(
        &mapping,
        format!(
            "apiVersion: dr-syncer.io/v1alpha1\nkind: NamespaceMapping\nmetadata: {{name: shop, namespace: dr-syncer}}\nspec:\n  sourceNamespace: {}\n  resourceTypes: [configmaps]\n  prune: true\n",
            e.ns
        ),
    )
    .unwrap();
    let path = mapping.to_str().unwrap();
    let prod: Api<ConfigMap> = Api::namespaced(e.src.client(), &e.ns);
    let dr: Api<ConfigMap> = Api::namespaced(e.dst.client(), &e.ns);
    for i in 0..16 {
        let batch = match i {
            0 | 1 => "first",
            14 | 15 => "keep",
            _ => "old",
        };
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": format!("cm-{i:02}"), "labels": {"batch": batch}}}),
        )
        .unwrap();
        prod.create(&Default::default(), &cm).await.unwrap();
    }
    ok(&e.cli_typed(None, &["stage", "--mapping", path]));
    let names = || async {
        dr.list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|c| c.name_any())
            .filter(|n| n.starts_with("cm-"))
            .count()
    };
    assert_eq!(names().await, 16);

    // Two deleted: under the brake's thresholds, pruned at once.
    for n in ["cm-00", "cm-01"] {
        prod.delete(n, &Default::default()).await.unwrap();
    }
    ok(&e.cli_typed(None, &["stage", "--mapping", path]));
    assert_eq!(names().await, 14);

    // Twelve more (of the 14 left, and the app's ConfigMaps: more than half, more than 10): held.
    prod.delete_collection(&Default::default(), &ListParams::default().labels("batch=old"))
        .await
        .unwrap();
    let o = e.cli_typed(None, &["stage", "--mapping", path]);
    assert_eq!(o.code, 10, "stdout:\n{}\nstderr:\n{}", o.stdout, o.stderr);
    assert!(
        o.stdout.contains("deletions held: 12 deletion(s) held") && o.stdout.contains("--allow-deletions"),
        "{}",
        o.stdout
    );
    assert_eq!(names().await, 14, "nothing deleted");
    let j = e.cli_typed(None, &["stage", "--mapping", path, "-o", "json"]);
    assert_eq!(j.code, 10);
    let report: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(report["sync"]["deletionHold"]["pending"], 12, "{report}");

    let o = e.cli_typed(None, &["stage", "--mapping", path, "--allow-deletions"]);
    ok(&o);
    let left: Vec<String> = dr
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.name_any())
        .filter(|n| n.starts_with("cm-"))
        .collect();
    assert_eq!(left, ["cm-14", "cm-15"]);
}

/// The DR namespace records the cluster it was filled from (its `kube-system` UID): a source
/// kubeconfig that reaches another cluster with a namespace of the same name is refused with exit 4
/// before anything is written (stage, plan and cutover alike); `--accept-source-cluster` accepts it.
#[tokio::test]
async fn a_different_source_cluster_is_refused() {
    let e = env("cli-identity").await;
    ok(&e.cli(&["stage"]));
    let prod_uid = Api::<Namespace>::all(e.src.client())
        .get("kube-system")
        .await
        .unwrap()
        .uid()
        .unwrap();
    let dr_ns: Namespace = Api::all(e.dst.client()).get(&e.ns).await.unwrap();
    assert_eq!(
        dr_ns
            .annotations()
            .get("dr-syncer.io/source-cluster-uid")
            .map(String::as_str),
        Some(prod_uid.as_str())
    );

    // Another cluster with a namespace of the same name (a re-pointed kubeconfig, a rebuilt production).
    let other = ControlPlane::start("cli-identity-other").await.unwrap();
    apply_yaml(
        &other.client(),
        None,
        &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {}}}\n", e.ns),
    )
    .await
    .unwrap();
    apply_yaml(&other.client(), Some(&e.ns), APP).await.unwrap();
    let reader = other.identity("dr-syncer-cli").await.unwrap();
    let writes = e.dst_writes().await;
    let run = |extra: &[&str]| {
        let out = Command::new(BIN)
            .arg("--source-kubeconfig")
            .arg(&reader.kubeconfig)
            .arg("--dest-kubeconfig")
            .arg(&e.writer.kubeconfig)
            .args(["--source-namespace", &e.ns, "--resource-types", TYPES, "--yes"])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for cmd in ["stage", "plan", "cutover"] {
        let (code, stderr) = run(&[cmd]);
        assert_eq!(code, 4, "{cmd}: {stderr}");
        assert!(stderr.contains("source cluster changed"), "{cmd}: {stderr}");
    }
    assert_eq!(e.dst_writes().await, writes, "nothing written to DR");

    let (code, stderr) = run(&["stage", "--accept-source-cluster"]);
    assert_eq!(code, 0, "{stderr}");
    let dr_ns: Namespace = Api::all(e.dst.client()).get(&e.ns).await.unwrap();
    let other_uid = Api::<Namespace>::all(other.client())
        .get("kube-system")
        .await
        .unwrap()
        .uid()
        .unwrap();
    assert_eq!(
        dr_ns
            .annotations()
            .get("dr-syncer.io/source-cluster-uid")
            .map(String::as_str),
        Some(other_uid.as_str()),
        "the accepted cluster is recorded"
    );
}
