//! `--migrate-pvc-data` / `--reverse-migrate-pvc-data`: temporary agents of this run on the reading cluster
//! (named and labelled per run, never the operator's), fresh keys for this run, and the drill's data copies
//! through core's `PvcDataSync`. Everything the run created is removed afterwards, also after an
//! interruption (by the run's label); `dr-syncer-cli cleanup` finds what a killed run left.

use std::time::Duration;

use dr_syncer_core::{
    api::ExposureMode,
    keys::{AuthorizedClientKeys, KeySecrets},
    kube::{Client, ClientOptions, find_leftovers, remove_leftovers},
    ops::{
        AgentKeys, Check, CheckStatus, Drill, DrillData, PvcDataSync, agent_readiness, deploy_agents,
        free_agent_port, probe_agents, remove_agents,
    },
    pvc::{AgentSettings, TransferSettings, exposure::Exposure},
};
use tracing::{info, warn};

use crate::{Args, Exit};

/// Agents deployed for this run, and the drill's data settings.
pub(crate) struct DataRun {
    pub(crate) drill_data: DrillData,
    reading: Client,
    writing: Client,
    settings: AgentSettings,
    run: String,
}

impl DataRun {
    /// Remove the temporary agents (the key Secrets and grants go with them) and anything else labelled
    /// with this run (mover and mount pods, their Secrets, PVC locks: left behind when a copy was cut
    /// short), on both clusters.
    pub(crate) async fn remove(self) {
        match remove_agents(&self.reading, &self.settings, &self.settings.name).await {
            Ok(()) => info!(namespace = %self.settings.namespace, "temporary agents removed"),
            Err(e) => warn!("removing the temporary dr-syncer agents: {e}"),
        }
        remove_run(&[&self.reading, &self.writing], &self.run).await;
    }
}

/// Remove every object labelled with run `run` on `clusters` (best effort, logged).
pub(crate) async fn remove_run(clusters: &[&Client], run: &str) {
    let calls = ClientOptions::default().calls(); // (best-effort cleanup: the default deadline)
    for client in clusters {
        match find_leftovers(client, &calls, Some(run)).await {
            Ok(left) if !left.is_empty() => match remove_leftovers(client, &calls, &left).await {
                Ok(n) => info!(run, removed = n, "removed what this run left"),
                Err(e) => warn!(run, "removing what this run left: {e}"),
            },
            Ok(_) => {}
            Err(e) => warn!(run, "looking for what this run left: {e}"),
        }
    }
}

/// The temporary agents' settings of a run: named for it, on a free port, with the exposure, kubelet root
/// and hostPath prefixes the flags give.
async fn run_settings(args: &Args, reading: &Client, run: &str) -> anyhow::Result<AgentSettings> {
    // On a port no other dr-syncer agent of the cluster serves on.
    let port = free_agent_port(reading).await?;
    let defaults = AgentSettings::for_cli_run(run);
    let settings = AgentSettings {
        namespace: args.agent_namespace.clone(),
        image: args.agent_image.clone(),
        mover_source_addresses: args.mover_source_addresses.clone(),
        port,
        health_port: port + 1,
        exposure: Exposure {
            mode: args
                .agent_exposure
                .or(args.agent_address.as_ref().map(|_| ExposureMode::Address)),
            address: args.agent_address.clone(),
            ..Exposure::default()
        },
        kubelet_root: args.kubelet_root.clone(),
        host_path_prefixes: if args.host_path_prefixes.is_empty() {
            defaults.host_path_prefixes.clone()
        } else {
            args.host_path_prefixes.clone()
        },
        ..defaults
    };
    settings.validate().map_err(|e| Exit {
        code: 4,
        // (The messages name the RemoteCluster fields; here the flags are meant.)
        message: e
            .replace("pvcSync.exposure.address", "--agent-address")
            .replace("pvcSync.exposure", "--agent-exposure")
            .replace("pvcSync.kubeletRoot", "--kubelet-root")
            .replace("pvcSync.hostPathPrefixes", "--host-path-prefix"),
    })?;
    Ok(settings)
}

/// Probe the agents from the DR side as movers would reach them (after waiting, within `wait`, for them
/// to be ready): a preflight check, `Fail` when no agent can be reached (naming the exposure mode that
/// would work), `Warn` when some cannot.
async fn probe(
    reading: &Client,
    writing: &Client,
    settings: &AgentSettings,
    keys: &AgentKeys,
    run: &str,
    wait: Duration,
) -> anyhow::Result<Check> {
    let name = "PVC data path".to_string();
    // Every agent ready, or as many as are within the wait (the others are reported as not ready).
    let deadline = std::time::Instant::now() + wait;
    loop {
        let r = agent_readiness(reading, settings).await?;
        if r.total_nodes > 0 && r.ready_nodes == r.total_nodes {
            break;
        }
        if std::time::Instant::now() >= deadline {
            if r.ready_nodes == 0 {
                return Ok(Check {
                    name,
                    status: CheckStatus::Warn,
                    message: format!(
                        "none of {} temporary agents ready within {wait:?}: the path is checked by the copies \
                         themselves",
                        r.total_nodes
                    ),
                });
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let pins = keys.pins()?;
    let key_data = KeySecrets::for_remote_cluster(&settings.name).client_key_data(&keys.client, &pins);
    let probes = match probe_agents(
        reading,
        writing,
        settings,
        &settings.namespace,
        run,
        &settings.image,
        key_data,
        wait,
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            return Ok(Check {
                name,
                status: CheckStatus::Warn,
                message: format!("the data path could not be checked from the DR side: {e}"),
            });
        }
    };
    let ok: Vec<String> = probes
        .iter()
        .filter(|p| p.connected)
        .map(|p| {
            format!(
                "{} at {} ({})",
                p.node,
                p.ip,
                p.mode.map(|m| m.to_string()).unwrap_or_default()
            )
        })
        .collect();
    let failed: Vec<String> = probes
        .iter()
        .filter(|p| !p.connected)
        .map(|p| {
            p.error
                .clone()
                .unwrap_or_else(|| format!("{}: no answer", p.node))
        })
        .collect();
    let status = if failed.is_empty() {
        CheckStatus::Ok
    } else if ok.is_empty() {
        CheckStatus::Fail
    } else {
        CheckStatus::Warn
    };
    let mut message = String::new();
    if !ok.is_empty() {
        message.push_str(&format!("agents reachable from the DR side: {}", ok.join(", ")));
    }
    if !failed.is_empty() {
        if !message.is_empty() {
            message.push_str("; ");
        }
        message.push_str(&failed.join("; "));
    }
    info!(?status, "{name}: {message}");
    Ok(Check {
        name,
        status,
        message,
    })
}

/// `preflight --migrate-pvc-data`: deploy temporary agents on the source, probe them from the DR side,
/// remove them again.
pub(crate) async fn check_path(
    args: &Args,
    drill: &Drill,
    run: &str,
    wait: Duration,
) -> anyhow::Result<Check> {
    let (reading, writing) = drill.clients();
    let settings = run_settings(args, reading, run).await?;
    let keys = AgentKeys::generate(&settings.name)?;
    let authorized = AuthorizedClientKeys::new([keys.client.public_key()]);
    let result = async {
        deploy_agents(reading, &settings, &settings.name, &keys.host, &authorized).await?;
        probe(reading, writing, &settings, &keys, run, wait).await
    }
    .await;
    if let Err(e) = remove_agents(reading, &settings, &settings.name).await {
        warn!("removing the temporary dr-syncer agents: {e}");
    }
    remove_run(&[reading, writing], run).await;
    result
}

/// Deploy temporary agents on the cluster the data is read from (the source, or the DR cluster for a
/// reverse copy) and build the drill's data settings.
pub(crate) async fn prepare(
    args: &Args,
    drill: &Drill,
    run: &str,
    reverse: bool,
    wait: Duration,
) -> anyhow::Result<DataRun> {
    let mut transfer = TransferSettings::from_config(crate::mapping_data_config(args)?.as_ref())
        .map_err(|e| Exit { code: 4, message: e })?;
    transfer.allow_wiped_source = args.allow_wiped_source;
    let concurrency = args.data_concurrency.unwrap_or_else(|| {
        crate::mapping_data_config(args)
            .ok()
            .flatten()
            .and_then(|c| usize::try_from(c.concurrent_syncs).ok())
            .filter(|c| *c > 0)
            .unwrap_or(2)
    });
    let (source, destination) = drill.clients();
    let (reading, writing) = if reverse {
        (destination.clone(), source.clone())
    } else {
        (source.clone(), destination.clone())
    };
    // Named and labelled for this run; on a port no other dr-syncer agent of the cluster serves on.
    let settings = run_settings(args, &reading, run).await?;
    let port = settings.port;
    // One identity per run: fresh host and client keys, never shared with anything else.
    let keys = AgentKeys::generate(&settings.name)?;
    let authorized = AuthorizedClientKeys::new([keys.client.public_key()]);
    if let Err(e) = deploy_agents(&reading, &settings, &settings.name, &keys.host, &authorized).await {
        let _ = remove_agents(&reading, &settings, &settings.name).await;
        return Err(e.into());
    }
    info!(namespace = %settings.namespace, name = %settings.name, port, "temporary agents deployed");
    // Before any copy: can the DR side reach them (as the exposure mode says)?
    let check = match probe(&reading, &writing, &settings, &keys, run, wait).await {
        Ok(c) => c,
        Err(e) => Check {
            name: "PVC data path".into(),
            status: CheckStatus::Warn,
            message: format!("the data path could not be checked from the DR side: {e}"),
        },
    };
    match check.status {
        CheckStatus::Fail if args.skip_preflight => {
            warn!("PVC data (--skip-preflight: copying anyway): {}", check.message)
        }
        CheckStatus::Fail => {
            let _ = remove_agents(&reading, &settings, &settings.name).await;
            remove_run(&[&reading, &writing], run).await;
            return Err(Exit {
                code: 8,
                message: format!("PVC data (--skip-preflight to try anyway): {}", check.message),
            }
            .into());
        }
        CheckStatus::Warn => warn!("PVC data: {}", check.message),
        CheckStatus::Ok => {}
    }
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    let mut sync = PvcDataSync::new(
        reading.clone(),
        writing.clone(),
        settings.clone(),
        keys.pins()?,
        format!("dr-syncer-cli@{host}/{run}"),
    )
    .with_transfer(transfer)
    .with_wait_timeout(wait);
    if reverse {
        sync = sync.without_copy_stamp();
    }
    let mover = args.extensions.mover(sync);
    let drill_data = DrillData {
        forward: (!reverse).then(|| mover.clone()),
        reverse: reverse.then_some(mover),
        concurrency,
        pre_copy: !args.no_pre_copy,
    };
    Ok(DataRun {
        drill_data,
        reading,
        writing,
        settings,
        run: run.to_owned(),
    })
}
