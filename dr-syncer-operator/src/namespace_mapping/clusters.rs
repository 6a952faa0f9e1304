//! The two clusters of a mapping: its RemoteClusters, their clients, and the checks that each is the
//! cluster its RemoteCluster is pinned to.

use std::sync::Arc;

use dr_syncer_core::{
    api::{NamespaceMapping, RemoteCluster},
    engine::AcceptIdentity,
};

use crate::{clusters::ClusterHandle, context::Context, error::ClusterError};

/// The two clusters of a mapping.
pub(super) struct Clusters {
    pub(super) source_rc: RemoteCluster,
    pub(super) destination_rc: RemoteCluster,
    pub(super) source: Arc<ClusterHandle>,
    pub(super) destination: Arc<ClusterHandle>,
}

impl Clusters {
    /// Find both RemoteClusters and their clients.
    pub(super) async fn resolve(ctx: &Context, nm: &NamespaceMapping) -> Result<Clusters, ClusterError> {
        let ((sns, sname), (dns, dname)) = ctx.clusters.cluster_names(nm).await?;
        if (&sns, &sname) == (&dns, &dname) {
            return Err(ClusterError::ClustersUnspecified(format!(
                "source and destination are the same RemoteCluster {sns}/{sname}"
            )));
        }
        let source_rc = ctx.clusters.remote_cluster(&sns, &sname).await?;
        let destination_rc = ctx.clusters.remote_cluster(&dns, &dname).await?;
        let source = ctx.clusters.handle_for(&source_rc).await?;
        let destination = ctx.clusters.handle_for(&destination_rc).await?;
        // Before anything is read or written: each cluster is the one its RemoteCluster is pinned to.
        for (handle, rc) in [(&source, &source_rc), (&destination, &destination_rc)] {
            if let Err(e) = handle.verify_pinned(rc).await {
                if matches!(e, ClusterError::IdentityChanged { .. }) {
                    ctx.recheck(rc);
                }
                return Err(e);
            }
        }
        Ok(Clusters {
            source_rc,
            destination_rc,
            source,
            destination,
        })
    }

    /// Which source cluster the engine accepts where a DR namespace records another: the one the source
    /// RemoteCluster is pinned to, in place of those an acceptance moved the pin away from
    /// ([`ClusterHandle::verify_pinned`] has checked that the source is the pinned cluster).
    pub(super) fn accepted_source_identity(&self) -> AcceptIdentity {
        match self
            .source_rc
            .status
            .as_ref()
            .and_then(|s| s.cluster_identity.as_ref())
        {
            Some(pin) if !pin.replaces.is_empty() => AcceptIdentity::Replacing {
                current: pin.uid.clone(),
                replaces: pin.replaces.clone(),
            },
            _ => AcceptIdentity::Recorded,
        }
    }
}
