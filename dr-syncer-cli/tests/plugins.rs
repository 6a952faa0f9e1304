//! Transformer plugins without recompiling, through the built CLI against two test control planes: the
//! example plugins of `examples/plugins/` (registry-mirror, JSON lines; skip-by-label, Crane's protocol)
//! rewrite images and white out objects; a white-out with prune removes the earlier DR copy; an unchanged
//! second stage writes nothing (plugins are deterministic); bad plugin names are refused before anything
//! is written. And the `Cli` builder's own transformers.

use std::{path::PathBuf, process::Command};

use dr_syncer_testenv::{ControlPlane, Identity, apply_yaml, create_namespace, init_tracing, workspace_root};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::ConfigMap};
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_dr-syncer-cli");

const APP: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {LOG_LEVEL: info}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: local-only, labels: {dr.example.com/skip: "true"}}
data: {node: prod-1}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      initContainers: [{name: init, image: "registry.prod.example/tools/migrate:3"}]
      containers:
      - {name: web, image: "registry.prod.example/shop/web:1.4"}
      - {name: sidecar, image: "docker.io/envoy:1.30"}
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

fn plugin_dir() -> PathBuf {
    workspace_root().join("examples/plugins")
}

impl Env {
    fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(BIN)
            .arg("--source-kubeconfig")
            .arg(&self.reader.kubeconfig)
            .arg("--dest-kubeconfig")
            .arg(&self.writer.kubeconfig)
            .args(["--source-namespace", &self.ns])
            .args(["--resource-types", "configmaps,deployments"])
            .args(args)
            .output()
            .expect("run dr-syncer-cli");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn stage_ok(&self, args: &[&str]) {
        let (code, stdout, stderr) = self.cli(&[&["stage", "--yes"], args].concat());
        assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    }

    async fn dr_configmaps(&self) -> Vec<String> {
        let mut names: Vec<String> = Api::<ConfigMap>::namespaced(self.dst.client(), &self.ns)
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .filter(|n| n != "kube-root-ca.crt")
            .collect();
        names.sort();
        names
    }
}

#[tokio::test]
async fn plugins_rewrite_and_white_out_what_the_cli_copies() {
    let e = env("cli-plugins").await;
    let dir = plugin_dir().display().to_string();
    let plugins = [
        "--plugin-dir",
        dir.as_str(),
        "--plugin",
        "registry-mirror:from=registry.prod.example/,to=mirror.dr.example/",
        "--plugin",
        "skip-by-label",
    ];
    e.stage_ok(&plugins);

    let web = Api::<Deployment>::namespaced(e.dst.client(), &e.ns)
        .get("web")
        .await
        .unwrap();
    let pod = web.spec.unwrap().template.spec.unwrap();
    let images = |cs: &[k8s_openapi::api::core::v1::Container]| {
        cs.iter().map(|c| c.image.clone().unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(
        images(&pod.containers),
        ["mirror.dr.example/shop/web:1.4", "docker.io/envoy:1.30"],
        "every container's image from the production registry is rewritten, the others kept"
    );
    assert_eq!(
        images(pod.init_containers.as_deref().unwrap()),
        ["mirror.dr.example/tools/migrate:3"]
    );
    assert_eq!(
        web.metadata.annotations.unwrap()["dr.example.com/checked-by"],
        "skip-by-label",
        "the second plugin ran on what the first returned"
    );
    assert_eq!(e.dr_configmaps().await, ["settings"], "local-only was whited out");

    // Plugins are deterministic: the same stage again writes nothing to the DR cluster.
    let before = e.dst.requests("dr-syncer-cli").await.unwrap().stored_writes();
    e.stage_ok(&plugins);
    let after = e.dst.requests("dr-syncer-cli").await.unwrap().stored_writes();
    assert_eq!(
        after, before,
        "a second stage with the same plugins wrote to the DR cluster"
    );

    // A white-out of an object copied before, with prune (from a --mapping that also names the plugin):
    // the DR copy goes, as if the source object were gone.
    Api::<ConfigMap>::namespaced(e.src.client(), &e.ns)
        .patch(
            "settings",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"dr.example.com/skip": "true"}}})),
        )
        .await
        .unwrap();
    let mapping = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        mapping.path(),
        format!(
            "apiVersion: dr-syncer.io/v1alpha1\nkind: NamespaceMapping\nmetadata: {{name: shop}}\nspec:\n  \
             sourceNamespace: {ns}\n  prune: true\n  transformPlugins:\n  - name: skip-by-label\n",
            ns = e.ns
        ),
    )
    .unwrap();
    e.stage_ok(&[
        "--plugin-dir",
        dir.as_str(),
        "--mapping",
        mapping.path().to_str().unwrap(),
    ]);
    assert!(
        e.dr_configmaps().await.is_empty(),
        "{:?}",
        e.dr_configmaps().await
    );
    // The source keeps everything.
    let src_cms = Api::<ConfigMap>::namespaced(e.src.client(), &e.ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .len();
    assert!(src_cms >= 2);
}

#[tokio::test]
async fn bad_plugins_are_refused_before_anything_is_written() {
    let e = env("cli-plugins-bad").await;
    let dir = plugin_dir().display().to_string();
    for (args, wants) in [
        (
            vec!["--plugin-dir", dir.as_str(), "--plugin", "../bin/sh"],
            "not a file name",
        ),
        (
            vec!["--plugin-dir", dir.as_str(), "--plugin", "missing"],
            "no such file",
        ),
        (
            vec!["--plugin", "registry-mirror"],
            "no plugin directory is configured",
        ),
        (
            vec!["--plugin-dir", dir.as_str(), "--plugin", "registry-mirror:from"],
            "not key=value",
        ),
    ] {
        let (code, stdout, stderr) = e.cli(&[&["stage", "--yes"], &args[..]].concat());
        assert_eq!(code, 2, "{args:?}: stdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(stderr.contains(wants), "{args:?}: {stderr}");
    }
    assert_eq!(
        e.dst.requests("dr-syncer-cli").await.unwrap().stored_writes(),
        0,
        "nothing written"
    );
}

/// The `Cli` builder: the bundled CLI plus a transformer of one's own, run in-process; the transformer
/// runs on stage's copy (after the built-ins).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builder_transformer_runs_on_forward_syncs() {
    use clap::Parser;
    use dr_syncer_core::transform::{Outcome, TransformContext};
    use kube::core::DynamicObject;

    let e = env("cli-builder").await;
    let args = |step: &str| {
        dr_syncer_cli::Args::parse_from([
            "dr-syncer-cli",
            "--source-kubeconfig",
            e.reader.kubeconfig.to_str().unwrap(),
            "--dest-kubeconfig",
            e.writer.kubeconfig.to_str().unwrap(),
            "--source-namespace",
            &e.ns,
            "--resource-types",
            "configmaps",
            step,
            "--yes",
        ])
    };
    let label_dr = |mut obj: DynamicObject, _: &TransformContext| {
        obj.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("site".into(), "dr".into());
        Ok(Outcome::Keep(obj))
    };
    let code = dr_syncer_cli::Cli::new(args("stage"))
        .with_transformer(label_dr)
        .run()
        .await
        .unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS);
    let settings = Api::<ConfigMap>::namespaced(e.dst.client(), &e.ns)
        .get("settings")
        .await
        .unwrap();
    assert_eq!(settings.metadata.labels.unwrap()["site"], "dr");
}
