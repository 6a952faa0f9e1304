//! The committed CRD YAML (deploy/crds/) matches the API types, and the Go-schema example manifests
//! (examples/manifests/) deserialize into them.

use std::path::{Path, PathBuf};

use dr_syncer_core::api::{
    CRD_FILES, ClusterMapping, KNOWN_NUMBER_FORMATS, NamespaceMapping, RemoteCluster, crd_yaml, crds,
};
use kube::CustomResourceExt;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn committed_crds_match_the_types() {
    for (crd, file) in crds().iter().zip(CRD_FILES) {
        let path = root().join("deploy/crds").join(file);
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run scripts/gen-crds.sh", path.display()));
        let generated = crd_yaml(crd).unwrap();
        let a: Value = serde_saphyr::from_str(&committed).unwrap();
        let b: Value = serde_saphyr::from_str(&generated).unwrap();
        assert!(
            a == b,
            "{} is out of date with the API types: run scripts/gen-crds.sh and commit",
            path.display()
        );
        assert_eq!(
            committed,
            generated,
            "{} differs in formatting: run scripts/gen-crds.sh",
            path.display()
        );
    }
}

/// kube-apiserver warns on every apply of a CRD whose schema has a format it does not know
/// ("unrecognized format \"uint8\""); integers must be `int32`/`int64`, and unsigned ones keep `minimum: 0`.
#[test]
fn the_crds_use_only_formats_the_api_server_knows() {
    const STRING_FORMATS: [&str; 2] = ["date-time", "byte"];
    fn walk(node: &Value, path: &str, out: &mut Vec<String>) {
        match node {
            Value::Object(map) => {
                if let Some(Value::String(format)) = map.get("format")
                    && !KNOWN_NUMBER_FORMATS.contains(&format.as_str())
                    && !STRING_FORMATS.contains(&format.as_str())
                {
                    out.push(format!("{path}: {format}"));
                }
                for (k, v) in map {
                    walk(v, &format!("{path}/{k}"), out);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, path, out)),
            _ => {}
        }
    }
    let mut unknown = Vec::new();
    for crd in crds() {
        let v = serde_json::to_value(&crd).unwrap();
        walk(&v, crd.metadata.name.as_deref().unwrap(), &mut unknown);
    }
    assert!(unknown.is_empty(), "unrecognized formats: {unknown:#?}");
    // The unsigned fields kept their lower bound.
    let nm = serde_json::to_value(&crds()[2]).unwrap();
    let percent = nm.pointer(
        "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/deletionBrake/properties/percent",
    );
    assert_eq!(
        percent.map(|p| (p["format"].clone(), p["minimum"].clone())),
        Some((Value::from("int32"), Value::from(0.0)))
    );
}

#[test]
fn every_example_manifest_deserializes() {
    let dir = root().join("examples/manifests");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_str_multiple(&text).unwrap();
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            let result = match kind.as_str() {
                "RemoteCluster" => serde_json::from_value::<RemoteCluster>(doc).map(|_| ()),
                "ClusterMapping" => serde_json::from_value::<ClusterMapping>(doc).map(|_| ()),
                "NamespaceMapping" => serde_json::from_value::<NamespaceMapping>(doc).map(|_| ()),
                _ => Ok(()),
            };
            result.unwrap_or_else(|e| panic!("{} ({kind}): {e}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 6, "expected the example manifests in {}", dir.display());
}

/// The leaf fields of a CRD's `spec` schema, as dotted paths (`[]` for list items).
fn spec_fields(crd: &Value) -> Vec<String> {
    fn walk(node: &Value, path: &mut Vec<String>, out: &mut Vec<String>) {
        if let Some(props) = node["properties"].as_object() {
            for (k, v) in props {
                path.push(k.clone());
                walk(v, path, out);
                path.pop();
            }
        } else if node["type"] == "array" && node["items"]["properties"].is_object() {
            path.push("[]".into());
            walk(&node["items"], path, out);
            path.pop();
        } else {
            out.push(path.join("."));
        }
    }
    let mut out = Vec::new();
    walk(
        &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"],
        &mut Vec::new(),
        &mut out,
    );
    out.sort();
    out
}

/// Every field of the RemoteCluster spec and what reads it: a new field fails this test until it is
/// given a reader (or an explicit report). "Reported" fields come from the Go schema and have no
/// meaning here; the operator says so in a `SpecFieldsUsed=False` condition and an Event, never
/// silently. (`every_pvc_sync_field_takes_effect` in the core and the operator's tests show the
/// readers at work.)
#[test]
fn every_remote_cluster_spec_field_is_read_or_reported() {
    const READERS: &[(&str, &str)] = &[
        (
            "defaultResourceTypes",
            "operator namespace_mapping::run: types of mappings that list none",
        ),
        (
            "defaultSchedule",
            "operator namespace_mapping: schedule of mappings that set none",
        ),
        (
            "kubeconfigSecretRef.key",
            "operator clusters: the Secret key read",
        ),
        ("kubeconfigSecretRef.name", "operator clusters: the Secret read"),
        (
            "kubeconfigSecretRef.namespace",
            "operator clusters: the Secret's namespace (boundaries)",
        ),
        (
            "pvcSync.concurrency",
            "AgentSettings.node_concurrency -> PvcDataSync NodeLimits",
        ),
        (
            "pvcSync.defaultSamplePercent",
            "TransferSettings::from_config_and_agents",
        ),
        (
            "pvcSync.defaultVerificationMode",
            "TransferSettings::from_config_and_agents",
        ),
        (
            "pvcSync.deployment.annotations",
            "agent_daemonset: pod annotations",
        ),
        ("pvcSync.deployment.extraEnv.[].name", "agent_daemonset: env"),
        (
            "pvcSync.deployment.extraEnv.[].value",
            "agent_daemonset: env value",
        ),
        (
            "pvcSync.deployment.extraEnv.[].valueFrom.fieldRef.fieldPath",
            "agent_daemonset: env valueFrom.fieldRef",
        ),
        (
            "pvcSync.deployment.hostNetwork",
            "agent_daemonset: hostNetwork, else a hostPort for SSH",
        ),
        ("pvcSync.deployment.labels", "agent_daemonset: pod labels"),
        ("pvcSync.deployment.nodeSelector", "agent_daemonset: nodeSelector"),
        (
            "pvcSync.deployment.priorityClassName",
            "agent_daemonset: priorityClassName",
        ),
        (
            "pvcSync.deployment.privileged",
            "agent_daemonset: a privileged container",
        ),
        (
            "pvcSync.deployment.resources.limits",
            "agent_daemonset: resources",
        ),
        (
            "pvcSync.deployment.resources.requests",
            "agent_daemonset: resources",
        ),
        ("pvcSync.deployment.tolerations", "agent_daemonset: tolerations"),
        (
            "pvcSync.enabled",
            "operator agents::reconcile: deploy or remove the agents",
        ),
        (
            "pvcSync.globalConcurrencyLimit",
            "operator Context::data_limit: copies per cluster",
        ),
        (
            "pvcSync.healthCheck.interval",
            "operator remote_cluster/cluster_mapping: recheck interval",
        ),
        ("pvcSync.healthCheck.retryAttempts", "probe_agents: attempts"),
        (
            "pvcSync.healthCheck.retryInterval",
            "probe_agents: delay between attempts",
        ),
        (
            "pvcSync.healthCheck.sshTimeout",
            "probe_pod: --connect-timeout-secs",
        ),
        (
            "pvcSync.image.pullPolicy",
            "AgentSettings.pull_policy: agent, mount, mover and probe pods",
        ),
        ("pvcSync.image.repository", "AgentSettings.image"),
        ("pvcSync.image.tag", "AgentSettings.image"),
        (
            "pvcSync.moverSourceAddresses",
            "PvcDataSync: the transfer key's from=",
        ),
        (
            "pvcSync.exposure.mode",
            "Exposure::candidates -> mover --host/--fallback-address; probe_agents",
        ),
        (
            "pvcSync.exposure.address",
            "Exposure::candidates_of(Address): {node} template",
        ),
        (
            "pvcSync.exposure.nodePort",
            "agent_node_port_service: spec.ports[0].nodePort",
        ),
        (
            "pvcSync.exposure.serviceAnnotations",
            "agent_node_port_service, transfer_load_balancer: annotations",
        ),
        (
            "pvcSync.kubeletRoot",
            "agent_daemonset: --volume-root and its hostPath (else discovered from the nodes)",
        ),
        (
            "pvcSync.hostPathPrefixes",
            "agent_daemonset: --host-path-prefix mounts; PvcDataSync: hostPath PVs below them only",
        ),
        (
            "pvcSync.retryConfig.initialDelay",
            "TransferSettings.retry_initial_delay -> mover",
        ),
        (
            "pvcSync.retryConfig.maxDelay",
            "TransferSettings.retry_max_delay -> mover",
        ),
        (
            "pvcSync.retryConfig.maxRetries",
            "TransferSettings.retries -> mover",
        ),
        ("pvcSync.rsyncDaemonSet.enabled", "reported: unused_fields"),
        ("pvcSync.rsyncDaemonSet.image", "reported: unused_fields"),
        ("pvcSync.rsyncDaemonSet.namespace", "reported: unused_fields"),
        ("pvcSync.rsyncDaemonSet.sshSecretName", "reported: unused_fields"),
        ("pvcSync.ssh.keySecretRef.name", "reported: unused_fields"),
        ("pvcSync.ssh.keySecretRef.namespace", "reported: unused_fields"),
        ("pvcSync.ssh.port", "AgentSettings.port: sshd, movers, probes"),
    ];
    let crd = serde_json::to_value(RemoteCluster::crd()).unwrap();
    let fields = spec_fields(&crd);
    let listed: Vec<String> = READERS.iter().map(|(f, _)| (*f).to_owned()).collect();
    let missing: Vec<&String> = fields.iter().filter(|f| !listed.contains(f)).collect();
    let gone: Vec<&String> = listed.iter().filter(|f| !fields.contains(f)).collect();
    assert!(
        missing.is_empty() && gone.is_empty(),
        "fields without a reader: {missing:?}; listed fields no longer in the schema: {gone:?}"
    );
}
