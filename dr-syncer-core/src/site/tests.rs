use rstest::rstest;

use super::*;

fn live(standby: bool, running: &[&str]) -> SourceState {
    SourceState::Live {
        standby,
        running: running.iter().map(|s| (*s).to_owned()).collect(),
        held: if standby && running.is_empty() {
            vec!["Deployment/web".into()]
        } else {
            Vec::new()
        },
    }
}

/// Production marked standby, running `running` and still holding `held` quiet.
fn standby(running: &[&str], held: &[&str]) -> SourceState {
    SourceState::Live {
        standby: true,
        running: running.iter().map(|s| (*s).to_owned()).collect(),
        held: held.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn active(by: ActivatedBy) -> DestinationState {
    DestinationState::Active {
        since: Some("2026-12-05T10:00:00Z".into()),
        by,
    }
}

fn state(source: SourceState, destination: DestinationState) -> SiteState {
    SiteState { source, destination }
}

use ActivatedBy::*;
use Decision::*;

#[rstest]
// Rule 1: an active DR namespace takes nothing from the stale side, whoever marked it.
#[case::operator_holds(Actor::Operator, Step::SyncObjects, state(live(true, &[]), active(Cutover)), Skip(Reason::DestinationActive))]
#[case::manual_mark_holds(Actor::Operator, Step::SyncObjects, state(live(false, &[]), active(Manual)), Skip(Reason::DestinationActive))]
#[case::no_prune(Actor::Operator, Step::Prune, state(live(true, &[]), active(Promote)), Skip(Reason::DestinationActive))]
#[case::no_data(Actor::Operator, Step::CopyData, state(live(true, &[]), active(Cutover)), Skip(Reason::DestinationActive))]
#[case::no_delete_synced(
    Actor::Operator,
    Step::DeleteSynced,
    state(SourceState::Unknown, active(Cutover)),
    Skip(Reason::DestinationActive)
)]
#[case::no_cleanup(Actor::Operator, Step::CleanupOnUnlabel, state(live(false, &[]), active(Cutover)), Skip(Reason::DestinationActive))]
#[case::stage_refused(Actor::Stage, Step::SyncObjects, state(live(true, &[]), active(Cutover)), Refuse(Reason::DestinationActive))]
#[case::cutover_rerun_no_sync(Actor::Cutover, Step::SyncObjects, state(live(true, &[]), active(Cutover)), Skip(Reason::DestinationActive))]
#[case::cutover_rerun_no_copy(Actor::Cutover, Step::CopyData, state(live(true, &[]), active(Cutover)), Skip(Reason::DestinationActive))]
#[case::cutover_rerun_finishes(Actor::Cutover, Step::ActivateDestination, state(live(true, &[]), active(Cutover)), Proceed)]
// A warm standby takes everything.
#[case::sync(Actor::Operator, Step::SyncObjects, state(live(false, &["Deployment/web"]), DestinationState::Standby), Proceed)]
#[case::first_sync(Actor::Operator, Step::SyncObjects, state(live(false, &[]), DestinationState::Missing), Proceed)]
#[case::prune(Actor::Operator, Step::Prune, state(live(false, &[]), DestinationState::Standby), Proceed)]
#[case::copy(Actor::Stage, Step::CopyData, state(live(false, &[]), DestinationState::Standby), Proceed)]
#[case::delete_synced(
    Actor::Operator,
    Step::DeleteSynced,
    state(SourceState::Missing, DestinationState::Standby),
    Proceed
)]
// Rule 2: a source that is gone or going is an outage.
#[case::no_prune_source_gone(
    Actor::Operator,
    Step::Prune,
    state(SourceState::Terminating, DestinationState::Standby),
    Skip(Reason::SourceGone)
)]
#[case::no_copy_source_gone(
    Actor::Operator,
    Step::CopyData,
    state(SourceState::Missing, DestinationState::Standby),
    Skip(Reason::SourceGone)
)]
#[case::not_unlabelled(
    Actor::Operator,
    Step::CleanupOnUnlabel,
    state(SourceState::Terminating, DestinationState::Standby),
    Skip(Reason::SourceGone)
)]
#[case::unknown_not_unlabelled(
    Actor::Operator,
    Step::CleanupOnUnlabel,
    state(SourceState::Unknown, DestinationState::Standby),
    Skip(Reason::SourceUnknown)
)]
#[case::unlabelled(Actor::Operator, Step::CleanupOnUnlabel, state(live(false, &[]), DestinationState::Standby), Proceed)]
// Promote and fence each need only their side.
#[case::promote(
    Actor::Promote,
    Step::ActivateDestination,
    state(SourceState::Unknown, DestinationState::Standby),
    Proceed
)]
#[case::promote_again(
    Actor::Promote,
    Step::ActivateDestination,
    state(SourceState::Unknown, active(Promote)),
    Proceed
)]
#[case::promote_nothing(
    Actor::Promote,
    Step::ActivateDestination,
    state(SourceState::Unknown, DestinationState::Missing),
    Refuse(Reason::NothingStaged)
)]
#[case::fence(Actor::Fence, Step::QuietSource, state(live(false, &["Deployment/web"]), DestinationState::Unknown), Proceed)]
#[case::fence_nothing(
    Actor::Fence,
    Step::QuietSource,
    state(SourceState::Missing, DestinationState::Unknown),
    Refuse(Reason::NoSource)
)]
#[case::cutover_needs_prod(
    Actor::Cutover,
    Step::QuietSource,
    state(SourceState::Unknown, DestinationState::Standby),
    Refuse(Reason::SourceUnknown)
)]
// Rule 3: failback.
#[case::failback(Actor::Failback, Step::QuietDestination, state(live(true, &[]), active(Cutover)), Proceed)]
#[case::failback_copy(Actor::Failback, Step::ReverseCopy, state(live(true, &[]), active(Promote)), Proceed)]
#[case::failback_both_active(Actor::Failback, Step::QuietDestination, state(live(false, &["Deployment/web"]), active(Promote)), Refuse(Reason::BothSitesActive))]
#[case::failback_prod_down(
    Actor::Failback,
    Step::QuietDestination,
    state(SourceState::Unknown, active(Promote)),
    Refuse(Reason::SourceUnknown)
)]
#[case::failback_prod_gone(
    Actor::Failback,
    Step::ReactivateSource,
    state(SourceState::Missing, active(Promote)),
    Refuse(Reason::NoSource)
)]
#[case::no_copy_from_standby(Actor::Failback, Step::ReverseCopy, state(live(true, &[]), DestinationState::Standby), Skip(Reason::NothingToFailBack))]
#[case::finish_interrupted(Actor::Failback, Step::ReactivateSource, state(live(true, &[]), DestinationState::Standby), Proceed)]
#[case::nothing_to_fail_back(Actor::Failback, Step::ReactivateSource, state(live(false, &["Deployment/web"]), DestinationState::Standby), Skip(Reason::NothingToFailBack))]
#[case::not_fenced(Actor::Failback, Step::QuietDestination, state(live(false, &[]), active(Promote)), Refuse(Reason::NotFenced))]
#[case::rerun_after_release(Actor::Failback, Step::ReverseCopy, state(standby(&["Deployment/web"], &[]), active(Cutover)), Skip(Reason::Released))]
#[case::standby_scaled_up_by_hand(Actor::Failback, Step::ReverseCopy, state(standby(&["Deployment/web"], &["Deployment/db"]), active(Cutover)), Refuse(Reason::ProductionRunning))]
#[case::rerun_finishes(Actor::Failback, Step::ReactivateSource, state(standby(&["Deployment/web"], &[]), active(Cutover)), Proceed)]
#[case::no_writes_into_an_unread_dr(Actor::Stage, Step::SyncObjects, state(live(false, &[]), DestinationState::Unknown), Refuse(Reason::DestinationUnknown))]
#[case::cutover_copies_nothing_into_an_unread_dr(Actor::Cutover, Step::CopyData, state(live(false, &[]), DestinationState::Unknown), Refuse(Reason::DestinationUnknown))]
#[case::cutover_of_a_terminating_source(
    Actor::Cutover,
    Step::QuietSource,
    state(SourceState::Terminating, DestinationState::Standby),
    Refuse(Reason::SourceGone)
)]
// Steps an actor never takes are refused, not guessed.
#[case::operator_never_quiets_prod(Actor::Operator, Step::QuietSource, state(live(false, &[]), DestinationState::Standby), Refuse(Reason::NotItsStep))]
#[case::promote_never_syncs(Actor::Promote, Step::SyncObjects, state(live(false, &[]), DestinationState::Standby), Refuse(Reason::NotItsStep))]
fn decisions(#[case] actor: Actor, #[case] step: Step, #[case] state: SiteState, #[case] expected: Decision) {
    assert_eq!(
        decide(actor, step, &state),
        expected,
        "{actor:?} {step:?} {state:?}"
    );
}

/// Whatever the state, no actor feeds an active DR namespace.
#[test]
fn nothing_feeds_an_active_destination() {
    let sources = [
        SourceState::Unknown,
        SourceState::Missing,
        SourceState::Terminating,
        live(true, &[]),
        live(false, &[]),
        live(false, &["Deployment/web"]),
    ];
    for by in [Cutover, Promote, Manual] {
        for source in &sources {
            let s = state(source.clone(), active(by));
            for actor in Actor::ALL {
                for step in Step::ALL.into_iter().filter(|s| s.feeds_destination()) {
                    assert!(!decide(actor, step, &s).proceeds(), "{actor:?} {step:?} {s:?}");
                }
            }
        }
    }
}

#[test]
fn both_active_needs_an_unfenced_running_source() {
    assert!(state(live(false, &["Deployment/web"]), active(Promote)).both_active());
    assert!(!state(live(true, &["Deployment/web"]), active(Promote)).both_active());
    assert!(!state(live(false, &[]), active(Promote)).both_active());
    assert!(!state(live(false, &["Deployment/web"]), DestinationState::Standby).both_active());
    assert!(!state(SourceState::Unknown, active(Manual)).both_active());
}

#[rstest]
#[case(None, DestinationState::Missing)]
#[case(Some(vec![]), DestinationState::Standby)]
#[case(Some(vec![("dr-syncer.io/active", "false")]), DestinationState::Standby)]
#[case(Some(vec![("dr-syncer.io/active", "true")]), DestinationState::Active { since: None, by: Manual })]
#[case(
    Some(vec![("dr-syncer.io/active", "true"), ("dr-syncer.io/activated-by", "promote"), ("dr-syncer.io/active-since", "t")]),
    DestinationState::Active { since: Some("t".into()), by: Promote }
)]
#[case(Some(vec![("dr-syncer.io/active", "true"), ("dr-syncer.io/activated-by", "someone")]), DestinationState::Active { since: None, by: Manual })]
fn destination_state_from_annotations(
    #[case] annotations: Option<Vec<(&'static str, &'static str)>>,
    #[case] expected: DestinationState,
) {
    let meta = annotations.map(|a| ObjectMeta {
        annotations: Some(a.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()),
        ..ObjectMeta::default()
    });
    assert_eq!(DestinationState::of_namespace(meta.as_ref()), expected);
}

/// `docs/drills.md` shows the table [`matrix_markdown`] renders from [`decide`]: the two never drift.
#[test]
fn the_documented_matrix_is_the_code() {
    let doc = include_str!("../../../docs/drills.md");
    let table = matrix_markdown();
    assert!(
        doc.contains(&table),
        "docs/drills.md must contain the site matrix exactly as site::matrix_markdown() renders it:\n{table}"
    );
}
