//! Operations above the engine (feature `client`): what the bundled operator and CLI do with the
//! engine and the Kubernetes implementations of the traits, as library calls a platform can reuse.
//!
//! - [`mapping`]: one NamespaceMapping's sync (namespace pairs, types, per-pair runs, failure
//!   policy, site checks, deleting what it synced), as the operator runs it.
//! - [`drill`]: the DR drill's steps (stage, cutover, failback, promote, fence, status), as the CLI
//!   runs them.
//! - [`mod@preflight`]: the checks before a drill step.
//! - [`volume`]: the PVC data seam [`VolumeSync`]; [`pvc_sync`] (feature `data`): the built-in data
//!   mover behind it (agents, grants, mover pods, locks).
//! - [`Extensions`]: what a builder of the bundled binaries adds (transformers, a data seam).

pub mod drill;
mod extensions;
pub mod mapping;
pub mod preflight;
#[cfg(feature = "data")]
pub mod pvc_sync;
pub mod volume;

pub use self::{
    drill::{
        DRILL_FIELD_MANAGER, DataCopy, Drill, DrillChange, DrillData, DrillOptions, DrillReport, Freshness,
        NextStep, OneSide, PairStatus, SideStatus, fence, promote, status,
    },
    extensions::Extensions,
    mapping::{ActivePair, Cleanup, Cluster, Host, MappingInput, MappingRun, PairsOutcome, RunError},
    preflight::{Check, CheckStatus, DrillStep, PreflightReport, preflight},
    volume::{
        ManagedBy, PvcPair, PvcProgressFn, PvcSyncOutcome, PvcSyncResult, PvcSyncStage, QuietDestinationOnly,
        SyncedSide, VolumeStates, VolumeSync, synced_pvc_pairs, volume_key,
    },
};

#[cfg(feature = "data")]
pub use self::pvc_sync::{
    AgentKeys, AgentProbe, AgentReadiness, GRANT_WINDOW, NodeLimits, PvcDataSync, VolumeSyncHook,
    agent_readiness, deploy_agents, free_agent_port, lock_name, probe_agents, remove_agents,
};
