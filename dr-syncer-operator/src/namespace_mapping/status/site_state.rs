//! The conditions of the site state: deletions held back, a DR side that is the live site, and both
//! sites active (pure).

use dr_syncer_core::{engine::SyncReport, site};

/// The `DeletionHeld` condition (reason, message) when a report held deletions back: the deletion brake
/// (`MassDeletion`), a production namespace that is being deleted or is gone (`SourceGone`: an outage,
/// not a request), or a type whose CustomResourceDefinition is being deleted at the source
/// (`SourceTypeRemoved`). `None` when nothing was held.
pub fn deletions_held(reports: &[SyncReport]) -> Option<(&'static str, String)> {
    let mut reason = None;
    let mut parts = Vec::new();
    for r in reports {
        if !r.removed_types.is_empty() {
            reason.get_or_insert("SourceTypeRemoved");
            parts.push(format!(
                "{}: the CustomResourceDefinition of {} is being deleted at the source; its DR objects are kept \
                 (delete them on the DR side by hand if the type is gone for good)",
                r.destination_namespace,
                r.removed_types.join(", ")
            ));
        }
        if let Some(hold) = &r.deletion_hold {
            reason = Some("MassDeletion");
            parts.push(format!("{}: {}", r.destination_namespace, hold.message()));
        } else if let Some(h) = r
            .held
            .as_ref()
            .filter(|h| h.reason == site::Reason::SourceGone.kind())
        {
            reason.get_or_insert("SourceGone");
            parts.push(format!("{}: {}", r.destination_namespace, h.message));
        }
    }
    reason.map(|r| (r, parts.join("; ")))
}

/// The `DestinationActive` condition's message.
pub fn destination_active_message(namespaces: &[&str]) -> String {
    format!(
        "DR namespace(s) {} are marked active (dr-syncer.io/active=true: a cutover, a promote or by hand): the DR \
         side is the live site, and this mapping writes nothing there (no objects, prune, data copies or \
         deletions) until a failback clears the mark",
        namespaces.join(", ")
    )
}

/// The `BothSitesActive` condition's message.
pub fn both_active_message(pairs: &[String]) -> String {
    format!(
        "Production runs workloads while the DR side is active and production is not fenced: {}. Quiet one \
         site: `dr-syncer-cli fence` quiets production (or `failback` to return to it)",
        pairs.join("; ")
    )
}
