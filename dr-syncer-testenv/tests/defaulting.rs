//! Defaulting the test control plane performs like kube-apiserver — one case per default.
//!
//! dr-syncer copies objects between servers that default them, so these defaults are what its no-op
//! detection and transformations meet in practice.

use dr_syncer_testenv::{ControlPlane, apply_yaml, create_namespace, init_tracing};
use rstest::rstest;
use serde_json::{Value, json};

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n";
const HEADLESS: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: hl}\nspec:\n  clusterIP: None\n  selector: {app: web}\n  ports: [{port: 80}]\n";
const EXTERNAL_NAME: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: ext}\nspec:\n  type: ExternalName\n  externalName: db.example.com\n";
const NODE_PORT: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: np}\nspec:\n  type: NodePort\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n";
const LOAD_BALANCER: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: lb}\nspec:\n  type: LoadBalancer\n  selector: {app: web}\n  ports: [{port: 443}]\n";
const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: "nginx:1.25", ports: [{containerPort: 80}]}
      - {name: latest, image: "busybox"}
      - {name: tagged-latest, image: "busybox:latest"}
"#;
const STATEFULSET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: "postgres:16"}]
"#;
const DAEMONSET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: "agent:1"}]
"#;
const CRONJOB: &str = r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 1 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: job, image: "job:1"}]
"#;
const POD: &str =
    "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: \"app:2\"}]\n";
const PVC: &str = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n";
const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {password: hunter2}\n";

/// What a defaulted field must look like.
#[derive(Debug)]
enum Expect {
    Eq(Value),
    /// A non-empty string that parses as an IPv4 address in the service CIDR 10.96.0.0/16.
    ServiceIp,
    /// A port number in the node-port range.
    NodePort,
    /// The field is not set.
    Absent,
}

#[rstest]
#[case::service_type(SERVICE, "/spec/type", Expect::Eq(json!("ClusterIP")))]
#[case::service_cluster_ip_allocated(SERVICE, "/spec/clusterIP", Expect::ServiceIp)]
#[case::service_cluster_ips_allocated(SERVICE, "/spec/clusterIPs/0", Expect::ServiceIp)]
#[case::service_port_protocol(SERVICE, "/spec/ports/0/protocol", Expect::Eq(json!("TCP")))]
#[case::service_target_port(SERVICE, "/spec/ports/0/targetPort", Expect::Eq(json!(80)))]
#[case::service_session_affinity(SERVICE, "/spec/sessionAffinity", Expect::Eq(json!("None")))]
#[case::service_ip_families(SERVICE, "/spec/ipFamilies", Expect::Eq(json!(["IPv4"])))]
#[case::service_ip_family_policy(SERVICE, "/spec/ipFamilyPolicy", Expect::Eq(json!("SingleStack")))]
#[case::service_internal_traffic_policy(SERVICE, "/spec/internalTrafficPolicy", Expect::Eq(json!("Cluster")))]
#[case::headless_keeps_none(HEADLESS, "/spec/clusterIP", Expect::Eq(json!("None")))]
#[case::external_name_gets_no_cluster_ip(EXTERNAL_NAME, "/spec/clusterIP", Expect::Absent)]
#[case::node_port_allocated(NODE_PORT, "/spec/ports/0/nodePort", Expect::NodePort)]
#[case::node_port_keeps_target_port(NODE_PORT, "/spec/ports/0/targetPort", Expect::Eq(json!(8080)))]
#[case::load_balancer_node_port_allocated(LOAD_BALANCER, "/spec/ports/0/nodePort", Expect::NodePort)]
#[case::deployment_replicas(DEPLOYMENT, "/spec/replicas", Expect::Eq(json!(1)))]
#[case::deployment_strategy(DEPLOYMENT, "/spec/strategy/type", Expect::Eq(json!("RollingUpdate")))]
#[case::deployment_max_unavailable(DEPLOYMENT, "/spec/strategy/rollingUpdate/maxUnavailable", Expect::Eq(json!("25%")))]
#[case::deployment_max_surge(DEPLOYMENT, "/spec/strategy/rollingUpdate/maxSurge", Expect::Eq(json!("25%")))]
#[case::deployment_revision_history(DEPLOYMENT, "/spec/revisionHistoryLimit", Expect::Eq(json!(10)))]
#[case::deployment_progress_deadline(DEPLOYMENT, "/spec/progressDeadlineSeconds", Expect::Eq(json!(600)))]
#[case::template_restart_policy(DEPLOYMENT, "/spec/template/spec/restartPolicy", Expect::Eq(json!("Always")))]
#[case::template_dns_policy(DEPLOYMENT, "/spec/template/spec/dnsPolicy", Expect::Eq(json!("ClusterFirst")))]
#[case::template_grace_period(DEPLOYMENT, "/spec/template/spec/terminationGracePeriodSeconds", Expect::Eq(json!(30)))]
#[case::template_scheduler(DEPLOYMENT, "/spec/template/spec/schedulerName", Expect::Eq(json!("default-scheduler")))]
#[case::template_security_context(DEPLOYMENT, "/spec/template/spec/securityContext", Expect::Eq(json!({})))]
#[case::container_termination_path(DEPLOYMENT, "/spec/template/spec/containers/0/terminationMessagePath", Expect::Eq(json!("/dev/termination-log")))]
#[case::container_termination_policy(DEPLOYMENT, "/spec/template/spec/containers/0/terminationMessagePolicy", Expect::Eq(json!("File")))]
#[case::container_pull_policy_tagged(DEPLOYMENT, "/spec/template/spec/containers/0/imagePullPolicy", Expect::Eq(json!("IfNotPresent")))]
#[case::container_pull_policy_untagged(DEPLOYMENT, "/spec/template/spec/containers/1/imagePullPolicy", Expect::Eq(json!("Always")))]
#[case::container_pull_policy_latest(DEPLOYMENT, "/spec/template/spec/containers/2/imagePullPolicy", Expect::Eq(json!("Always")))]
#[case::container_port_protocol(DEPLOYMENT, "/spec/template/spec/containers/0/ports/0/protocol", Expect::Eq(json!("TCP")))]
#[case::statefulset_replicas(STATEFULSET, "/spec/replicas", Expect::Eq(json!(1)))]
#[case::statefulset_pod_management(STATEFULSET, "/spec/podManagementPolicy", Expect::Eq(json!("OrderedReady")))]
#[case::statefulset_update_strategy(STATEFULSET, "/spec/updateStrategy/type", Expect::Eq(json!("RollingUpdate")))]
#[case::statefulset_partition(STATEFULSET, "/spec/updateStrategy/rollingUpdate/partition", Expect::Eq(json!(0)))]
#[case::statefulset_revision_history(STATEFULSET, "/spec/revisionHistoryLimit", Expect::Eq(json!(10)))]
#[case::statefulset_pvc_retention(STATEFULSET, "/spec/persistentVolumeClaimRetentionPolicy", Expect::Eq(json!({"whenDeleted": "Retain", "whenScaled": "Retain"})))]
#[case::statefulset_template(STATEFULSET, "/spec/template/spec/restartPolicy", Expect::Eq(json!("Always")))]
#[case::daemonset_update_strategy(DAEMONSET, "/spec/updateStrategy/type", Expect::Eq(json!("RollingUpdate")))]
#[case::daemonset_max_unavailable(DAEMONSET, "/spec/updateStrategy/rollingUpdate/maxUnavailable", Expect::Eq(json!(1)))]
#[case::daemonset_max_surge(DAEMONSET, "/spec/updateStrategy/rollingUpdate/maxSurge", Expect::Eq(json!(0)))]
#[case::daemonset_revision_history(DAEMONSET, "/spec/revisionHistoryLimit", Expect::Eq(json!(10)))]
#[case::daemonset_template(DAEMONSET, "/spec/template/spec/dnsPolicy", Expect::Eq(json!("ClusterFirst")))]
#[case::cronjob_concurrency(CRONJOB, "/spec/concurrencyPolicy", Expect::Eq(json!("Allow")))]
#[case::cronjob_suspend(CRONJOB, "/spec/suspend", Expect::Eq(json!(false)))]
#[case::cronjob_successful_history(CRONJOB, "/spec/successfulJobsHistoryLimit", Expect::Eq(json!(3)))]
#[case::cronjob_failed_history(CRONJOB, "/spec/failedJobsHistoryLimit", Expect::Eq(json!(1)))]
#[case::cronjob_job_template(CRONJOB, "/spec/jobTemplate/spec/template/spec/dnsPolicy", Expect::Eq(json!("ClusterFirst")))]
#[case::pod_restart_policy(POD, "/spec/restartPolicy", Expect::Eq(json!("Always")))]
#[case::pod_pull_policy(POD, "/spec/containers/0/imagePullPolicy", Expect::Eq(json!("IfNotPresent")))]
#[case::pvc_volume_mode(PVC, "/spec/volumeMode", Expect::Eq(json!("Filesystem")))]
#[case::secret_type(SECRET, "/type", Expect::Eq(json!("Opaque")))]
#[tokio::test]
async fn default_is_applied(#[case] manifest: &str, #[case] pointer: &str, #[case] expect: Expect) {
    init_tracing();
    let cp = ControlPlane::start("defaults").await.unwrap();
    let ns = create_namespace(&cp.client(), "defaults").await.unwrap();
    let objs = apply_yaml(&cp.client(), Some(&ns), manifest).await.unwrap();
    let stored = serde_json::to_value(&objs[0]).unwrap();
    let got = stored.pointer(pointer);
    match expect {
        Expect::Eq(want) => assert_eq!(got, Some(&want), "{pointer} in {stored:#}"),
        Expect::Absent => assert!(
            got.is_none() || got == Some(&json!("")),
            "{pointer} in {stored:#}"
        ),
        Expect::ServiceIp => {
            let ip: std::net::Ipv4Addr = got
                .and_then(Value::as_str)
                .unwrap_or_default()
                .parse()
                .expect("an IPv4 clusterIP");
            assert_eq!(ip.octets()[..2], [10, 96], "{ip} outside the service CIDR");
        }
        Expect::NodePort => {
            let port = got.and_then(Value::as_u64).unwrap_or_default();
            assert!(
                (30000..=32767).contains(&port),
                "{pointer} = {port} in {stored:#}"
            );
        }
    }
}

#[tokio::test]
async fn cluster_ips_are_unique_and_match_cluster_ip() {
    init_tracing();
    let cp = ControlPlane::start("service-ips").await.unwrap();
    let ns = create_namespace(&cp.client(), "ips").await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..5 {
        let obj = &apply_yaml(
            &cp.client(),
            Some(&ns),
            &SERVICE.replace("name: web", &format!("name: web{i}")),
        )
        .await
        .unwrap()[0];
        let ip = obj.data["spec"]["clusterIP"].as_str().unwrap().to_owned();
        assert_eq!(obj.data["spec"]["clusterIPs"], json!([ip.clone()]));
        assert!(seen.insert(ip), "duplicate clusterIP");
    }
}
