//! `--shards`: the keeper of this replica's shard Leases, and the signal that makes every controller look
//! at all its objects again when this replica took a shard.

use std::sync::Arc;

use futures::Stream;
use kube::Client;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::{
    lease::LeaseTiming,
    shards::{ShardKeeper, Shards},
};

/// A running keeper: `took` fires when this replica took a shard; cancelling `release` gives every
/// shard back (after the controllers have finished their reconciles).
#[derive(Debug)]
pub(super) struct Keeper {
    pub(super) took: broadcast::Sender<()>,
    pub(super) release: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Keeper {
    /// Keep `shards`' Leases `<name>-shard-<i>` in `namespace`; a lost shard cancels `lost` and `stop`.
    pub(super) fn start(
        client: Client,
        namespace: &str,
        name: &str,
        shards: Arc<Shards>,
        timing: LeaseTiming,
        lost: CancellationToken,
        stop: CancellationToken,
    ) -> Keeper {
        let (took, _) = broadcast::channel(16);
        let release = CancellationToken::new();
        let keeper = ShardKeeper::new(client, namespace, name, shards, timing);
        let (tx, until) = (took.clone(), release.clone());
        let task = tokio::spawn(async move {
            if !keeper.run(until, move || drop(tx.send(()))).await {
                error!("lost a shard lease: stopping");
                lost.cancel();
                stop.cancel();
            }
        });
        Keeper { took, release, task }
    }

    /// Give every shard back (bounded: the Leases expire anyway).
    pub(super) async fn stop(self) {
        self.release.cancel();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await;
    }
}

/// A stream that yields whenever `took` fires (for `Controller::reconcile_all_on`); without a keeper, it
/// never yields.
pub(super) fn took_shards(keeper: Option<&Keeper>) -> impl Stream<Item = ()> + Send + 'static {
    let rx = keeper.map(|k| k.took.subscribe());
    futures::stream::unfold(rx, |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            // (Missed signals are one signal: everything is looked at again either way.)
            Ok(()) | Err(broadcast::error::RecvError::Lagged(_)) => Some(((), Some(rx))),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    })
}
