use rstest::rstest;
use serde_json::json;

use super::*;

fn discovered() -> Vec<ResourceType> {
    vec![
        ResourceType::namespaced("", "v1", "ConfigMap", "configmaps").with_short_names(&["cm"]),
        ResourceType::namespaced("", "v1", "Secret", "secrets"),
        ResourceType::namespaced("", "v1", "Service", "services").with_short_names(&["svc"]),
        ResourceType::namespaced("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims")
            .with_short_names(&["pvc"]),
        ResourceType::namespaced("", "v1", "Pod", "pods").with_short_names(&["po"]),
        ResourceType::namespaced("", "v1", "Event", "events").with_short_names(&["ev"]),
        ResourceType::namespaced("events.k8s.io", "v1", "Event", "events").with_short_names(&["ev"]),
        ResourceType::namespaced("apps", "v1", "Deployment", "deployments").with_short_names(&["deploy"]),
        ResourceType::namespaced("apps", "v1", "StatefulSet", "statefulsets").with_short_names(&["sts"]),
        ResourceType::namespaced("apps", "v1", "ReplicaSet", "replicasets").with_short_names(&["rs"]),
        ResourceType::namespaced("networking.k8s.io", "v1", "Ingress", "ingresses")
            .with_short_names(&["ing"]),
        ResourceType::namespaced("example.io", "v1", "Widget", "widgets").with_short_names(&["wd"]),
        ResourceType::namespaced("", "v1", "Namespace", "namespaces").cluster_scoped(),
    ]
}

fn resolve(names: &[&str]) -> Result<Vec<String>, UnknownResourceTypes> {
    let req: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    resolve_resource_types(&req, &[], &OPERATOR_DEFAULT_TYPES, &discovered())
        .map(|v| v.iter().map(ResourceType::resource_group).collect())
}

#[rstest]
#[case::plural(&["deployments"], &["deployments.apps"])]
#[case::kind(&["Deployment"], &["deployments.apps"])]
#[case::singular(&["deployment"], &["deployments.apps"])]
#[case::short_name(&["deploy"], &["deployments.apps"])]
#[case::upper_case(&["DEPLOYMENTS"], &["deployments.apps"])]
#[case::resource_group(&["deployments.apps"], &["deployments.apps"])]
#[case::kind_group(&["Ingress.networking.k8s.io"], &["ingresses.networking.k8s.io"])]
#[case::custom_resource(&["widgets.example.io"], &["widgets.example.io"])]
#[case::core_wins_ambiguity(&["events"], &["events"])]
#[case::group_picks_other(&["events.events.k8s.io"], &["events.events.k8s.io"])]
#[case::duplicates_merge(&["cm", "configmaps", "ConfigMap"], &["configmaps"])]
fn names_resolve(#[case] names: &[&str], #[case] want: &[&str]) {
    assert_eq!(resolve(names).unwrap(), want);
}

#[test]
fn empty_means_the_operator_defaults() {
    // `deployments`, `configmaps`, `secrets`, `services`, `ingresses`, `persistentvolumeclaims`.
    let got = resolve(&[]).unwrap();
    assert_eq!(got.len(), 6, "{got:?}");
    assert!(got.contains(&"ingresses.networking.k8s.io".to_owned()));
}

#[test]
fn star_means_every_replicable_type_but_runtime_owned_ones() {
    let got = resolve(&["*"]).unwrap();
    for t in [
        "configmaps",
        "deployments.apps",
        "statefulsets.apps",
        "widgets.example.io",
        "persistentvolumeclaims",
    ] {
        assert!(got.contains(&t.to_owned()), "{t} missing in {got:?}");
    }
    for t in [
        "pods",
        "events",
        "events.events.k8s.io",
        "replicasets.apps",
        "namespaces",
    ] {
        assert!(!got.contains(&t.to_owned()), "{t} must not be in {got:?}");
    }
}

#[test]
fn unknown_names_are_reported_together() {
    let err = resolve(&["deployments", "gizmos", "foo.bar"]).unwrap_err();
    assert_eq!(err.0, ["gizmos", "foo.bar"]);
    assert!(err.to_string().contains("gizmos, foo.bar"));
}

#[test]
fn extra_namespace_scoped_resources_add_up() {
    let got = resolve_resource_types(
        &["configmaps".into()],
        &["widgets.example.io".into()],
        &OPERATOR_DEFAULT_TYPES,
        &discovered(),
    )
    .unwrap();
    assert_eq!(got.len(), 2);
}

#[rstest]
#[case("cache-*", "cache-a", true)]
#[case("cache-*", "cache-", true)]
#[case("cache-*", "mycache-a", false)]
#[case("*-tmp", "x-tmp", true)]
#[case("a*b*c", "a-b-c", true)]
#[case("a*b*c", "a-c", false)]
#[case("exact", "exact", true)]
#[case("exact", "exactly", false)]
#[case("*", "", true)]
#[case("a*a", "a", false)]
fn globs(#[case] pattern: &str, #[case] text: &str, #[case] want: bool) {
    assert_eq!(glob_match(pattern, text), want);
}

fn object(kind: &str, v: serde_json::Value) -> DynamicObject {
    let mut base = json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": "o", "namespace": "app"}});
    if let Some(m) = v.get("metadata") {
        for (k, val) in m.as_object().unwrap() {
            base["metadata"][k] = val.clone();
        }
    }
    if let Some(t) = v.get("type") {
        base["type"] = t.clone();
    }
    serde_json::from_value(base).unwrap()
}

fn filter(v: serde_json::Value) -> ObjectFilter {
    let mut spec: crate::api::NamespaceMappingSpec = serde_json::from_value(v).unwrap();
    spec.source_namespace = Some("app".into());
    ObjectFilter::new(&SyncConfig::from_spec(&spec).unwrap())
}

fn cm() -> ResourceType {
    ResourceType::namespaced("", "v1", "ConfigMap", "configmaps")
}

#[rstest]
#[case::plain(json!({}), "ConfigMap", json!({}), None)]
#[case::ignore_label(json!({}), "ConfigMap", json!({"metadata": {"labels": {"dr-syncer.io/ignore": "true"}}}), Some(Skip::Ignored))]
#[case::ignore_label_false(json!({}), "ConfigMap", json!({"metadata": {"labels": {"dr-syncer.io/ignore": "false"}}}), None)]
#[case::root_ca(json!({}), "ConfigMap", json!({"metadata": {"name": "kube-root-ca.crt"}}), Some(Skip::SystemManaged))]
#[case::exclude_label_any_value(json!({"excludeLabels": [{"key": "tmp"}]}), "ConfigMap", json!({"metadata": {"labels": {"tmp": "x"}}}), Some(Skip::ExcludedLabel("tmp=x".into())))]
#[case::exclude_label_value(json!({"excludeLabels": [{"key": "tier", "value": "cache"}]}), "ConfigMap", json!({"metadata": {"labels": {"tier": "cache"}}}), Some(Skip::ExcludedLabel("tier=cache".into())))]
#[case::exclude_label_other_value(json!({"excludeLabels": [{"key": "tier", "value": "cache"}]}), "ConfigMap", json!({"metadata": {"labels": {"tier": "web"}}}), None)]
#[case::exclude_resource_glob(json!({"excludeResources": [{"kind": "configmap", "name": "o*"}]}), "ConfigMap", json!({}), Some(Skip::ExcludedResource))]
#[case::exclude_resource_other_kind(json!({"excludeResources": [{"kind": "Secret", "name": "o"}]}), "ConfigMap", json!({}), None)]
#[case::selector_match(json!({"labelSelector": {"matchLabels": {"app": "web"}}}), "ConfigMap", json!({"metadata": {"labels": {"app": "web"}}}), None)]
#[case::selector_miss(json!({"labelSelector": {"matchLabels": {"app": "web"}}}), "ConfigMap", json!({}), Some(Skip::NotSelected))]
#[case::selector_notin(json!({"labelSelector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["scratch"]}]}}), "ConfigMap", json!({"metadata": {"labels": {"tier": "scratch"}}}), Some(Skip::NotSelected))]
#[case::controller_owned(json!({}), "ConfigMap", json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "1", "controller": true}]}}), Some(Skip::ControllerOwned("ReplicaSet/rs".into())))]
#[case::non_controller_owner(json!({}), "ConfigMap", json!({"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "p", "uid": "1"}]}}), None)]
fn object_filter(
    #[case] spec: serde_json::Value,
    #[case] kind: &str,
    #[case] obj: serde_json::Value,
    #[case] want: Option<Skip>,
) {
    let got = filter(spec).check(&cm(), &object(kind, obj)).err();
    assert_eq!(got, want);
}

#[test]
fn service_account_tokens_are_never_copied() {
    let secret = ResourceType::namespaced("", "v1", "Secret", "secrets");
    let token = object("Secret", json!({"type": "kubernetes.io/service-account-token"}));
    assert_eq!(filter(json!({})).check(&secret, &token), Err(Skip::SystemManaged));
    let opaque = object("Secret", json!({"type": "Opaque"}));
    assert_eq!(filter(json!({})).check(&secret, &opaque), Ok(()));
}
