//! Two test control planes (source "prod" and destination "dr") with the engine wired to them through
//! their own client identities, so the servers' request accounting counts exactly dr-syncer's requests.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different part; `pub` is for the test binaries

use std::{sync::Arc, time::Duration};

use dr_syncer_core::{
    api::NamespaceMappingSpec,
    config::SyncConfig,
    engine::{SyncEngine, SyncReport, SyncTarget},
    kube::{ClientOptions, ClusterConfig, KubeApplier, KubeSource, KubeconfigSource, connect, discover},
    resource::ResourceType,
    selection::{OPERATOR_DEFAULT_TYPES, resolve_resource_types},
};
use dr_syncer_testenv::{ControlPlane, apply_yaml, create_namespace, init_tracing, wait_for_condition};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client, runtime::conditions};

pub const T: Duration = Duration::from_secs(30);
/// The identity dr-syncer uses on the destination (its writes are counted under this name).
pub const WRITER: &str = "dr-syncer";
/// The identity dr-syncer uses on the source.
pub const READER: &str = "dr-syncer-reader";

pub struct Pair {
    pub src: ControlPlane,
    pub dst: ControlPlane,
    pub engine: SyncEngine,
    pub source: Arc<KubeSource>,
    pub applier: Arc<KubeApplier>,
    pub src_client: Client,
    pub dst_client: Client,
}

pub async fn pair(name: &str) -> Pair {
    init_tracing();
    let [src, dst] = ControlPlane::start_many([&format!("{name}-prod"), &format!("{name}-dr")])
        .await
        .expect("control planes start");
    let options = ClientOptions::default();
    let reader = src.identity(READER).await.unwrap();
    let writer = dst.identity(WRITER).await.unwrap();
    let source_client = connect(&ClusterConfig {
        kubeconfig: KubeconfigSource::File(reader.kubeconfig.clone()),
        context: None,
        insecure_skip_tls_verify: false,
        user_agent: None,
    })
    .await
    .unwrap();
    let dest_client = connect(&ClusterConfig {
        kubeconfig: KubeconfigSource::File(writer.kubeconfig.clone()),
        context: None,
        insecure_skip_tls_verify: false,
        user_agent: None,
    })
    .await
    .unwrap();
    let source = Arc::new(KubeSource::new(source_client, options.calls()));
    let applier = Arc::new(KubeApplier::new(dest_client, options.calls()));
    let engine = SyncEngine::new(source.clone(), applier.clone());
    let src_client = src.client_without_retries().await.unwrap();
    let dst_client = dst.client_without_retries().await.unwrap();
    Pair {
        src,
        dst,
        engine,
        source,
        applier,
        src_client,
        dst_client,
    }
}

impl Pair {
    /// A target for `src_ns` → `dst_ns` with the mapping spec `spec` (JSON, `sourceNamespace` filled in).
    pub async fn target(&self, src_ns: &str, dst_ns: &str, mut spec: serde_json::Value) -> SyncTarget {
        spec["sourceNamespace"] = src_ns.into();
        spec["destinationNamespace"] = dst_ns.into();
        let spec: NamespaceMappingSpec = serde_json::from_value(spec).expect("spec");
        let config = SyncConfig::from_spec(&spec).expect("valid spec");
        let discovered = discover(self.source.client(), &ClientOptions::default().calls())
            .await
            .unwrap();
        let types: Vec<ResourceType> = resolve_resource_types(
            &config.resource_types,
            &config.namespace_scoped_resources,
            &OPERATOR_DEFAULT_TYPES,
            &discovered,
        )
        .expect("types resolve");
        SyncTarget {
            source_cluster: "prod".into(),
            destination_cluster: "dr".into(),
            source_namespace: src_ns.into(),
            destination_namespace: dst_ns.into(),
            synced_by: format!("dr-syncer/{src_ns}"),
            types,
            config: Arc::new(config),
        }
    }

    /// Write requests dr-syncer has made to the destination so far.
    pub async fn dst_writes(&self) -> u64 {
        self.dst.requests(WRITER).await.unwrap().writes
    }

    /// Sync `target` once: its report and the write requests it made to the destination.
    pub async fn sync_counting_writes(&self, target: &SyncTarget) -> (SyncReport, u64) {
        let before = self.dst_writes().await;
        let report = self.engine.sync(target).await.unwrap();
        (report, self.dst_writes().await - before)
    }

    /// Write requests dr-syncer has made to the source so far (must stay 0 for a sync).
    pub async fn src_writes(&self) -> u64 {
        self.src.requests(READER).await.unwrap().writes
    }

    /// A new source namespace holding `yaml` (`NAMESPACE` replaced by its name).
    pub async fn source_namespace(&self, prefix: &str, yaml: &str) -> String {
        let ns = create_namespace(&self.src_client, prefix).await.unwrap();
        if !yaml.trim().is_empty() {
            apply_yaml(&self.src_client, Some(&ns), &yaml.replace("NAMESPACE", &ns))
                .await
                .unwrap();
        }
        ns
    }

    /// Install the Widget CRD on the source and wait until it is served.
    pub async fn widget_crd(&self) {
        apply_yaml(
            &self.src_client,
            None,
            include_str!("../fixtures/widget-crd.yaml"),
        )
        .await
        .unwrap();
        let api: Api<CustomResourceDefinition> = Api::all(self.src_client.clone());
        wait_for_condition(&api, "widgets.example.com", T, conditions::is_crd_established())
            .await
            .unwrap();
    }
}
