use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use serde_json::json;

use super::{exposure::Endpoint, manifests::*, *};
use crate::{
    api::{DataSyncConfig, PvcSyncSpec},
    keys::{AuthorizedClientKeys, KeyPair, KeySecrets},
};

fn pvc(name: &str, pv: Option<&str>) -> PersistentVolumeClaim {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "app"},
        "spec": {"volumeName": pv},
    }))
    .unwrap()
}

fn pod(name: &str, claim: &str, node: &str, phase: &str, role: Option<&str>) -> Pod {
    let mut labels = serde_json::Map::new();
    if let Some(r) = role {
        labels.insert(ROLE_LABEL.into(), json!(r));
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "app", "uid": format!("uid-{name}"), "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c"}],
                 "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]},
        "status": {"phase": phase},
    }))
    .unwrap()
}

#[test]
fn the_source_volume_is_found_from_running_pods_preferring_the_application() {
    let claim = pvc("data", Some("pv-1"));
    let pods = vec![
        pod("a-mount", "data", "node-2", "Running", Some("mount")),
        pod("other", "logs", "node-3", "Running", None),
        pod("pending", "data", "node-4", "Pending", None),
        pod("app-0", "data", "node-1", "Running", None),
    ];
    let found = SourceVolume::locate(&claim, &pods).unwrap();
    assert_eq!(
        (
            found.pod.as_str(),
            found.node.as_str(),
            found.pv.as_str(),
            found.mount_pod
        ),
        ("app-0", "node-1", "pv-1", false)
    );
    assert_eq!(found.grant_value(), "uid-app-0/pv-1");
    // Only the mount pod left: it is used.
    let found = SourceVolume::locate(&claim, &pods[..3]).unwrap();
    assert!(found.mount_pod && found.node == "node-2");
    // Nothing running, or the claim not bound: nowhere.
    assert_eq!(SourceVolume::locate(&claim, &pods[1..3]), None);
    assert_eq!(SourceVolume::locate(&pvc("data", None), &pods), None);
}

#[test]
fn generated_names_are_valid_and_distinct() {
    let long = "x".repeat(300);
    for (ns, pvc) in [("app", "data"), ("app", "Data_Volume.1"), ("n", long.as_str())] {
        let name = mover_pod_name(ns, pvc);
        assert!(name.len() <= 63, "{name}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{name}"
        );
        assert!(!name.ends_with('-'));
        let grant = grant_name(ns, pvc, (ns, pvc));
        assert!(
            grant.len() <= 200
                && grant
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        );
    }
    assert_ne!(mover_pod_name("a", "b-c"), mover_pod_name("a-b", "c"));
    assert_ne!(mount_pod_name("a", "data"), mover_pod_name("a", "data"));
    assert!(grant_name("app", "data", ("app", "data")).starts_with("app.data."));
    assert_ne!(
        grant_name("app", "data", ("dr-a", "data")),
        grant_name("app", "data", ("dr-b", "data")),
        "copies into two destinations have grants of their own"
    );
}

#[test]
fn transfer_settings_come_from_the_mapping_and_become_mover_flags() {
    let config = DataSyncConfig {
        exclude_paths: Some(vec!["cache/".into()]),
        rsync_options: Some(vec!["--compress".into()]),
        bandwidth_limit: Some(1024),
        timeout: "10m".into(),
        verification_mode: VerificationMode::Sample,
        sample_percent: 20,
        ..DataSyncConfig::default()
    };
    let s = TransferSettings::from_config(Some(&config)).unwrap();
    assert_eq!(s.timeout, Duration::from_secs(600));
    assert_eq!(
        s.mover_args(),
        [
            "--exclude=cache/",
            "--rsync-option=--compress",
            "--bwlimit-kib=1024",
            "--timeout-secs=600",
            "--verification=sample",
            "--sample-percent=20",
            "--retries=3",
            "--retry-initial-ms=1000",
            "--retry-max-ms=30000"
        ]
    );
    let bad = DataSyncConfig {
        rsync_options: Some(vec!["--remove-source-files".into()]),
        ..DataSyncConfig::default()
    };
    let err = TransferSettings::from_config(Some(&bad)).unwrap_err();
    assert!(err.contains("rsyncOptions"), "{err}");
    let bad = DataSyncConfig {
        timeout: "soon".into(),
        ..DataSyncConfig::default()
    };
    assert!(
        TransferSettings::from_config(Some(&bad))
            .unwrap_err()
            .contains("timeout")
    );
}

#[test]
fn mover_lines_parse_back_into_events() {
    let log = r#"some agent log line
{"event":"waiting","message":"waiting for the reader"}
{"event":"progress","attempt":1,"bytes":100,"percent":42,"bytesPerSecond":10.5,"remainingSeconds":3,"filesTransferred":2,"filesToCheck":1,"filesTotal":5}
"#;
    assert_eq!(
        MoverEvent::last_in(log),
        Some(MoverEvent::Progress(MoverProgress {
            attempt: 1,
            bytes: 100,
            percent: 42,
            bytes_per_second: 10.5,
            remaining_seconds: Some(3),
            files_transferred: 2,
            files_total: 5,
        }))
    );
    let done = r#"{"event":"completed","stats":{"bytesSent":5,"bytesReceived":1,"literalBytes":4,"totalBytes":9,"filesTransferred":2,"filesDeleted":1,"filesTotal":3,"filesVerified":0,"durationSeconds":1.5,"bytesPerSecond":3.3,"attempts":2}}"#;
    let Some(MoverEvent::Completed(stats)) = MoverEvent::parse(done) else {
        panic!("completed expected");
    };
    assert_eq!((stats.bytes_sent, stats.files_deleted, stats.attempts), (5, 1, 2));
    assert_eq!(stats.duration, Duration::from_millis(1500));
    let failed =
        r#"{"event":"failed","kind":"HostKeyMismatch","transient":false,"message":"host key mismatch"}"#;
    let Some(MoverEvent::Failed {
        kind,
        transient,
        message,
    }) = MoverEvent::parse(failed)
    else {
        panic!("failed expected");
    };
    let err = MoverEvent::into_error(&kind, transient, message);
    assert_eq!(err.kind(), "HostKeyMismatch");
    assert!(!err.is_transient());
    assert!(MoverEvent::into_error("TransferFailed", true, "x".into()).is_transient());
    assert_eq!(
        err.to_string(),
        "host key mismatch",
        "the mover's message, not repeated"
    );
    assert_eq!(
        MoverEvent::into_error("SomethingNew", false, "y".into()).kind(),
        "TransferFailed"
    );
    assert_eq!(MoverEvent::parse("not json"), None);
    assert_eq!(MoverEvent::parse(r#"{"event":"other"}"#), None);
}

#[test]
fn agent_settings_follow_the_remote_cluster_spec() {
    let spec: PvcSyncSpec = serde_json::from_value(json!({
        "enabled": true,
        "image": {"repository": "registry.example/dr-syncer-agent", "tag": "v1", "pullPolicy": "IfNotPresent"},
        "ssh": {"port": 2022},
        "globalConcurrencyLimit": 2,
        "deployment": {"nodeSelector": {"role": "storage"},
                       "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]},
    }))
    .unwrap();
    let s = AgentSettings::from_spec(Some(&spec));
    assert_eq!(s.image, "registry.example/dr-syncer-agent:v1");
    assert_eq!((s.port, s.health_port, s.global_concurrency), (2022, 2023, 2));
    let keys = KeySecrets::for_remote_cluster("prod");
    let ds = serde_json::to_value(agent_daemonset(&s, &keys)).unwrap();
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["nodeSelector"]["role"], "storage");
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    let args: Vec<String> = serde_json::from_value(pod["containers"][0]["args"].clone()).unwrap();
    assert!(
        args.contains(&"--port=2022".to_string())
            && args.contains(&"--grants-dir=/etc/dr-syncer/grants".to_string())
    );
    let volumes = pod["volumes"].as_array().unwrap();
    assert!(
        volumes
            .iter()
            .any(|v| v["secret"]["secretName"] == keys.host_keys())
    );
    assert!(volumes.iter().any(|v| v["configMap"]["name"] == GRANTS_CONFIGMAP));
    let mounts = pod["containers"][0]["volumeMounts"].as_array().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["mountPath"] == "/var/lib/kubelet" && m["readOnly"] == true)
    );
    // A read-only root file system, and a writable /tmp for sshd's ExposeAuthInfo file (without it
    // no transfer's key would be recognised).
    assert_eq!(
        pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        true
    );
    let tmp = mounts
        .iter()
        .find(|m| m["mountPath"] == "/tmp")
        .expect("/tmp mounted");
    assert!(
        volumes
            .iter()
            .any(|v| v["name"] == tmp["name"] && v["emptyDir"].is_object())
    );
    // Defaults: tolerate everything.
    let d = serde_json::to_value(agent_daemonset(&AgentSettings::default(), &keys)).unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["tolerations"],
        json!([{"operator": "Exists"}])
    );
    assert_eq!(
        d["spec"]["selector"]["matchLabels"],
        d["spec"]["template"]["metadata"]["labels"]
            .as_object()
            .map(
                |l| json!({"app.kubernetes.io/name": l["app.kubernetes.io/name"], ROLE_LABEL: l[ROLE_LABEL]})
            )
            .unwrap()
    );
}

#[test]
fn mount_and_mover_pods_mount_what_they_need_and_nothing_else() {
    let s = AgentSettings::default();
    let mount = serde_json::to_value(mount_pod(&s, "app", "data", Some("node-1"))).unwrap();
    assert_eq!(mount["spec"]["nodeName"], "node-1");
    assert_eq!(
        mount["spec"]["volumes"][0]["persistentVolumeClaim"]["readOnly"],
        true
    );
    assert_eq!(
        mount["spec"]["containers"][0]["volumeMounts"][0]["readOnly"],
        true
    );
    assert_eq!(mount["metadata"]["labels"][ROLE_LABEL], "mount");
    let anywhere = serde_json::to_value(mount_pod(&s, "app", "data", None)).unwrap();
    assert!(anywhere["spec"].get("nodeName").is_none());

    let target = MoverTarget {
        namespace: "app-dr",
        pvc: "data",
        readers: &[
            Endpoint::parse("10.0.0.7", 2222).unwrap(),
            Endpoint::parse("203.0.113.7:30022", 2222).unwrap(),
        ],
        grant: "app.data",
        grant_wait: Duration::from_secs(60),
        key_secret: "dr-syncer-mover-key",
        source: "app/data",
    };
    let mover =
        serde_json::to_value(mover_pod(&s.image, None, &target, &TransferSettings::default())).unwrap();
    assert_eq!(mover["spec"]["restartPolicy"], "Never");
    assert_eq!(mover["metadata"]["name"], mover_pod_name("app-dr", "data"));
    let args: Vec<String> = serde_json::from_value(mover["spec"]["containers"][0]["args"].clone()).unwrap();
    for want in [
        "mover",
        "--host=10.0.0.7",
        "--port=2222",
        "--fallback-address=203.0.113.7:30022",
        "--grant=app.data",
        "--grant-wait-secs=60",
        "--destination=/data",
        "--termination-log=/dev/termination-log",
        "--host-key-file=/etc/dr-syncer/mover-key/known_host_keys",
        "--identity=/etc/dr-syncer/mover-key/id_ed25519",
    ] {
        assert!(args.contains(&want.to_string()), "{want} missing from {args:?}");
    }
    assert_eq!(
        mover["spec"]["volumes"][1]["secret"]["secretName"],
        "dr-syncer-mover-key"
    );

    // Key objects carry the generated keys.
    let keys = KeySecrets::for_remote_cluster("prod");
    let host = KeyPair::generate_ed25519("t").unwrap();
    let secret = host_keys_secret(&s, &keys, &host);
    assert_eq!(
        secret.metadata.namespace.as_deref(),
        Some(DEFAULT_AGENT_NAMESPACE)
    );
    assert!(secret.data.unwrap().contains_key(crate::keys::HOST_KEY_FILE));
    let auth = authorized_keys_secret(&s, &keys, &AuthorizedClientKeys::new([host.public_key()]));
    assert_eq!(auth.metadata.name, Some(keys.authorized_keys()));
    assert_eq!(
        grants_configmap(&s).metadata.name.as_deref(),
        Some(GRANTS_CONFIGMAP)
    );
    assert_eq!(
        agent_namespace(&s).metadata.labels.unwrap()["pod-security.kubernetes.io/enforce"],
        "privileged"
    );
}

/// Every `pvcSync` field of the Go schema that can apply has an effect: per-node concurrency, the
/// retry policy, the verification defaults, the health check, host network and privileged as
/// overrides, and `extraEnv` from pod fields.
#[test]
fn every_pvc_sync_field_takes_effect() {
    let spec: PvcSyncSpec = serde_json::from_value(json!({
        "enabled": true,
        "concurrency": 2,
        "retryConfig": {"maxRetries": 7, "initialDelay": "3s", "maxDelay": "1m"},
        "defaultVerificationMode": "sample",
        "defaultSamplePercent": 25,
        "healthCheck": {"interval": "2m", "sshTimeout": "20s", "retryInterval": "5s", "retryAttempts": 4},
        "deployment": {
            "hostNetwork": false,
            "privileged": true,
            "extraEnv": [
                {"name": "PLAIN", "value": "x"},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            ],
        },
    }))
    .unwrap();
    let s = AgentSettings::from_spec(Some(&spec));
    assert_eq!(s.node_concurrency, Some(2));
    assert_eq!(
        s.retry,
        AgentRetry {
            max_retries: 7,
            initial_delay: Duration::from_secs(3),
            max_delay: Duration::from_secs(60),
        }
    );
    assert_eq!(
        (s.default_verification, s.default_sample_percent),
        (VerificationMode::Sample, 25)
    );
    assert_eq!(
        s.health,
        AgentHealth {
            interval: Some(Duration::from_secs(120)),
            ssh_timeout: Duration::from_secs(20),
            retry_interval: Duration::from_secs(5),
            retry_attempts: 4,
        }
    );

    // The DaemonSet: pod network with the SSH port on the node, privileged, env from the pod's node.
    let keys = KeySecrets::for_remote_cluster("prod");
    let ds = serde_json::to_value(agent_daemonset(&s, &keys)).unwrap();
    let pod = &ds["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(pod["hostNetwork"], false);
    assert_eq!(pod["dnsPolicy"], "ClusterFirst");
    assert_eq!(container["ports"][0]["hostPort"], 2222);
    assert_eq!(container["securityContext"]["privileged"], true);
    assert_eq!(
        container["env"],
        json!([{"name": "PLAIN", "value": "x"},
               {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
               {"name": NODE_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}])
    );
    // Without `deployment`: host network, not privileged, only the capabilities the agent needs.
    let plain = serde_json::to_value(agent_daemonset(&AgentSettings::default(), &keys)).unwrap();
    let c = &plain["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(plain["spec"]["template"]["spec"]["hostNetwork"], true);
    assert!(c["securityContext"]["privileged"].is_null());
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert!(c["ports"][0]["hostPort"].is_null());

    // The transfer: the cluster's retries and verification defaults where the mapping sets none; the
    // mapping's own verification wins.
    let t = TransferSettings::from_config_and_agents(None, &s).unwrap();
    assert_eq!(
        (t.retries, t.verification, t.sample_percent),
        (7, VerificationMode::Sample, 25)
    );
    let args = t.mover_args();
    for want in [
        "--retries=7",
        "--retry-initial-ms=3000",
        "--retry-max-ms=60000",
        "--verification=sample",
    ] {
        assert!(args.contains(&want.to_string()), "{want} in {args:?}");
    }
    let own: DataSyncConfig =
        serde_json::from_value(json!({"verificationMode": "full", "samplePercent": 50})).unwrap();
    let t = TransferSettings::from_config_and_agents(Some(&own), &s).unwrap();
    assert_eq!((t.verification, t.sample_percent), (VerificationMode::Full, 50));

    // The probe pod waits as long as the health check says.
    let probe = serde_json::to_value(probe_pod(&s, "img", "ns", "p", &["10.0.0.1".into()], "key")).unwrap();
    let probe_args: Vec<String> =
        serde_json::from_value(probe["spec"]["containers"][0]["args"].clone()).unwrap();
    assert!(
        probe_args.contains(&"--connect-timeout-secs=20".to_string()),
        "{probe_args:?}"
    );
}

/// The networks extensions of `pvcSync`: the exposure mode and its Services, the kubelet root and the
/// hostPath prefixes reach the agents' objects; bad values are refused with the field's name.
#[test]
fn exposure_kubelet_root_and_host_path_prefixes_take_effect() {
    let spec: PvcSyncSpec = serde_json::from_value(json!({
        "enabled": true,
        "exposure": {"mode": "NodePort", "nodePort": 31022,
                     "serviceAnnotations": {"example.com/internal": "true"}},
        "kubeletRoot": "/var/snap/microk8s/common/var/lib/kubelet",
        "hostPathPrefixes": ["/srv/volumes"],
    }))
    .unwrap();
    let s = AgentSettings::from_spec(Some(&spec));
    assert_eq!(s.validate(), Ok(()));
    assert_eq!(s.exposure.mode, Some(exposure::ExposureMode::NodePort));
    let keys = KeySecrets::for_remote_cluster("prod");
    let ds = serde_json::to_value(agent_daemonset(&s, &keys)).unwrap();
    let pod = &ds["spec"]["template"]["spec"];
    let args: Vec<String> = serde_json::from_value(pod["containers"][0]["args"].clone()).unwrap();
    for want in [
        "--volume-root=/var/snap/microk8s/common/var/lib/kubelet",
        "--host-path-prefix=/srv/volumes",
        "--host-path-mount=/host-paths/0",
    ] {
        assert!(args.contains(&want.to_string()), "{want} missing from {args:?}");
    }
    let volumes = pod["volumes"].as_array().unwrap();
    assert!(volumes.contains(&json!({"name": "host-path-0",
        "hostPath": {"path": "/srv/volumes", "type": "DirectoryOrCreate"}})));
    assert!(volumes.contains(&json!({"name": "kubelet",
        "hostPath": {"path": "/var/snap/microk8s/common/var/lib/kubelet", "type": "Directory"}})));
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "host-path-0")
        .cloned()
        .unwrap();
    assert_eq!(mount["readOnly"], true);

    let svc = serde_json::to_value(agent_node_port_service(&s)).unwrap();
    assert_eq!(svc["spec"]["type"], "NodePort");
    assert_eq!(svc["spec"]["externalTrafficPolicy"], "Local");
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 31022);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 2222);
    assert_eq!(svc["spec"]["selector"]["app.kubernetes.io/name"], AGENT_NAME);
    assert_eq!(svc["metadata"]["annotations"]["example.com/internal"], "true");

    let (lb, slice) = transfer_load_balancer(&s, "shop.data.abc", "prod-a", "10.0.0.11");
    let lb = serde_json::to_value(lb).unwrap();
    let slice = serde_json::to_value(slice).unwrap();
    assert_eq!(lb["spec"]["type"], "LoadBalancer");
    assert!(
        lb["spec"].get("selector").is_none(),
        "only the endpoint named below"
    );
    assert_eq!(
        slice["metadata"]["labels"]["kubernetes.io/service-name"],
        lb["metadata"]["name"]
    );
    assert_eq!(slice["endpoints"][0]["addresses"], json!(["10.0.0.11"]));
    assert_eq!(slice["endpoints"][0]["nodeName"], "prod-a");

    // Unset: discovered later, default prefixes.
    let d = AgentSettings::default();
    assert_eq!(d.kubelet_root(), "/var/lib/kubelet");
    assert_eq!(d.host_path_prefixes.len(), 3);
    for (bad, field) in [
        (json!({"hostPathPrefixes": ["/"]}), "hostPathPrefixes"),
        (json!({"hostPathPrefixes": ["/var/lib"]}), "hostPathPrefixes"),
        (json!({"kubeletRoot": "relative"}), "kubeletRoot"),
        (json!({"exposure": {"mode": "Address"}}), "exposure"),
        (
            json!({"exposure": {"mode": "Address", "address": "a b"}}),
            "exposure.address",
        ),
    ] {
        let spec: PvcSyncSpec = serde_json::from_value(bad.clone()).unwrap();
        let err = AgentSettings::from_spec(Some(&spec)).validate().unwrap_err();
        assert!(err.contains(field), "{bad}: {err}");
    }
}
