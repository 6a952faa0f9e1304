//! The operator process: controller-cluster client, admin endpoints, leader election, the three
//! controllers, the replication-lag gauge, and shutdown.
//!
//! - `/healthz` answers from the start; `/readyz` once this replica's watch caches of the three custom
//!   resources have listed (every replica, leader or standby).
//! - With `--leader-elect`, the controllers run only while this replica holds the Lease. A replica that
//!   loses it stops at once and exits non-zero (its Deployment restarts it as a standby), so two replicas
//!   never write at the same time.
//! - SIGTERM/SIGINT: no new reconciles start; running syncs finish (bounded by `--shutdown-timeout`) and
//!   write their status; the Lease is released so a standby takes over at once.

use std::{process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context as _;
use dr_syncer_core::{
    api::{ClusterMapping, NamespaceMapping, RemoteCluster},
    boundaries::{Boundaries, DEFAULT_OPERATOR_NAMESPACE},
    kube::{ClientOptions, ClusterConfig, KubeconfigSource, connect_bounded},
    ops::Extensions,
};
use futures::{StreamExt, future};
use kube::{
    Api, Client, ResourceExt,
    runtime::{Controller, controller::Config as ControllerConfig, reflector::ObjectRef, watcher},
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

mod endpoints;
mod lag;
mod policy;
mod sharding;

use self::{
    endpoints::{serve_endpoints, start_round},
    policy::error_policy,
};
use crate::{
    Args,
    admin::Readiness,
    cluster_mapping,
    clusters::Clusters,
    context::{Context, Options},
    lease::{LeaderElector, LeaseTiming},
    metrics::Metrics,
    namespace_mapping, remote_cluster,
};

fn init_logging(args: &Args) {
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "{},kube=warn,hyper=warn,tower=warn,rustls=warn",
        args.log_level
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if args.log_json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// Mark `ready` once a watch of each custom resource has listed.
fn readiness(client: Client, namespace: Option<String>, ready: Readiness, cancel: CancellationToken) {
    tokio::spawn(async move {
        let ns = namespace.as_deref();
        let listed = |stream: futures::stream::BoxStream<'static, Result<(), watcher::Error>>| async move {
            let mut stream = stream;
            while let Some(r) = stream.next().await {
                if r.is_ok() {
                    return true;
                }
            }
            false
        };
        fn init_done<K>(api: Api<K>) -> futures::stream::BoxStream<'static, Result<(), watcher::Error>>
        where
            K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
            K::DynamicType: Default,
        {
            watcher::watcher(api, watcher::Config::default())
                .filter_map(|e| {
                    future::ready(match e {
                        Ok(watcher::Event::InitDone) => Some(Ok(())),
                        Ok(_) => None,
                        Err(e) => {
                            warn!(error = %e, "readiness watch");
                            None
                        }
                    })
                })
                .boxed()
        }
        let all = future::join3(
            listed(init_done(api::<RemoteCluster>(&client, ns))),
            listed(init_done(api::<ClusterMapping>(&client, ns))),
            listed(init_done(api::<NamespaceMapping>(&client, ns))),
        );
        tokio::select! {
            () = cancel.cancelled() => {}
            (a, b, c) = all => if a && b && c {
                info!("watch caches synced: ready");
                ready.set_ready();
            },
        }
    });
}

/// The operator's trust boundaries from its flags ([`dr_syncer_core::boundaries`]).
fn boundaries(args: &Args) -> Boundaries {
    let operator_namespace = args
        .operator_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| DEFAULT_OPERATOR_NAMESPACE.to_owned());
    Boundaries::new(&operator_namespace)
        .allowing_references_to(args.allow_reference_namespaces.iter().cloned())
        .protecting(args.protected_namespaces.iter().cloned())
}

/// Run the operator until a signal (exit 0) or lost leadership (exit 1).
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    run_with(args, Extensions::default()).await
}

/// The `User-Agent` of the operator's clients: program, version and replica identity, so that API
/// servers' audit logs tell replicas apart (they share the remote clusters' kubeconfigs).
pub fn user_agent(identity: &str) -> String {
    let clean: String = identity
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    format!("dr-syncer-operator/{} ({clean})", env!("CARGO_PKG_VERSION"))
}

/// [`run`] with `extensions`.
pub async fn run_with(args: Args, extensions: Extensions) -> anyhow::Result<ExitCode> {
    init_logging(&args);
    let identity = args
        .identity
        .clone()
        .filter(|i| !i.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| format!("dr-syncer-operator-{}", std::process::id()));
    let agent = user_agent(&identity);
    // The controller cluster's calls (status, Events, Leases) are bounded by `--request-timeout` too.
    let (client, _) = connect_bounded(
        &ClusterConfig {
            kubeconfig: args
                .kubeconfig
                .clone()
                .filter(|p| !p.as_os_str().is_empty())
                .map(KubeconfigSource::File)
                .unwrap_or(KubeconfigSource::Infer),
            context: args.context.clone(),
            insecure_skip_tls_verify: false,
            user_agent: Some(agent.clone()),
        },
        args.request_timeout,
    )
    .await
    .context("connecting to the controller cluster")?;
    let metrics = Arc::new(Metrics::new());
    let ready = Readiness::default();
    let shutdown = CancellationToken::new();
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            info!("shutdown requested");
            shutdown.cancel();
        });
    }

    serve_endpoints(&args, &client, &metrics, &ready, &shutdown).await?;
    readiness(
        client.clone(),
        args.watch_namespace.clone(),
        ready.clone(),
        shutdown.child_token(),
    );

    let boundaries = boundaries(&args);
    // Leadership.
    let stop = shutdown.child_token();
    let lost = CancellationToken::new();
    let lease_ns = args
        .leader_election_namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| boundaries.operator_namespace().to_owned());
    let timing = LeaseTiming {
        lease_duration: args.lease_duration,
        renew_deadline: args.renew_deadline,
        retry_period: args.retry_period,
    };
    let elector = if args.leader_elect {
        let ns = lease_ns.clone();
        let elector = LeaderElector::new(client.clone(), &ns, &args.leader_election_id, &identity, timing);
        if !elector.acquire(&shutdown).await {
            return Ok(ExitCode::SUCCESS);
        }
        let (elector2, shutdown2, lost2, stop2) =
            (elector.clone(), shutdown.clone(), lost.clone(), stop.clone());
        tokio::spawn(async move {
            if !elector2.hold(&shutdown2).await {
                error!("lost the leader lease: stopping");
                lost2.cancel();
                stop2.cancel();
            }
        });
        Some(elector)
    } else {
        None
    };
    metrics.leader.set(1);
    // --shards: this replica's part of the work, held through Leases.
    let shards = (args.shards > 0).then(|| crate::shards::Shards::new(args.shards, &identity));
    let keeper = shards.as_ref().map(|s| {
        let (lost, stop) = (lost.clone(), stop.clone());
        sharding::Keeper::start(
            client.clone(),
            &lease_ns,
            &args.leader_election_id,
            s.clone(),
            timing,
            lost,
            stop,
        )
    });

    // --once: the mappings present now, each synced once, then a graceful stop.
    let round = if args.once {
        Some(start_round(&client, &args, &shutdown).await?)
    } else {
        None
    };

    // Controllers.
    let options = ClientOptions {
        qps: (args.qps > 0.0).then_some(args.qps),
        burst: args.burst,
        request_timeout: Some(args.request_timeout),
        ..Default::default()
    };
    let (ctx, triggers) = Context::new(
        client.clone(),
        Clusters::new(client.clone(), options)
            .with_user_agent(agent)
            .with_boundaries(boundaries.clone())
            .allowing_kubeconfig_exec(args.allow_kubeconfig_exec)
            .ignoring_certificates(args.ignore_cert),
        metrics.clone(),
        &identity,
        Options {
            recheck_interval: args.recheck_interval,
            unhealthy_recheck_interval: args.unhealthy_recheck_interval,
            default_schedule: args.default_schedule.clone(),
            apply_concurrency: args.apply_concurrency.max(1),
            debounce: args.debounce,
            data_wait_timeout: args.data_wait_timeout,
            sync_timeout: args.sync_timeout,
            stale_periods: args.stale_periods.max(1),
            stale_after: args.stale_after,
            plugins: Arc::new(
                dr_syncer_core::plugin::PluginDir::new(&args.plugin_dir).with_timeout(args.plugin_timeout),
            ),
            round: round.clone(),
            extensions,
            sync_slots: usize::from(args.max_concurrent_syncs.max(1)),
            shards: shards.clone(),
            ..Default::default()
        },
    );
    let ctx = Arc::new(ctx);
    {
        // Stopping (a signal, a lost lease, the end of --once's round): no new sync starts.
        let (ctx, stop) = (ctx.clone(), stop.clone());
        tokio::spawn(async move {
            stop.cancelled().await;
            ctx.slots.close();
        });
    }
    let ns = args.watch_namespace.as_deref();
    let wc = watcher::Config::default().any_semantic();

    let mut rc_triggers = ctx.take_rc_triggers().expect("a fresh context");
    let rc_trigger_stream = futures::stream::poll_fn(move |cx| rc_triggers.poll_recv(cx));
    let rc_controller = Controller::new(api::<RemoteCluster>(&client, ns), wc.clone());
    let rc_store = rc_controller.store();
    let rc_controller = rc_controller
        .reconcile_on(rc_trigger_stream)
        .reconcile_all_on(sharding::took_shards(keeper.as_ref()))
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(
            remote_cluster::reconcile,
            error_policy("remotecluster"),
            ctx.clone(),
        )
        .for_each(|_| future::ready(()));
    let cm_controller = Controller::new(api::<ClusterMapping>(&client, ns), wc.clone());
    let cm_store = cm_controller.store();
    // Syncs read their RemoteClusters and ClusterMappings from these caches.
    ctx.clusters.use_stores(rc_store, cm_store.clone());
    let cm_controller = cm_controller
        .watches(api::<RemoteCluster>(&client, ns), wc.clone(), move |rc| {
            let (rc_ns, rc_name) = (rc.namespace(), rc.name_any());
            cm_store
                .state()
                .into_iter()
                .filter(|cm| {
                    cm.namespace() == rc_ns
                        && (cm.spec.source_cluster == rc_name || cm.spec.target_cluster == rc_name)
                })
                .map(|cm| ObjectRef::from_obj(cm.as_ref()))
                .collect::<Vec<_>>()
        })
        .reconcile_all_on(sharding::took_shards(keeper.as_ref()))
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(
            cluster_mapping::reconcile,
            error_policy("clustermapping"),
            ctx.clone(),
        )
        .for_each(|_| future::ready(()));
    let mut triggers = triggers;
    let trigger_stream = futures::stream::poll_fn(move |cx| triggers.poll_recv(cx));
    let nm_controller = Controller::new(api::<NamespaceMapping>(&client, ns), wc).with_config(
        // No trailing-edge debounce here: continuous mode batches its changes itself (see
        // `Options::debounce`), and a steady stream of changes must not postpone syncs forever. No limit
        // on reconciles either: `--max-concurrent-syncs` bounds the syncs, through the fair sync slots
        // (`crate::slots`), so that a reconcile waiting for one holds up no other.
        ControllerConfig::default().concurrency(0),
    );
    let nm_store = nm_controller.store();
    lag::spawn_gauge(ctx.clone(), nm_store, stop.clone());
    let nm_controller = nm_controller
        .reconcile_on(trigger_stream)
        .reconcile_all_on(sharding::took_shards(keeper.as_ref()))
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(
            namespace_mapping::reconcile,
            namespace_mapping::error_policy,
            ctx.clone(),
        )
        .for_each(|_| future::ready(()));
    info!(
        %identity,
        namespace = ns.unwrap_or("(all)"),
        build = %dr_syncer_core::version::build_info("dr-syncer-operator"),
        "controllers started"
    );
    let controllers = future::join3(rc_controller, cm_controller, nm_controller);
    let timeout = args.shutdown_timeout;
    let shutdown_deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(timeout).await;
    };
    tokio::select! {
        _ = controllers => {}
        () = lost.cancelled() => {
            ctx.workers.stop_all();
            metrics.leader.set(0);
            return Ok(ExitCode::FAILURE);
        }
        () = shutdown_deadline => {
            // Syncs still running are abandoned; their mappings show phase Running and are resumed by
            // the next leader ("resuming an interrupted sync").
            warn!(?timeout, "shutdown timeout: stopping with syncs still running");
        }
    }
    // Graceful shutdown: the controllers have finished their running reconciles (bounded below).
    ctx.workers.stop_all();
    metrics.leader.set(0);
    if let Some(k) = keeper {
        k.stop().await;
    }
    if let Some(e) = elector {
        tokio::time::timeout(Duration::from_secs(5), e.release())
            .await
            .ok();
    }
    info!("stopped");
    let failed = round.as_ref().map(|r| r.failed()).unwrap_or_default();
    if !failed.is_empty() {
        error!(mappings = ?failed, "the round's syncs failed for these mappings (--once)");
    }
    Ok(if lost.is_cancelled() || !failed.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
