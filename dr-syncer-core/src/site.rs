//! Which site is live, and what each actor may write where: the one place these rules live.
//!
//! A namespace pair (a production namespace and its DR copy) is in one recorded **site state**, kept on the
//! clusters themselves so that every actor — the operator, an on-call engineer's CLI, a platform tool that
//! embeds this crate — reads the same thing:
//!
//! - the DR namespace carries `dr-syncer.io/active: "true"` while the DR side is the live site (set by a
//!   cutover, a `promote`, or a person by hand), with `dr-syncer.io/active-since` and
//!   `dr-syncer.io/activated-by` (`cutover`, `promote`; a mark set by hand has neither and reads as
//!   `manual`);
//! - the production namespace carries `dr-syncer.io/standby: "true"` (and `dr-syncer.io/standby-since`)
//!   once a cutover or a `fence` has quieted it.
//!
//! [`SiteState`] is what was read; [`decide`] answers, for an [`Actor`] and a [`Step`], whether to go
//! ahead ([`Decision::Proceed`]), leave it alone (a healthy [`Decision::Skip`], e.g. the operator holding off
//! an active DR site), or refuse ([`Decision::Refuse`], e.g. a `stage` onto the live DR site). The rules,
//! in short:
//!
//! 1. Nothing writes into an active DR namespace from the stale side: no object sync, prune, data copy,
//!    deletion or clean-up. A re-run of a cutover only finishes its own switch-over there.
//! 2. Deletions happen on request only, and a production namespace that is terminating or gone is a
//!    disaster signal, not a request: no prune, no data copy (`rsync --delete` would mirror a wiped
//!    volume), no `cleanupOnUnlabel`.
//! 3. Never both sites active: data flows back (failback) only from an active DR site into a quiet
//!    production; a failback while production runs unfenced next to an active DR site is refused.
//!
//! `docs/drills.md` shows the whole table; it is generated from [`decide`] by [`matrix_markdown`], and a
//! test keeps the two equal. The reading of the state from a cluster lives in `crate::kube` (the
//! `SiteReader` there); this module is pure.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::annotations;

/// Who wants to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Actor {
    /// The operator's syncs of a NamespaceMapping (and any embedding tool's scheduled syncs).
    Operator,
    /// `dr-syncer-cli stage` (also `plan`'s and `diff`'s view of what a stage would do).
    Stage,
    /// `dr-syncer-cli cutover`, including a re-run that finishes an interrupted one.
    Cutover,
    /// `dr-syncer-cli promote`: the DR side goes live without contacting production.
    Promote,
    /// `dr-syncer-cli fence`: production is quieted without contacting the DR side.
    Fence,
    /// `dr-syncer-cli failback`.
    Failback,
}

impl Actor {
    /// Every actor, in the order of the documented table.
    pub const ALL: [Actor; 6] = [
        Actor::Operator,
        Actor::Stage,
        Actor::Cutover,
        Actor::Promote,
        Actor::Fence,
        Actor::Failback,
    ];

    /// The actor's name as users see it.
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Operator => "operator",
            Actor::Stage => "stage",
            Actor::Cutover => "cutover",
            Actor::Promote => "promote",
            Actor::Fence => "fence",
            Actor::Failback => "failback",
        }
    }
}

/// What is about to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Create or update objects in the DR namespace (and the namespace itself).
    SyncObjects,
    /// Delete DR objects whose source object is gone (`prune`).
    Prune,
    /// Copy PVC data from production into the DR volumes (`rsync --delete`: the DR side becomes a mirror).
    CopyData,
    /// Delete what a mapping synced (`deletionPolicy: DeleteSynced`).
    DeleteSynced,
    /// Delete what a mapping synced for a namespace that left its selector (`cleanupOnUnlabel`).
    CleanupOnUnlabel,
    /// Quiet production's workloads (record their originals, scale to 0 …) and mark it standby.
    QuietSource,
    /// Mark the DR namespace active and activate its workloads from their recorded originals.
    ActivateDestination,
    /// Quiet the DR side's workloads again.
    QuietDestination,
    /// Copy PVC data from the DR volumes back into production's.
    ReverseCopy,
    /// Reactivate production from its recorded originals and clear both marks.
    ReactivateSource,
}

impl Step {
    /// Every step, in the order of the documented table.
    pub const ALL: [Step; 10] = [
        Step::SyncObjects,
        Step::Prune,
        Step::CopyData,
        Step::DeleteSynced,
        Step::CleanupOnUnlabel,
        Step::QuietSource,
        Step::ActivateDestination,
        Step::QuietDestination,
        Step::ReverseCopy,
        Step::ReactivateSource,
    ];

    /// A short description.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::SyncObjects => "sync objects into DR",
            Step::Prune => "prune DR objects",
            Step::CopyData => "copy PVC data into DR",
            Step::DeleteSynced => "delete synced objects (DeleteSynced)",
            Step::CleanupOnUnlabel => "clean up an unlabelled namespace",
            Step::QuietSource => "quiet production, mark it standby",
            Step::ActivateDestination => "mark DR active, activate its workloads",
            Step::QuietDestination => "quiet DR workloads",
            Step::ReverseCopy => "copy PVC data back to production",
            Step::ReactivateSource => "reactivate production, clear the marks",
        }
    }

    /// Whether the step writes into the DR namespace on behalf of the (possibly stale) production side.
    fn feeds_destination(self) -> bool {
        matches!(
            self,
            Step::SyncObjects | Step::Prune | Step::CopyData | Step::DeleteSynced | Step::CleanupOnUnlabel
        )
    }
}

/// Whether a namespace is being deleted (a deletion timestamp, or phase `Terminating`).
pub fn is_terminating(ns: &kube::core::DynamicObject) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        || ns.data.pointer("/status/phase").and_then(|p| p.as_str()) == Some("Terminating")
}

/// Whether an object on the DR side is one dr-syncer put there for the pair whose production namespace is
/// `source_namespace`, whoever synced it (the CLI or any mapping): it carries `dr-syncer.io/synced-by` and
/// `dr-syncer.io/source-namespace: <source_namespace>`. Drills act on exactly these.
pub fn put_there_for(meta: &ObjectMeta, source_namespace: &str) -> bool {
    let get = |k: &str| {
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(k))
            .map(String::as_str)
    };
    get(annotations::SYNCED_BY).is_some_and(|v| !v.is_empty())
        && get(annotations::SOURCE_NAMESPACE) == Some(source_namespace)
}

/// Who marked a DR namespace active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActivatedBy {
    /// A cutover.
    Cutover,
    /// `dr-syncer-cli promote`.
    Promote,
    /// A person, by hand (`kubectl annotate ns X dr-syncer.io/active=true`), or a value dr-syncer does not
    /// know.
    Manual,
}

impl ActivatedBy {
    /// The value of `dr-syncer.io/activated-by`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivatedBy::Cutover => "cutover",
            ActivatedBy::Promote => "promote",
            ActivatedBy::Manual => "manual",
        }
    }

    /// Read `dr-syncer.io/activated-by` (absent or unknown: [`ActivatedBy::Manual`]).
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("cutover") => ActivatedBy::Cutover,
            Some("promote") => ActivatedBy::Promote,
            _ => ActivatedBy::Manual,
        }
    }
}

/// The recorded state of a pair's DR namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DestinationState {
    /// Not read: the DR cluster was not asked or could not be reached.
    #[default]
    Unknown,
    /// The DR namespace does not exist.
    Missing,
    /// The DR namespace exists and is not marked active: a warm standby.
    Standby,
    /// The DR namespace is marked `dr-syncer.io/active: "true"`: the DR side is the live site.
    Active {
        /// `dr-syncer.io/active-since`, as recorded.
        since: Option<String>,
        /// `dr-syncer.io/activated-by`.
        by: ActivatedBy,
    },
}

impl DestinationState {
    /// Whether the DR side is marked active.
    pub fn is_active(&self) -> bool {
        matches!(self, DestinationState::Active { .. })
    }

    /// The state of a DR namespace from its metadata (`None`: it does not exist).
    pub fn of_namespace(meta: Option<&ObjectMeta>) -> DestinationState {
        let Some(meta) = meta else {
            return DestinationState::Missing;
        };
        let get = |k: &str| {
            meta.annotations
                .as_ref()
                .and_then(|a| a.get(k))
                .map(String::as_str)
        };
        if get(annotations::ACTIVE) == Some("true") {
            DestinationState::Active {
                since: get(annotations::ACTIVE_SINCE).map(str::to_owned),
                by: ActivatedBy::parse(get(annotations::ACTIVATED_BY)),
            }
        } else {
            DestinationState::Standby
        }
    }
}

/// The recorded state of a pair's production namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SourceState {
    /// Not read: production was not asked or could not be reached.
    #[default]
    Unknown,
    /// The production namespace does not exist.
    Missing,
    /// The production namespace is being deleted.
    Terminating,
    /// The production namespace exists.
    Live {
        /// It is marked `dr-syncer.io/standby: "true"` (a cutover or a fence quieted it).
        standby: bool,
        /// Its workloads that run (replicas above 0, CronJobs not suspended, DaemonSets not held), as
        /// `Kind/name`; empty when not read.
        running: Vec<String>,
        /// Its workloads a drill quieted and that were not released yet (quiet, with their originals
        /// recorded on them), as `Kind/name`; empty when not read.
        held: Vec<String>,
    },
}

impl SourceState {
    /// Whether production is gone or going (a disaster signal, never a request to delete).
    pub fn is_gone(&self) -> bool {
        matches!(self, SourceState::Missing | SourceState::Terminating)
    }

    /// Whether production is marked standby.
    pub fn is_standby(&self) -> bool {
        matches!(self, SourceState::Live { standby: true, .. })
    }

    /// Whether production runs workloads without being marked standby.
    pub fn runs_unfenced(&self) -> bool {
        matches!(self, SourceState::Live { standby: false, running, .. } if !running.is_empty())
    }
}

/// The recorded site state of one namespace pair.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SiteState {
    /// Production.
    pub source: SourceState,
    /// DR.
    pub destination: DestinationState,
}

impl SiteState {
    /// Both sites active: the DR namespace is marked active while production runs workloads and was never
    /// fenced (e.g. production came back after a `promote`). One of them must be quieted (`fence`).
    pub fn both_active(&self) -> bool {
        self.destination.is_active() && self.source.runs_unfenced()
    }
}

/// Why a step is skipped or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The DR namespace is marked active: the DR side is the live site.
    DestinationActive,
    /// The production namespace is terminating or gone.
    SourceGone,
    /// Production could not be read, so a deletion cannot be told from an outage.
    SourceUnknown,
    /// The DR namespace does not exist: nothing was staged.
    NothingStaged,
    /// The production namespace does not exist.
    NoSource,
    /// Neither is the DR side active nor production standby: there is nothing to fail back.
    NothingToFailBack,
    /// Production runs unfenced next to an active DR site.
    BothSitesActive,
    /// The DR cluster could not be read.
    DestinationUnknown,
    /// The DR side is active and production was never fenced (not marked standby).
    NotFenced,
    /// Production runs workloads although a drill holds some of it quiet: its volumes are in use.
    ProductionRunning,
    /// Production runs again (a failback released it): its data is not overwritten.
    Released,
    /// The actor never takes this step (a caller's mistake, reported rather than panicked on).
    NotItsStep,
}

impl Reason {
    /// A stable name (condition reasons, events, JSON output).
    pub fn kind(self) -> &'static str {
        match self {
            Reason::DestinationActive => "DestinationActive",
            Reason::SourceGone => "SourceGone",
            Reason::SourceUnknown => "SourceUnknown",
            Reason::NothingStaged => "NothingStaged",
            Reason::NoSource => "NoSource",
            Reason::NothingToFailBack => "NothingToFailBack",
            Reason::BothSitesActive => "BothSitesActive",
            Reason::DestinationUnknown => "DestinationUnknown",
            Reason::NotFenced => "NotFenced",
            Reason::ProductionRunning => "ProductionRunning",
            Reason::Released => "Released",
            Reason::NotItsStep => "NotItsStep",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::DestinationActive => {
                "the DR namespace is marked active (dr-syncer.io/active): the DR side is the live site"
            }
            Reason::SourceGone => {
                "the production namespace is terminating or gone: that is an outage, not a request to delete"
            }
            Reason::SourceUnknown => "production could not be read: a deletion cannot be told from an outage",
            Reason::NothingStaged => "the DR namespace does not exist: nothing was staged there",
            Reason::NoSource => "the production namespace does not exist",
            Reason::NothingToFailBack => {
                "the DR namespace is not active and production is not standby: there is nothing to fail back"
            }
            Reason::BothSitesActive => {
                "production runs unfenced while the DR side is active: both sites are active (fence production \
                 first: dr-syncer-cli fence)"
            }
            Reason::DestinationUnknown => "the DR cluster could not be read",
            Reason::NotFenced => {
                "the DR side is active and production is not marked standby: fence production first \
                 (dr-syncer-cli fence), so that a failback never lands on a production that was not meant to \
                 take over"
            }
            Reason::ProductionRunning => {
                "production runs workloads although it is standby: its volumes are in use; quiet them first"
            }
            Reason::Released => "production runs again (a failback released it): its data is not overwritten",
            Reason::NotItsStep => "this actor never takes this step",
        })
    }
}

/// The answer of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Go ahead.
    Proceed,
    /// Leave it alone; nothing is wrong (e.g. the operator holding off an active DR site, a re-run of a
    /// cutover that finds the DR side live already).
    Skip(Reason),
    /// Refuse: what was asked for contradicts the recorded state.
    Refuse(Reason),
}

impl Decision {
    /// Whether to go ahead.
    pub fn proceeds(self) -> bool {
        self == Decision::Proceed
    }

    fn cell(self) -> String {
        match self {
            Decision::Proceed => "write".into(),
            Decision::Skip(r) => format!("skip ({})", r.kind()),
            Decision::Refuse(r) => format!("**refuse** ({})", r.kind()),
        }
    }
}

/// May `actor` take `step`, given `state`? See the module docs and `docs/drills.md`.
pub fn decide(actor: Actor, step: Step, state: &SiteState) -> Decision {
    use Decision::{Proceed, Refuse, Skip};
    if !takes_part(actor, step) {
        return Refuse(Reason::NotItsStep);
    }
    let dst = &state.destination;
    let src = &state.source;
    // Rule 1: nothing feeds an active DR namespace from the stale side; a drill that cannot read the DR
    // side does not feed it either (the operator's engine reads it itself and stops on errors).
    if step.feeds_destination() && dst.is_active() {
        return match actor {
            Actor::Stage => Refuse(Reason::DestinationActive),
            _ => Skip(Reason::DestinationActive),
        };
    }
    if step.feeds_destination() && *dst == DestinationState::Unknown && actor != Actor::Operator {
        return Refuse(Reason::DestinationUnknown);
    }
    match step {
        // Rule 2: a production namespace that is gone or going is not a request.
        Step::Prune | Step::CopyData | Step::CleanupOnUnlabel if src.is_gone() => Skip(Reason::SourceGone),
        Step::CleanupOnUnlabel if *src == SourceState::Unknown => Skip(Reason::SourceUnknown),
        Step::SyncObjects | Step::Prune | Step::CopyData | Step::DeleteSynced | Step::CleanupOnUnlabel => {
            Proceed
        }
        // Cutover and fence quiet production: it must be there.
        Step::QuietSource => match src {
            SourceState::Missing => Refuse(Reason::NoSource),
            SourceState::Terminating => Refuse(Reason::SourceGone),
            SourceState::Unknown => Refuse(Reason::SourceUnknown),
            _ => Proceed,
        },
        // Promote (and the cutover's last step): the DR side only.
        Step::ActivateDestination => match (actor, dst) {
            (Actor::Promote, DestinationState::Missing) => Refuse(Reason::NothingStaged),
            (Actor::Promote, DestinationState::Unknown) => Refuse(Reason::DestinationUnknown),
            _ => Proceed,
        },
        // Rule 3: failback needs both sides, production fenced (never both active, never onto a
        // production that was not meant to take over), and data flows back only from the live DR side
        // into a production whose volumes nothing uses.
        Step::QuietDestination | Step::ReverseCopy | Step::ReactivateSource => {
            if matches!(dst, DestinationState::Missing) {
                return Refuse(Reason::NothingStaged);
            }
            if *dst == DestinationState::Unknown {
                return Refuse(Reason::DestinationUnknown);
            }
            let (standby, running, held) = match src {
                SourceState::Unknown => return Refuse(Reason::SourceUnknown),
                SourceState::Missing | SourceState::Terminating => return Refuse(Reason::NoSource),
                SourceState::Live {
                    standby,
                    running,
                    held,
                } => (*standby, running, held),
            };
            if dst.is_active() && !standby {
                return Refuse(if running.is_empty() {
                    Reason::NotFenced
                } else {
                    Reason::BothSitesActive
                });
            }
            if !dst.is_active() && !standby {
                return Skip(Reason::NothingToFailBack);
            }
            if step == Step::ReverseCopy {
                if !dst.is_active() {
                    // A quiet standby's volumes are older than production's.
                    return Skip(Reason::NothingToFailBack);
                }
                if !running.is_empty() {
                    // Released already (a re-run after the reactivation), or scaled up by hand.
                    return if held.is_empty() {
                        Skip(Reason::Released)
                    } else {
                        Refuse(Reason::ProductionRunning)
                    };
                }
            }
            Proceed
        }
    }
}

/// The rules as a Markdown table per actor (rows: steps, columns: representative states), as
/// `docs/drills.md` shows them.
pub fn matrix_markdown() -> String {
    let states = representative_states();
    let mut out = String::new();
    out.push_str("| actor | step |");
    for (name, _) in &states {
        out.push_str(&format!(" {name} |"));
    }
    out.push('\n');
    out.push_str("|---|---|");
    for _ in &states {
        out.push_str("---|");
    }
    out.push('\n');
    for actor in Actor::ALL {
        for step in Step::ALL {
            if !takes_part(actor, step) {
                continue;
            }
            let cells: Vec<Decision> = states.iter().map(|(_, s)| decide(actor, step, s)).collect();
            out.push_str(&format!("| {} | {} |", actor.as_str(), step.as_str()));
            for c in cells {
                out.push_str(&format!(" {} |", c.cell()));
            }
            out.push('\n');
        }
    }
    out
}

/// Whether an actor ever takes a step (the table leaves out the pairs that are never asked).
pub fn takes_part(actor: Actor, step: Step) -> bool {
    match actor {
        Actor::Operator => matches!(
            step,
            Step::SyncObjects | Step::Prune | Step::CopyData | Step::DeleteSynced | Step::CleanupOnUnlabel
        ),
        Actor::Stage => matches!(step, Step::SyncObjects | Step::Prune | Step::CopyData),
        Actor::Cutover => matches!(
            step,
            Step::SyncObjects | Step::CopyData | Step::QuietSource | Step::ActivateDestination
        ),
        Actor::Promote => step == Step::ActivateDestination,
        Actor::Fence => step == Step::QuietSource,
        Actor::Failback => matches!(
            step,
            Step::QuietDestination | Step::ReverseCopy | Step::ReactivateSource
        ),
    }
}

/// The columns of the documented table.
fn representative_states() -> Vec<(&'static str, SiteState)> {
    let live = |standby: bool, running: bool| SourceState::Live {
        standby,
        running: if running {
            vec!["Deployment/web".into()]
        } else {
            Vec::new()
        },
        held: if standby && !running {
            vec!["Deployment/web".into()]
        } else {
            Vec::new()
        },
    };
    let active = DestinationState::Active {
        since: None,
        by: ActivatedBy::Cutover,
    };
    vec![
        (
            "DR missing, prod live",
            SiteState {
                source: live(false, true),
                destination: DestinationState::Missing,
            },
        ),
        (
            "DR standby, prod live",
            SiteState {
                source: live(false, true),
                destination: DestinationState::Standby,
            },
        ),
        (
            "DR standby, prod gone",
            SiteState {
                source: SourceState::Missing,
                destination: DestinationState::Standby,
            },
        ),
        (
            "DR standby, prod unreachable",
            SiteState {
                source: SourceState::Unknown,
                destination: DestinationState::Standby,
            },
        ),
        (
            "DR active, prod standby",
            SiteState {
                source: live(true, false),
                destination: active.clone(),
            },
        ),
        (
            "DR active, prod unreachable",
            SiteState {
                source: SourceState::Unknown,
                destination: active.clone(),
            },
        ),
        (
            "DR active, prod not fenced, idle",
            SiteState {
                source: live(false, false),
                destination: active.clone(),
            },
        ),
        (
            "DR active, prod running unfenced (both active)",
            SiteState {
                source: live(false, true),
                destination: active,
            },
        ),
    ]
}

#[cfg(test)]
mod tests;
