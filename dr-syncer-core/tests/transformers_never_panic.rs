//! Property test: every built-in transformer (and the activation helpers) handles any JSON under a valid
//! kind without panicking — it keeps, drops or returns an error for the object.

use std::sync::Arc;

use dr_syncer_core::{
    activation,
    api::NamespaceMappingSpec,
    config::SyncConfig,
    resource::ResourceType,
    transform::{TransformContext, Transformer, TransformerChain},
};
use kube::core::DynamicObject;
use proptest::prelude::*;
use serde_json::{Value, json};

const KINDS: [(&str, &str, &str); 12] = [
    ("", "v1", "ConfigMap"),
    ("", "v1", "Secret"),
    ("", "v1", "Service"),
    ("", "v1", "PersistentVolumeClaim"),
    ("", "v1", "Pod"),
    ("apps", "v1", "Deployment"),
    ("apps", "v1", "StatefulSet"),
    ("apps", "v1", "DaemonSet"),
    ("batch", "v1", "CronJob"),
    ("batch", "v1", "Job"),
    ("networking.k8s.io", "v1", "Ingress"),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding"),
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-zA-Z0-9:/.*,\\\\ -]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("spec".to_owned()),
                    Just("replicas".to_owned()),
                    Just("template".to_owned()),
                    Just("suspend".to_owned()),
                    Just("nodeSelector".to_owned()),
                    Just("containers".to_owned()),
                    Just("env".to_owned()),
                    Just("name".to_owned()),
                    Just("value".to_owned()),
                    Just("ports".to_owned()),
                    Just("clusterIP".to_owned()),
                    Just("type".to_owned()),
                    Just("rules".to_owned()),
                    Just("tls".to_owned()),
                    Just("hosts".to_owned()),
                    Just("host".to_owned()),
                    Just("subjects".to_owned()),
                    Just("namespace".to_owned()),
                    Just("accessModes".to_owned()),
                    Just("storageClassName".to_owned()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..5,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn annotation_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("3".to_owned()),
        Just("true".to_owned()),
        Just("{}".to_owned()),
        "[a-zA-Z0-9:,{}\"-]{0,16}"
    ]
}

fn object() -> impl Strategy<Value = (usize, DynamicObject)> {
    (
        0..KINDS.len(),
        json_value(),
        json_value(),
        annotation_value(),
        annotation_value(),
        annotation_value(),
    )
        .prop_filter_map("must be a Kubernetes object", |(k, spec, extra, a1, a2, a3)| {
            let (group, version, kind) = KINDS[k];
            let api_version = if group.is_empty() {
                version.to_owned()
            } else {
                format!("{group}/{version}")
            };
            let mut v = json!({
                "apiVersion": api_version, "kind": kind,
                "metadata": {
                    "name": "o", "namespace": "app",
                    "labels": {"dr-syncer.io/scale-override": a1, "dr-syncer.io/storage-class": a2},
                    "annotations": {
                        "dr-syncer.io/transform-env": a3.clone(),
                        "dr-syncer.io/original-replicas": a1,
                        "dr-syncer.io/original-suspend": a2,
                        "dr-syncer.io/original-node-selector": a3,
                    }
                },
                "spec": spec,
            });
            if let Value::Object(m) = extra {
                for (key, val) in m {
                    if !matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                        v[key] = val;
                    }
                }
            }
            serde_json::from_value::<DynamicObject>(v).ok().map(|o| (k, o))
        })
}

fn context(k: usize, active: bool) -> TransformContext {
    let (group, version, kind) = KINDS[k];
    let plural = format!("{}s", kind.to_ascii_lowercase());
    let spec: NamespaceMappingSpec = serde_json::from_value(json!({
        "sourceNamespace": "app",
        "serviceConfig": {"preserveClusterIP": false, "preserveNodePorts": false},
        "ingressConfig": {"preserveAnnotations": false, "preserveTLS": false, "transformHosts": true, "hostSuffix": "-dr.example.com"},
        "pvcConfig": {"storageClassMappings": [{"from": "a", "to": "b"}], "accessModeMappings": [{"from": "ReadWriteOnce", "to": "ReadWriteMany"}]},
        "transformRules": [
            {"patches": [{"op": "add", "path": "/metadata/labels/site", "value": "dr"}]},
            {"match": {"kind": "Deployment"}, "patches": [{"op": "replace", "path": "/spec/replicas", "value": 1}]},
            {"patches": [{"op": "test", "path": "/spec", "value": {}}, {"op": "remove", "path": "/spec"}]}
        ]
    }))
    .unwrap();
    let mut ctx = TransformContext::for_test(ResourceType::namespaced(group, version, kind, &plural));
    ctx.config = Arc::new(SyncConfig::from_spec(&spec).unwrap());
    ctx.destination_active = active;
    ctx
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn builtin_chain_never_panics((k, obj) in object(), active in any::<bool>()) {
        let ctx = context(k, active);
        let _ = TransformerChain::builtin().transform(obj.clone(), &ctx);
        let _ = activation::activate(&ctx.resource, &obj);
        let _ = activation::quiet(&ctx.resource, &obj);
    }
}
