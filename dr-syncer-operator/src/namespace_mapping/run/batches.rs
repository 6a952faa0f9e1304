//! Continuous mode while a full sync copies PVC data: source changes keep flowing, in batches of their
//! own, so a copy that takes hours does not hold them back.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use dr_syncer_core::{
    apply::Applier,
    engine::{Change, SkippedObject, SyncReport},
    failure::FailureCategory,
    source::ResourceSource,
};
use tracing::warn;

use super::Runner;
use crate::workers::WatchBuffer;

/// What continuous mode's change batches left for after a full sync's PVC copies. The batches are
/// early delivery, not part of the full sync: their counts and errors go to the metrics as they run;
/// the changes of a batch with failed objects are synced again after the copies by the usual
/// incremental path, which reports what still fails in status (and retries per `retryConfig`).
#[derive(Debug, Default)]
pub(super) struct Batches {
    /// Objects left out (immutable fields …), per namespace pair: reported with the full sync's.
    skipped: Vec<(String, String, Vec<SkippedObject>)>,
    /// Changes of batches with failed objects, per source namespace, oldest first.
    retry: Vec<(String, Vec<Change>)>,
}

impl Batches {
    /// Hand the skipped objects to the full sync's reports and the changes to sync again to `watch`.
    /// Returns whether changes were handed back.
    pub(super) fn finish(self, reports: &mut [SyncReport], watch: &WatchBuffer) -> bool {
        for (src, dst, mut skipped) in self.skipped {
            if let Some(full) = reports
                .iter_mut()
                .find(|r| r.source_namespace == src && r.destination_namespace == dst)
            {
                full.skipped.append(&mut skipped);
            }
        }
        let handed_back = !self.retry.is_empty();
        // Newest first: of two changes of one object, the one kept is the newest (a change seen since
        // is newer still and stays).
        for (src, list) in self.retry.into_iter().rev() {
            watch.restore(false, std::iter::once((src, list)).collect());
        }
        handed_back
    }
}

impl Runner<'_> {
    /// Sync the source changes the watches see, in batches (collected for the debounce window), until
    /// `done` turns true (a batch in progress then finishes first). A batch that cannot run puts its
    /// changes back and is tried again after a backoff (1 s doubling to 1 min). Status is not written
    /// here (see [`Batches`]).
    pub(super) async fn batches_until(
        &self,
        watch: &WatchBuffer,
        mut done: tokio::sync::watch::Receiver<bool>,
        fail_fast: &[FailureCategory],
    ) -> Batches {
        const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));
        let mut out = Batches::default();
        let source: Arc<dyn ResourceSource> = Arc::new(self.run.source_reader());
        let metrics = &self.ctx.metrics;
        let mut backoff = None::<Duration>;
        loop {
            if backoff.is_none() {
                tokio::select! {
                    biased;
                    _ = done.wait_for(|d| *d) => return out,
                    () = watch.changed() => {}
                }
            }
            tokio::select! {
                biased;
                _ = done.wait_for(|d| *d) => return out,
                () = tokio::time::sleep(backoff.unwrap_or(self.ctx.options.debounce)) => {}
            }
            let mut changes = watch.take_changes();
            let mut failed = BTreeMap::new();
            for (src, dst) in self.run.pairs() {
                let Some(list) = changes.remove(src).filter(|l| !l.is_empty()) else {
                    continue;
                };
                let applier: Arc<dyn Applier> = watch.applier(dst, || self.run.new_applier());
                let engine = self.run.engine(source.clone(), applier, fail_fast);
                match engine
                    .sync_changes(&self.run.target(src, dst), list.clone())
                    .await
                {
                    Ok(mut report) => {
                        metrics.record_sync(&report, None);
                        if !report.skipped.is_empty() {
                            out.skipped
                                .push((src.clone(), dst.clone(), std::mem::take(&mut report.skipped)));
                        }
                        if !report.is_success() {
                            out.retry.push((src.clone(), list));
                        }
                    }
                    Err(e) => {
                        warn!(source = %src, destination = %dst, error = %e, "change batch could not run");
                        metrics.record_run_failure(src, e.kind());
                        failed.insert(src.clone(), list);
                    }
                }
            }
            backoff = if failed.is_empty() {
                None
            } else {
                watch.restore(false, failed);
                Some(backoff.map_or(BACKOFF.0, |b| (b * 2).min(BACKOFF.1)))
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use dr_syncer_core::{resource::ResourceType, source::SourceObject};
    use kube::api::DynamicObject;
    use serde_json::json;

    use super::*;

    fn configmap(name: &str, version: &str) -> Change {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "shop"},
            "data": {"version": version},
        }))
        .unwrap();
        Change::Applied(SourceObject {
            resource: ResourceType::namespaced("", "v1", "ConfigMap", "configmaps"),
            object,
        })
    }

    fn version(c: &Change) -> String {
        match c {
            Change::Applied(o) | Change::Deleted(o) => {
                o.object.data["data"]["version"].as_str().unwrap().into()
            }
        }
    }

    #[test]
    fn changes_of_failed_batches_are_handed_back_newest_first_and_skips_join_the_full_sync() {
        let watch = WatchBuffer::default();
        let mut reports = vec![SyncReport {
            source_namespace: "shop".into(),
            destination_namespace: "shop-dr".into(),
            ..Default::default()
        }];
        let skip = SkippedObject {
            object: "Service/shop-dr/web".into(),
            reason: "immutable field spec.clusterIP (NoChange)".into(),
        };
        let batches = Batches {
            skipped: vec![("shop".into(), "shop-dr".into(), vec![skip.clone()])],
            retry: vec![
                ("shop".into(), vec![configmap("a", "1"), configmap("b", "1")]),
                ("shop".into(), vec![configmap("a", "2")]),
            ],
        };
        assert!(batches.finish(&mut reports, &watch));
        assert_eq!(reports[0].skipped, [skip]);
        let (relisted, mut changes) = watch.take();
        assert!(!relisted);
        let mut got: Vec<(String, String)> = changes
            .remove("shop")
            .unwrap()
            .iter()
            .map(|c| match c {
                Change::Applied(o) | Change::Deleted(o) => {
                    (o.object.metadata.name.clone().unwrap(), version(c))
                }
            })
            .collect();
        got.sort();
        assert_eq!(got, [("a".into(), "2".into()), ("b".into(), "1".into())]);

        // Nothing failed: nothing handed back.
        assert!(!Batches::default().finish(&mut reports, &watch));
        assert!(watch.take().1.is_empty());
    }
}
