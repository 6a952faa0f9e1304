//! Prometheus metrics (`/metrics`), named as the seeds and the Go project name them so dashboards carry
//! over: `dr_syncer_sync_operations_total{namespace,status}` and
//! `dr_syncer_resources_synced_total{namespace,resource_type,status}`; plus ours: the sync-duration
//! histogram, the replication lag (RPO) per mapping, errors by kind, API retries and throttling, reconcile
//! errors and leadership.

use std::sync::atomic::AtomicU64;

use dr_syncer_core::engine::SyncReport;
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

mod labels;

pub use self::labels::*;

type FloatGauge = Gauge<f64, AtomicU64>;

/// The `dr_syncer_pvc_sync_*` family (names and labels as in the Go project).
#[derive(Debug, Clone)]
pub struct PvcMetrics {
    /// Bytes sent by PVC data copies.
    pub bytes_transferred: Family<PvcLabels, Counter>,
    /// Files transferred by PVC data copies.
    pub files_transferred: Family<PvcLabels, Counter>,
    /// Progress of the running copy.
    pub progress_percent: Family<PvcLabels, FloatGauge>,
    /// Duration of copies.
    pub duration: Family<PvcStatusLabels, Histogram>,
    /// Copies by outcome.
    pub operations: Family<PvcStatusLabels, Counter>,
    /// Speed of the running or last copy.
    pub speed: Family<PvcLabels, FloatGauge>,
    /// Copies waiting for a slot of the global limit.
    pub queue_depth: Gauge,
    /// Copies running.
    pub concurrent: Gauge,
    /// Time copies waited for a slot.
    pub queue_wait: Histogram,
}

/// The operator's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Syncs per namespace and outcome.
    pub sync_operations: Family<SyncOpLabels, Counter>,
    /// Objects handled per namespace, type and outcome.
    pub resources_synced: Family<ResourceLabels, Counter>,
    /// Duration of syncs.
    pub sync_duration: Family<DurationLabels, Histogram>,
    /// Replication lag (RPO) in seconds.
    pub replication_lag: Family<MappingLabels, FloatGauge>,
    /// Unix time of the last successful sync.
    pub last_success: Family<MappingLabels, FloatGauge>,
    /// Objects that failed, by error kind.
    pub sync_errors: Family<ErrorLabels, Counter>,
    /// API requests retried after a transient failure.
    pub api_retries: Family<ClusterLabels, Counter>,
    /// API requests answered 429 (server-side throttling).
    pub api_throttled: Family<ClusterLabels, Counter>,
    /// Reconciles that ended in an error.
    pub reconcile_errors: Family<ReconcileErrorLabels, Counter>,
    /// 1 while this process holds the leader lease (or runs without election).
    pub leader: Gauge,
    /// 1 while production runs unfenced next to an active DR namespace (both sites active).
    pub both_sites_active: Family<SiteLabels, Gauge>,
    /// 1 while a mapping's `Stale` condition is True.
    pub mapping_stale: Family<MappingLabels, Gauge>,
    /// Deletions the deletion brake holds for a go-ahead, per DR namespace.
    pub deletions_held: Family<SiteLabels, Gauge>,
    /// Syncs waiting for a sync slot, per class ([`crate::slots`]).
    pub sync_queue: Family<ClassLabels, Gauge>,
    /// How long syncs waited for a slot, per class.
    pub sync_wait: Family<ClassLabels, Histogram>,
    /// PVC data copies.
    pub pvc: PvcMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn duration_histogram() -> Histogram {
    // 10 ms … ~5.5 min.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.01, 2.0, 16,
    ))
}

fn pvc_duration_histogram() -> Histogram {
    // 1 s … 2^14 s, as the Go project's.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1.0, 2.0, 15,
    ))
}

impl Metrics {
    /// Register every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let sync_operations = Family::<SyncOpLabels, Counter>::default();
        registry.register(
            "dr_syncer_sync_operations",
            "Synchronization operations by source namespace and outcome",
            sync_operations.clone(),
        );
        let resources_synced = Family::<ResourceLabels, Counter>::default();
        registry.register(
            "dr_syncer_resources_synced",
            "Objects handled by synchronizations, by source namespace, type and outcome",
            resources_synced.clone(),
        );
        let sync_duration = Family::<DurationLabels, Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        registry.register(
            "dr_syncer_sync_duration_seconds",
            "Duration of synchronizations",
            sync_duration.clone(),
        );
        let replication_lag = Family::<MappingLabels, FloatGauge>::default();
        registry.register(
            "dr_syncer_replication_lag_seconds",
            "Replication lag (RPO): in continuous mode the age of the oldest source change not yet applied, \
             otherwise the time since the last successful sync",
            replication_lag.clone(),
        );
        let last_success = Family::<MappingLabels, FloatGauge>::default();
        registry.register(
            "dr_syncer_last_successful_sync_timestamp_seconds",
            "Unix time of the last successful synchronization",
            last_success.clone(),
        );
        let sync_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "dr_syncer_sync_errors",
            "Objects or syncs that failed, by error kind",
            sync_errors.clone(),
        );
        let api_retries = Family::<ClusterLabels, Counter>::default();
        registry.register(
            "dr_syncer_api_retries",
            "Kubernetes API requests retried after a transient failure",
            api_retries.clone(),
        );
        let api_throttled = Family::<ClusterLabels, Counter>::default();
        registry.register(
            "dr_syncer_api_throttled",
            "Kubernetes API requests answered 429 Too Many Requests",
            api_throttled.clone(),
        );
        let reconcile_errors = Family::<ReconcileErrorLabels, Counter>::default();
        registry.register(
            "dr_syncer_reconcile_errors",
            "Reconciles that ended in an error",
            reconcile_errors.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "dr_syncer_leader",
            "1 while this process is the leader",
            leader.clone(),
        );
        let both_sites_active = Family::<SiteLabels, Gauge>::default();
        registry.register(
            "dr_syncer_both_sites_active",
            "1 while production runs unfenced next to an active DR namespace: both sites are active",
            both_sites_active.clone(),
        );
        let mapping_stale = Family::<MappingLabels, Gauge>::default();
        registry.register(
            "dr_syncer_mapping_stale",
            "1 while a mapping's DR copy is stale (condition Stale: no successful sync or data copy for longer than its threshold)",
            mapping_stale.clone(),
        );
        let deletions_held = Family::<SiteLabels, Gauge>::default();
        registry.register(
            "dr_syncer_deletions_held",
            "Deletions held by the deletion brake until a go-ahead (dr-syncer.io/allow-deletions)",
            deletions_held.clone(),
        );
        let sync_queue = Family::<ClassLabels, Gauge>::default();
        registry.register(
            "dr_syncer_sync_queue_depth",
            "Syncs waiting for a slot (--max-concurrent-syncs), by class: changes, requested, periodic",
            sync_queue.clone(),
        );
        let sync_wait =
            Family::<ClassLabels, Histogram>::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register(
            "dr_syncer_sync_wait_seconds",
            "How long syncs waited for a slot, by class",
            sync_wait.clone(),
        );
        let pvc = PvcMetrics {
            bytes_transferred: Family::default(),
            files_transferred: Family::default(),
            progress_percent: Family::default(),
            duration: Family::<PvcStatusLabels, Histogram>::new_with_constructor(
                pvc_duration_histogram as fn() -> Histogram,
            ),
            operations: Family::default(),
            speed: Family::default(),
            queue_depth: Gauge::default(),
            concurrent: Gauge::default(),
            queue_wait: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.1, 2.0, 12,
            )),
        };
        registry.register(
            "dr_syncer_pvc_sync_bytes_transferred",
            "Bytes sent by PVC data copies",
            pvc.bytes_transferred.clone(),
        );
        registry.register(
            "dr_syncer_pvc_sync_files_transferred",
            "Files transferred by PVC data copies",
            pvc.files_transferred.clone(),
        );
        registry.register(
            "dr_syncer_pvc_sync_progress_percent",
            "Progress of the running PVC data copy",
            pvc.progress_percent.clone(),
        );
        registry.register(
            "dr_syncer_pvc_sync_duration_seconds",
            "Duration of PVC data copies",
            pvc.duration.clone(),
        );
        registry.register(
            "dr_syncer_pvc_sync_operations",
            "PVC data copies by outcome",
            pvc.operations.clone(),
        );
        registry.register(
            "dr_syncer_pvc_sync_speed_bytes_per_second",
            "Speed of the running or last PVC data copy",
            pvc.speed.clone(),
        );
        registry.register(
            "dr_syncer_pvc_sync_queue_depth",
            "PVC data copies waiting for a slot",
            pvc.queue_depth.clone(),
        );
        registry.register(
            "dr_syncer_pvc_sync_concurrent_count",
            "PVC data copies running",
            pvc.concurrent.clone(),
        );
        registry.register(
            "dr_syncer_pvc_sync_queue_wait_seconds",
            "Time PVC data copies waited for a slot",
            pvc.queue_wait.clone(),
        );
        Metrics {
            registry,
            pvc,
            sync_operations,
            resources_synced,
            sync_duration,
            replication_lag,
            last_success,
            sync_errors,
            api_retries,
            api_throttled,
            reconcile_errors,
            leader,
            both_sites_active,
            mapping_stale,
            deletions_held,
            sync_queue,
            sync_wait,
        }
    }

    /// Drop the per-mapping gauges of a deleted mapping (a stale value would keep alerting).
    pub fn forget_mapping(&self, mapping: &str, namespaces: &[String]) {
        let labels = MappingLabels {
            mapping: mapping.to_owned(),
        };
        self.replication_lag.remove(&labels);
        self.mapping_stale.remove(&labels);
        self.last_success.remove(&labels);
        for ns in namespaces {
            let labels = SiteLabels {
                mapping: mapping.to_owned(),
                namespace: ns.clone(),
            };
            self.both_sites_active.remove(&labels);
            self.deletions_held.remove(&labels);
        }
    }

    /// A sync of `namespace` that could not run at all, with its error kind.
    pub fn record_run_failure(&self, namespace: &str, kind: &str) {
        let empty = SyncReport {
            source_namespace: namespace.to_owned(),
            ..Default::default()
        };
        self.record_sync(&empty, Some(kind));
    }

    /// Record one sync of a namespace.
    pub fn record_sync(&self, report: &SyncReport, failed_to_run: Option<&str>) {
        let namespace = report.source_namespace.clone();
        let ok = failed_to_run.is_none() && report.is_success();
        self.sync_operations
            .get_or_create(&SyncOpLabels {
                namespace: namespace.clone(),
                status: if ok { "success" } else { "failure" }.into(),
            })
            .inc();
        for (kind, stats) in &report.kinds {
            for (status, n) in [
                ("created", stats.created),
                ("updated", stats.updated),
                ("unchanged", stats.unchanged),
                ("recreated", stats.recreated),
                ("deleted", stats.deleted),
                ("skipped", stats.skipped),
                ("failed", stats.failed),
            ] {
                if n > 0 {
                    self.resources_synced
                        .get_or_create(&ResourceLabels {
                            namespace: namespace.clone(),
                            resource_type: kind.clone(),
                            status: status.into(),
                        })
                        .inc_by(u64::from(n));
                }
            }
        }
        for failure in &report.failures {
            self.sync_errors
                .get_or_create(&ErrorLabels {
                    namespace: namespace.clone(),
                    kind: failure.kind.clone(),
                })
                .inc();
        }
        if let Some(kind) = failed_to_run {
            self.sync_errors
                .get_or_create(&ErrorLabels {
                    namespace,
                    kind: kind.to_owned(),
                })
                .inc();
        }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests;
