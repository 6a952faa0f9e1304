use std::{os::unix::fs::PermissionsExt, path::Path, time::Duration};

use kube::core::DynamicObject;
use serde_json::json;

use super::*;

/// A plugin directory with `scripts` (name, body) as executables.
fn dir_with(scripts: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in scripts {
        write_script(dir.path(), name, body);
    }
    dir
}

fn write_script(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn cm(name: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "app-dr", "labels": {"app": "shop"}},
        "data": {"k": "v"}
    }))
    .unwrap()
}

const METADATA: &str = r#"{"name":"t","version":"v0.1","requestVersion":["v1"],"responseVersion":["v1"]}"#;

/// A Crane plugin in sh: metadata on `{}`, otherwise the `case "$input" in … esac` branches `cases`.
fn crane_script(cases: &str) -> String {
    format!(
        "#!/bin/sh\ninput=$(cat)\nif [ \"$input\" = '{{}}' ]; then echo '{METADATA}'; exit 0; fi\ncase \"$input\" in\n{cases}esac\n"
    )
}

/// A Crane plugin (sh): metadata on `{}`; objects whose input contains `drop-me` are whited out; others
/// get the label `plugin=yes`.
fn crane_labeller() -> String {
    crane_script(
        r#"  *drop-me*) echo '{"version":"v1","isWhiteOut":true}' ;;
  *) echo '{"version":"v1","isWhiteOut":false,"patches":[{"op":"add","path":"/metadata/labels/plugin","value":"yes"}]}' ;;
"#,
    )
}

/// A quiet DR site, as the engine describes it.
const QUIET: Option<RunningCheck> = Some(crate::activation::is_running);

/// Objects as the engine hands them over: ConfigMaps, on a quiet DR site.
fn typed(objects: Vec<DynamicObject>) -> Vec<(crate::resource::ResourceType, DynamicObject)> {
    let rt = crate::resource::ResourceType::namespaced("", "v1", "ConfigMap", "configmaps");
    objects.into_iter().map(|o| (rt.clone(), o)).collect()
}

fn label(o: &DynamicObject, k: &str) -> Option<String> {
    o.metadata.labels.as_ref()?.get(k).cloned()
}

#[test]
fn names_are_file_names_never_paths() {
    for bad in ["", "../x", "/bin/sh", "a/b", ".hidden", "-rf", "a b", "x;rm"] {
        assert!(check_name(bad).is_err(), "{bad:?} accepted");
    }
    for good in ["registry-mirror", "crane_plugin.v1", "A1"] {
        check_name(good).unwrap();
    }
    let r = PluginRef::parse("mirror:registry=mirror.example,mode=all").unwrap();
    assert_eq!(r.name, "mirror");
    assert_eq!(r.extras["registry"], "mirror.example");
    assert_eq!(r.extras["mode"], "all");
    assert!(PluginRef::parse("mirror:novalue").is_err());
    assert!(PluginRef::parse("mirror:=x").is_err());
    assert!(PluginRef::parse("../mirror").is_err());
    assert_eq!(PluginRef::parse("plain").unwrap().extras.len(), 0);
}

#[tokio::test]
async fn a_plugin_must_be_an_executable_file_of_the_directory() {
    let dir = dir_with(&[("ok", &crane_labeller())]);
    std::fs::write(dir.path().join("plain"), "#!/bin/sh\n").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let plugins = PluginDir::new(dir.path());
    assert!(matches!(
        plugins.load("missing").await,
        Err(PluginError::NotFound { .. })
    ));
    assert!(
        matches!(plugins.load("plain").await, Err(PluginError::NotFound { why, .. }) if why == "not executable")
    );
    assert!(matches!(
        plugins.load("sub").await,
        Err(PluginError::NotFound { .. })
    ));
    assert!(matches!(
        plugins.load("../ok").await,
        Err(PluginError::BadName(_))
    ));
    assert!(matches!(
        PluginDir::none().load("ok").await,
        Err(PluginError::NoDirectory { .. })
    ));
    let p = plugins.load("ok").await.unwrap();
    assert_eq!(p.protocol(), Protocol::Crane);
    assert_eq!(p.metadata().version, "v0.1");
}

#[tokio::test]
async fn crane_plugins_patch_and_white_out_objects() {
    let dir = dir_with(&[("labeller", &crane_labeller())]);
    let plugins = PluginDir::new(dir.path())
        .resolve(&[PluginRef::parse("labeller").unwrap()])
        .await
        .unwrap();
    let out = plugins
        .run(typed(vec![cm("a"), cm("drop-me"), cm("b")]), QUIET)
        .await;
    assert_eq!(out.len(), 3);
    match &out[0] {
        Ok(Verdict::Keep(o)) => {
            assert_eq!(label(o, "plugin").as_deref(), Some("yes"));
            assert_eq!(label(o, "app").as_deref(), Some("shop"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        out[1],
        Ok(Verdict::WhiteOut {
            plugin: "labeller".into()
        })
    );
    assert!(matches!(&out[2], Ok(Verdict::Keep(o)) if o.metadata.name.as_deref() == Some("b")));
}

#[tokio::test]
async fn extras_reach_the_plugin() {
    // Python reads the request and copies extras.registry into a label.
    let script = format!(
        r#"#!/usr/bin/env python3
import json, sys
req = json.load(sys.stdin)
if req == {{}}:
    print('{METADATA}'); sys.exit(0)
value = req.get("extras", {{}}).get("registry", "none")
print(json.dumps({{"version": "v1", "isWhiteOut": False,
    "patches": [{{"op": "add", "path": "/metadata/labels/registry", "value": value}}]}}))
"#
    );
    let dir = dir_with(&[("extras", &script)]);
    let plugins = PluginDir::new(dir.path())
        .resolve(&[PluginRef::parse("extras:registry=mirror.example").unwrap()])
        .await
        .unwrap();
    let out = plugins.run(typed(vec![cm("a")]), QUIET).await;
    assert!(
        matches!(&out[0], Ok(Verdict::Keep(o)) if label(o, "registry").as_deref() == Some("mirror.example")),
        "{out:?}"
    );
}

#[tokio::test]
async fn a_failing_plugin_fails_only_its_object_with_a_clear_message() {
    let script = crane_script(
        r#"  *exit-me*) echo 'something broke' >&2; exit 3 ;;
  *hang-me*) sleep 5 ;;
  *garbage-me*) echo 'not json' ;;
  *rename-me*) echo '{"version":"v1","patches":[{"op":"replace","path":"/metadata/name","value":"other"}]}' ;;
  *move-me*) echo '{"version":"v1","patches":[{"op":"replace","path":"/metadata/namespace","value":"kube-system"}]}' ;;
  *v2-me*) echo '{"version":"v2"}' ;;
  *badpatch-me*) echo '{"version":"v1","patches":[{"op":"remove","path":"/spec/missing"}]}' ;;
  *) echo '{"version":"v1","isWhiteOut":false,"patches":[]}' ;;
"#,
    );
    let dir = dir_with(&[("flaky", &script)]);
    let plugins = PluginDir::new(dir.path())
        .with_timeout(Duration::from_millis(500))
        .resolve(&[PluginRef::parse("flaky").unwrap()])
        .await
        .unwrap();
    let names = [
        "exit-me",
        "hang-me",
        "garbage-me",
        "rename-me",
        "move-me",
        "v2-me",
        "badpatch-me",
        "fine",
    ];
    let out = plugins
        .run(typed(names.iter().map(|n| cm(n)).collect()), QUIET)
        .await;
    let message = |i: usize| match &out[i] {
        Err(e) => {
            assert_eq!(e.transformer, "plugin flaky");
            assert!(e.object.contains(names[i]), "{e}");
            e.message.clone()
        }
        ok => panic!("{}: {ok:?}", names[i]),
    };
    assert!(message(0).contains("exited with status 3"), "{}", message(0));
    assert!(message(1).contains("timed out"), "{}", message(1));
    assert!(message(2).contains("invalid output"), "{}", message(2));
    assert!(!message(2).contains("not json"), "the output is not quoted");
    assert!(message(3).contains("apiVersion, kind, name or namespace"));
    assert!(message(4).contains("apiVersion, kind, name or namespace"));
    assert!(message(5).contains("not v1"), "{}", message(5));
    assert!(message(6).contains("do not apply"), "{}", message(6));
    assert!(matches!(&out[7], Ok(Verdict::Keep(o)) if *o == cm("fine")));
}

#[tokio::test]
async fn metadata_is_asked_again_the_old_way_when_the_plugin_fails_on_braces() {
    let script = format!(
        r#"#!/bin/sh
input=$(cat)
if [ "$input" = 'METADATA' ]; then echo '{METADATA}'; exit 0; fi
if [ "$input" = '{{}}' ]; then exit 1; fi
echo '{{"version":"v1"}}'
"#
    );
    let dir = dir_with(&[("old", &script), ("mute", "#!/bin/sh\ncat >/dev/null\nexit 1\n")]);
    let plugins = PluginDir::new(dir.path());
    assert_eq!(plugins.load("old").await.unwrap().metadata().name, "t");
    let err = plugins.load("mute").await.unwrap_err();
    assert_eq!(err.kind(), "PluginMetadata");
    assert!(err.to_string().contains("exited with status 1"), "{err}");
}

/// A JSON-lines plugin (sh): one process for many objects, so the answers carry the process's PID and
/// a counter; it exits on an object named `crash-me`.
fn streaming() -> String {
    format!(
        r#"#!/bin/sh
if [ "${PROTOCOL_ENV}" != "{JSON_LINES_PROTOCOL}" ]; then
  input=$(cat)
  echo '{{"name":"s","version":"1","requestVersion":["v1"],"responseVersion":["v1"],"protocol":"{JSON_LINES_PROTOCOL}"}}'
  exit 0
fi
n=0
while IFS= read -r line; do
  n=$((n+1))
  id=$(printf '%s' "$line" | sed 's/^{{"id":\([0-9]*\),.*/\1/')
  case "$line" in
    *crash-me*) exit 1 ;;
    *error-me*) echo '{{"id":'$id',"error":"cannot handle this one"}}' ;;
    *twice-me*) echo '{{"id":'$id',"version":"v1"}}'; echo '{{"id":'$id',"version":"v1"}}' ;;
    *noid-me*) echo '{{"version":"v1"}}' ;;
    *) echo '{{"id":'$id',"version":"v1","patches":[{{"op":"add","path":"/metadata/labels/pid","value":"'$$'"}},{{"op":"add","path":"/metadata/labels/n","value":"'$n'"}}]}}' ;;
  esac
done
"#
    )
}

#[tokio::test]
async fn json_lines_plugins_stream_many_objects_through_one_process() {
    let dir = dir_with(&[("stream", &streaming())]);
    let pd = PluginDir::new(dir.path());
    assert_eq!(pd.load("stream").await.unwrap().protocol(), Protocol::JsonLines);
    let plugins = pd.resolve(&[PluginRef::parse("stream").unwrap()]).await.unwrap();
    let out = plugins
        .run(
            typed(vec![
                cm("a"),
                cm("b"),
                cm("error-me"),
                cm("c"),
                cm("crash-me"),
                cm("d"),
            ]),
            QUIET,
        )
        .await;
    let kept = |i: usize| match &out[i] {
        Ok(Verdict::Keep(o)) => (label(o, "pid").unwrap(), label(o, "n").unwrap()),
        other => panic!("{i}: {other:?}"),
    };
    let (pid_a, n_a) = kept(0);
    let (pid_b, n_b) = kept(1);
    let (pid_c, n_c) = kept(3);
    assert_eq!((pid_a.as_str(), n_a.as_str()), (pid_b.as_str(), "1"));
    assert_eq!(n_b, "2");
    assert_eq!(
        (pid_c, n_c),
        (pid_a.clone(), "4".into()),
        "one process for a, b, error-me and c"
    );
    assert!(matches!(&out[2], Err(e) if e.message.contains("cannot handle this one")));
    assert!(
        matches!(&out[4], Err(e) if e.message.contains("before answering")),
        "{:?}",
        out[4]
    );
    // After the crash a new process takes the rest.
    let (pid_d, n_d) = kept(5);
    assert_ne!(pid_d, pid_a);
    assert_eq!(n_d, "1");
}

#[tokio::test]
async fn plugins_run_in_order_and_a_white_out_ends_the_chain() {
    let dir = dir_with(&[("labeller", &crane_labeller()), ("stream", &streaming())]);
    let plugins = PluginDir::new(dir.path())
        .resolve(&[
            PluginRef::parse("labeller").unwrap(),
            PluginRef::parse("stream").unwrap(),
        ])
        .await
        .unwrap();
    assert_eq!(plugins.names(), ["labeller", "stream"]);
    let out = plugins.run(typed(vec![cm("drop-me"), cm("a")]), QUIET).await;
    assert!(matches!(&out[0], Ok(Verdict::WhiteOut { plugin }) if plugin == "labeller"));
    match &out[1] {
        Ok(Verdict::Keep(o)) => {
            assert_eq!(label(o, "plugin").as_deref(), Some("yes"));
            assert_eq!(
                label(o, "n").as_deref(),
                Some("1"),
                "the white-out never reached stream"
            );
        }
        other => panic!("{other:?}"),
    }
}

/// Two answers to one request, or one without the request's `id`: that object fails and the session is
/// replaced, so the extra line never becomes the next object's answer (a white-out of the wrong object).
#[tokio::test]
async fn a_json_lines_answer_never_goes_to_another_object() {
    let dir = dir_with(&[("stream", &streaming())]);
    let plugins = PluginDir::new(dir.path())
        .resolve(&[PluginRef::parse("stream").unwrap()])
        .await
        .unwrap();
    let out = plugins
        .run(
            typed(vec![cm("twice-me"), cm("a"), cm("noid-me"), cm("b")]),
            QUIET,
        )
        .await;
    assert!(matches!(&out[0], Ok(Verdict::Keep(_))), "{:?}", out[0]);
    // The second answer to twice-me is already read when a's request goes out ("nobody asked for"), or
    // arrives as the answer to it ("not for request 2"): either way a fails, never with twice-me's answer.
    assert!(
        matches!(&out[1], Err(e) if e.message.contains("nobody asked for") || e.message.contains("not for request 2")),
        "{:?}",
        out[1]
    );
    assert!(
        matches!(&out[2], Err(e) if e.message.contains("not for request")),
        "{:?}",
        out[2]
    );
    // A fresh session answers b.
    assert!(
        matches!(&out[3], Ok(Verdict::Keep(o)) if label(o, "n").as_deref() == Some("1")),
        "{:?}",
        out[3]
    );
}

/// A plugin may change an object's content, not dr-syncer's own markers, and on a quiet DR site it may
/// not start a workload the built-in transformers quieted; its own error message reaches a report cut
/// short.
#[tokio::test]
async fn plugins_cannot_touch_markers_or_wake_a_quiet_site() {
    let script = crane_script(
        r#"  *annotations-me*) echo '{"version":"v1","patches":[{"op":"add","path":"/metadata/annotations","value":{"x":"y"}}]}' ;;
  *replicas-me*) echo '{"version":"v1","patches":[{"op":"replace","path":"/spec/replicas","value":3}]}' ;;
  *long-me*) printf '{"error":"%0500d"}\n' 7 ;;
  *) echo '{"version":"v1","patches":[{"op":"add","path":"/metadata/annotations/team","value":"shop"}]}' ;;
"#,
    );
    let dir = dir_with(&[("meddler", &script)]);
    let plugins = PluginDir::new(dir.path())
        .resolve(&[PluginRef::parse("meddler").unwrap()])
        .await
        .unwrap();
    let marked = |name: &str| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "app-dr",
                         "annotations": {"dr-syncer.io/synced-by": "dr-syncer/app"}},
        }))
        .unwrap()
    };
    let quiet_deployment: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "replicas-me", "namespace": "app-dr"},
        "spec": {"replicas": 0, "template": {"spec": {"containers": []}}}
    }))
    .unwrap();
    let deployments = crate::resource::ResourceType::namespaced("apps", "v1", "Deployment", "deployments");
    let mut objects = typed(vec![marked("annotations-me"), marked("fine"), marked("long-me")]);
    objects.push((deployments.clone(), quiet_deployment.clone()));
    let out = plugins.run(objects, QUIET).await;
    assert!(
        matches!(&out[0], Err(e) if e.message.contains("dr-syncer's own labels or annotations")),
        "{:?}",
        out[0]
    );
    match &out[1] {
        Ok(Verdict::Keep(o)) => {
            let a = o.metadata.annotations.as_ref().unwrap();
            assert_eq!(a["team"], "shop");
            assert_eq!(a["dr-syncer.io/synced-by"], "dr-syncer/app");
        }
        other => panic!("{other:?}"),
    }
    match &out[2] {
        Err(e) => assert!(
            e.message.len() < 300 && e.message.ends_with("(cut)"),
            "{}",
            e.message
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&out[3], Err(e) if e.message.contains("start a workload")),
        "{:?}",
        out[3]
    );
    // On the live (active) DR site the same patch is the plugin's to make.
    let out = plugins.run(vec![(deployments, quiet_deployment)], None).await;
    assert!(matches!(&out[0], Ok(Verdict::Keep(_))), "{:?}", out[0]);
}
