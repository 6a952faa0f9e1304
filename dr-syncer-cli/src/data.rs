//! `--migrate-pvc-data` / `--reverse-migrate-pvc-data`: temporary agents on the reading cluster, fresh
//! keys for this run, and the drill's data copies through core's `PvcDataSync`; the agents are removed
//! afterwards.

use std::time::Duration;

use dr_syncer_core::kube::Client;
use dr_syncer_core::{
    keys::AuthorizedClientKeys,
    kube::{AgentKeys, Drill, DrillData, PvcDataSync, deploy_agents, remove_agents},
    pvc::{AgentSettings, TransferSettings},
};
use tracing::{info, warn};

use crate::{Args, Exit};

/// Agents deployed for this run, and the drill's data settings.
pub(crate) struct DataRun {
    pub(crate) drill_data: DrillData,
    reading: Client,
    settings: AgentSettings,
    name: String,
}

impl DataRun {
    /// Remove the temporary agents (the key Secrets go with them).
    pub(crate) async fn remove(self) {
        if let Err(e) = remove_agents(&self.reading, &self.settings, &self.name).await {
            warn!("removing the temporary dr-syncer agents: {e}");
        } else {
            info!(namespace = %self.settings.namespace, "temporary agents removed");
        }
    }
}

/// Deploy temporary agents on the cluster the data is read from (the source, or the DR cluster for a
/// reverse copy) and build the drill's data settings.
pub(crate) async fn prepare(
    args: &Args,
    drill: &Drill,
    reverse: bool,
    wait: Duration,
) -> anyhow::Result<DataRun> {
    let transfer = TransferSettings::from_config(crate::mapping_data_config(args)?.as_ref())
        .map_err(|e| Exit { code: 4, message: e })?;
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
    let settings = AgentSettings {
        namespace: args.agent_namespace.clone(),
        image: args.agent_image.clone(),
        ..AgentSettings::default()
    };
    // One identity per run: fresh host and client keys, never shared with anything else.
    let name = format!("cli-{}", drill.target().source_namespace);
    let keys = AgentKeys::generate(&name)?;
    let authorized = AuthorizedClientKeys::new([keys.client.public_key()]);
    if let Err(e) = deploy_agents(&reading, &settings, &name, &keys.host, &authorized).await {
        let _ = remove_agents(&reading, &settings, &name).await;
        return Err(e.into());
    }
    info!(namespace = %settings.namespace, "temporary agents deployed");
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    let sync = PvcDataSync::new(
        reading.clone(),
        writing,
        settings.clone(),
        keys.mover_secret_data(&name)?,
        format!("dr-syncer-cli@{host}/{}", std::process::id()),
    )
    .with_transfer(transfer)
    .with_wait_timeout(wait);
    let drill_data = DrillData {
        forward: (!reverse).then(|| sync.clone()),
        reverse: reverse.then_some(sync),
        concurrency,
        pre_copy: !args.no_pre_copy,
    };
    Ok(DataRun {
        drill_data,
        reading,
        settings,
        name,
    })
}
