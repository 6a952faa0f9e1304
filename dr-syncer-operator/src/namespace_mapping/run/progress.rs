//! A full sync's progress in status: the phase and `syncProgress` while objects are applied, then
//! `dataSync` while PVC data is copied. Every write is the same server-side apply as the final status
//! write (so that write removes what these put there), and each writer is stopped and awaited before
//! it, so none can land after it.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use dr_syncer_core::{
    api::{NamespaceMapping, NamespaceMappingStatus, SyncPhase, SyncProgress, VolumeSyncStatus},
    engine::{Progress, ProgressFn},
};
use tokio::task::JoinHandle;
use tracing::warn;

use crate::{
    context::Context,
    error::Result,
    namespace_mapping::{due, write_status, write_status_with},
};

/// Mark a full sync as started (phase `Running`; a `SyncStarted` Event unless it is periodic); returns the
/// status written.
pub(super) async fn started(
    ctx: &Context,
    nm: &NamespaceMapping,
    old: &NamespaceMappingStatus,
    reason: due::Reason,
) -> Result<NamespaceMappingStatus> {
    let mut running = old.clone();
    running.phase = Some(SyncPhase::Running);
    running.sync_progress = Some(SyncProgress {
        percent_complete: 0,
        estimated_time_remaining: None,
        current_operation: Some(format!("sync started: {}", reason.describe())),
        resources_remaining: None,
    });
    write_status(ctx, nm, Some(old), &running).await?;
    // Periodic syncs (the schedule, background resyncs, re-lists) start without an Event: with many
    // mappings they would be most of the Events written, and status says when each ran.
    if !reason.is_periodic() {
        ctx.event(
            nm,
            false,
            "SyncStarted",
            "Sync",
            format!("Sync started ({})", reason.describe()),
        )
        .await;
    }
    Ok(running)
}

fn progress(done: usize, total: usize, operation: String) -> Option<SyncProgress> {
    Some(SyncProgress {
        percent_complete: (done * 100).checked_div(total).unwrap_or(0).min(100) as i32,
        estimated_time_remaining: None,
        current_operation: Some(operation),
        resources_remaining: Some(total.saturating_sub(done) as i32),
    })
}

/// The objects applied so far, counted by the engine and written every `--progress-interval`.
pub(super) struct ObjectProgress {
    done: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ObjectProgress {
    /// Start writing over `running` (the status [`started`] wrote).
    pub(super) fn start(ctx: &Context, nm: &Arc<NamespaceMapping>, running: &NamespaceMappingStatus) -> Self {
        let done = Arc::new(AtomicUsize::new(0));
        let total = Arc::new(AtomicUsize::new(0));
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let (d, t, nm, client) = (done.clone(), total.clone(), nm.clone(), ctx.client.clone());
        let interval = ctx.options.progress_interval;
        let mut status = running.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stopped.changed() => return,
                    () = tokio::time::sleep(interval) => {}
                }
                let p = progress(
                    d.load(Ordering::Relaxed),
                    t.load(Ordering::Relaxed),
                    "applying objects".into(),
                );
                if p == status.sync_progress {
                    continue;
                }
                let previous = status.clone();
                status.sync_progress = p;
                if let Err(e) = write_status_with(&client, &nm, Some(&previous), &status).await {
                    warn!(error = %e, "could not write sync progress");
                }
            }
        });
        ObjectProgress {
            done,
            total,
            stop,
            task,
        }
    }

    /// What the engine reports progress to.
    pub(super) fn callback(&self) -> ProgressFn {
        let (done, total) = (self.done.clone(), self.total.clone());
        Arc::new(move |p: &Progress| match p {
            Progress::Planned { total: n } => {
                total.fetch_add(*n, Ordering::Relaxed);
            }
            Progress::Applied { .. } => {
                done.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        })
    }

    /// Stop writing (a write in progress finishes first).
    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The per-PVC state of the data copies, written whenever it changes (at most every
/// `--progress-interval`).
pub(super) struct DataProgress {
    tx: tokio::sync::watch::Sender<Vec<VolumeSyncStatus>>,
    task: JoinHandle<()>,
}

impl DataProgress {
    /// Start writing over `running`.
    pub(super) fn start(ctx: &Context, nm: &Arc<NamespaceMapping>, running: &NamespaceMappingStatus) -> Self {
        let (tx, mut rx) = tokio::sync::watch::channel(Vec::<VolumeSyncStatus>::new());
        let (nm, client) = (nm.clone(), ctx.client.clone());
        let interval = ctx.options.progress_interval;
        let mut status = running.clone();
        let task = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let volumes = rx.borrow_and_update().clone();
                let done = volumes
                    .iter()
                    .filter(|v| v.phase != "Pending" && v.phase != "Mounting" && v.phase != "Syncing")
                    .count();
                let previous = status.clone();
                status.sync_progress = progress(
                    done,
                    volumes.len(),
                    format!("copying PVC data: {done} of {} volumes done", volumes.len()),
                );
                status.data_sync = Some(volumes);
                if status != previous
                    && let Err(e) = write_status_with(&client, &nm, Some(&previous), &status).await
                {
                    warn!(error = %e, "could not write data sync progress");
                }
                tokio::time::sleep(interval).await;
            }
        });
        DataProgress { tx, task }
    }

    /// Report the per-PVC state.
    pub(super) fn update(&self, volumes: Vec<VolumeSyncStatus>) {
        let _ = self.tx.send(volumes);
    }

    /// Stop writing, after the last state reported was written.
    pub(super) async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}
