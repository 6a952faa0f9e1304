//! `--migrate-pvc-data` / `--reverse-migrate-pvc-data`: temporary agents of this run on the reading cluster
//! (named and labelled per run, never the operator's), fresh keys for this run, and the drill's data copies
//! through core's `PvcDataSync`. Everything the run created is removed afterwards, also after an
//! interruption (by the run's label); `dr-syncer-cli cleanup` finds what a killed run left.

use std::time::Duration;

use dr_syncer_core::{
    keys::AuthorizedClientKeys,
    kube::{Client, ClientOptions, find_leftovers, remove_leftovers},
    ops::{AgentKeys, Drill, DrillData, PvcDataSync, deploy_agents, free_agent_port, remove_agents},
    pvc::{AgentSettings, TransferSettings},
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
    let port = free_agent_port(&reading).await?;
    let settings = AgentSettings {
        namespace: args.agent_namespace.clone(),
        image: args.agent_image.clone(),
        mover_source_addresses: args.mover_source_addresses.clone(),
        port,
        health_port: port + 1,
        ..AgentSettings::for_cli_run(run)
    };
    // One identity per run: fresh host and client keys, never shared with anything else.
    let keys = AgentKeys::generate(&settings.name)?;
    let authorized = AuthorizedClientKeys::new([keys.client.public_key()]);
    if let Err(e) = deploy_agents(&reading, &settings, &settings.name, &keys.host, &authorized).await {
        let _ = remove_agents(&reading, &settings, &settings.name).await;
        return Err(e.into());
    }
    info!(namespace = %settings.namespace, name = %settings.name, port, "temporary agents deployed");
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
