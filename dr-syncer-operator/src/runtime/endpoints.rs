//! What the process sets up beside the controllers: the admin endpoints and `--once`'s round.

use std::sync::Arc;

use anyhow::Context as _;
use dr_syncer_core::api::NamespaceMapping;
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::api;
use crate::{
    Args,
    admin::{self, Readiness},
    context::Round,
    metrics::Metrics,
};

/// The admin endpoints: metrics and probes (one listener when both use the same address).
pub(super) async fn serve_endpoints(
    args: &Args,
    client: &Client,
    metrics: &Arc<Metrics>,
    ready: &Readiness,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let metrics_addr = (args.metrics_bind_address != "0")
        .then(|| admin::parse_addr(&args.metrics_bind_address))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let probe_addr = (args.health_probe_bind_address != "0")
        .then(|| admin::parse_addr(&args.health_probe_bind_address))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let secure = if args.metrics_secure {
        let tls = crate::secure_metrics::tls_config(
            args.metrics_cert_file.as_deref(),
            args.metrics_key_file.as_deref(),
        )
        .map_err(anyhow::Error::msg)?;
        Some(admin::Secure {
            tls,
            auth: Arc::new(crate::secure_metrics::MetricsAuth::new(client.clone())),
        })
    } else {
        None
    };
    if args.metrics_secure && probe_addr.is_some() && probe_addr == metrics_addr {
        anyhow::bail!("--metrics-secure needs the probes on another address than the metrics");
    }
    if let Some(addr) = metrics_addr {
        admin::serve(
            addr,
            Some(metrics.clone()),
            ready.clone(),
            secure,
            shutdown.child_token(),
        )
        .await
        .with_context(|| format!("serving metrics on {addr}"))?;
    }
    if let Some(addr) = probe_addr.filter(|a| Some(*a) != metrics_addr) {
        admin::serve(addr, None, ready.clone(), None, shutdown.child_token())
            .await
            .with_context(|| format!("serving probes on {addr}"))?;
    }
    Ok(())
}

/// `--once`: the round of the mappings present now, each synced once; the process stops when it is
/// over (or after `--sync-timeout`).
pub(super) async fn start_round(
    client: &Client,
    args: &Args,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<Round>> {
    let list = api::<NamespaceMapping>(client, args.watch_namespace.as_deref())
        .list(&Default::default())
        .await
        .context("listing the NamespaceMappings of the round (--once)")?;
    let round =
        Arc::new(Round::new(list.items.iter().map(|nm| {
            format!("{}/{}", nm.namespace().unwrap_or_default(), nm.name_any())
        })));
    info!(mappings = list.items.len(), "one reconcile round (--once)");
    let (done, shutdown) = (round.done.clone(), shutdown.clone());
    tokio::spawn(async move {
        done.cancelled().await;
        info!("the round is over: stopping (--once)");
        shutdown.cancel();
    });
    // Bounded: a mapping that never gets to its sync (deleted meanwhile, stuck) fails the round
    // after --sync-timeout instead of keeping the process alive.
    let (expiring, deadline) = (round.clone(), args.sync_timeout);
    tokio::spawn(async move {
        tokio::time::sleep(deadline).await;
        if !expiring.done.is_cancelled() {
            warn!(?deadline, "the round did not end within --sync-timeout (--once)");
            expiring.expire();
        }
    });
    Ok(round)
}
