//! Operations above the engine (feature `client`): what the bundled operator and CLI do with the
//! engine and the Kubernetes implementations of the traits, as library calls a platform can reuse.
//!
//! - [`mapping`]: one NamespaceMapping's sync (namespace pairs, types, per-pair runs, failure
//!   policy, site checks, deleting what it synced), as the operator runs it.
//! - [`drill`]: the DR drill's steps (stage, cutover, failback, promote, fence, status), as the CLI
//!   runs them.
//! - [`preflight`]: the checks before a drill step.
//! - [`pvc_sync`]: PVC data orchestration (agents, grants, mover pods, locks) behind the
//!   [`VolumeSync`] seam.
//! - [`Extensions`]: what a builder of the bundled binaries adds (transformers, a data seam).

pub mod drill;
mod extensions;
pub mod mapping;
pub mod preflight;
pub mod pvc_sync;

pub use self::{
    drill::{
        DRILL_FIELD_MANAGER, DataCopy, Drill, DrillChange, DrillData, DrillOptions, DrillReport, Freshness,
        NextStep, OneSide, PairStatus, SideStatus, fence, promote, status,
    },
    extensions::Extensions,
    mapping::{ActivePair, Cleanup, Cluster, Host, MappingInput, MappingRun, PairsOutcome, RunError},
    preflight::{Check, CheckStatus, DrillStep, PreflightReport, preflight},
    pvc_sync::{
        AgentKeys, AgentProbe, AgentReadiness, GRANT_WINDOW, ManagedBy, NodeLimits, PvcDataSync, PvcPair,
        PvcProgressFn, PvcSyncOutcome, PvcSyncResult, PvcSyncStage, SyncedSide, VolumeSync, VolumeSyncHook,
        agent_readiness, deploy_agents, free_agent_port, lock_name, probe_agents, remove_agents,
        synced_pvc_pairs,
    },
};
