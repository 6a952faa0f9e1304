//! What a sync did: [`SyncReport`].

use std::{collections::BTreeMap, time::Duration};

use serde::Serialize;

use crate::{
    apply::{ApplyAction, ObjectDiff},
    failure::FailureCategory,
};

/// Counts for one kind (`Kind.group`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KindStats {
    /// Objects created on the DR side.
    pub created: u32,
    /// Objects updated (they differed).
    pub updated: u32,
    /// Objects that already matched: no write.
    pub unchanged: u32,
    /// Objects deleted and created again under an immutable-field policy.
    pub recreated: u32,
    /// Objects not applied: selection, a transformer's drop, or an immutable change under `NoChange`.
    pub skipped: u32,
    /// Of `skipped`, those left out on purpose (selection, a transformer's drop): they are not meant to
    /// reach the DR side at all.
    pub excluded: u32,
    /// DR objects deleted by prune.
    pub deleted: u32,
    /// Objects that failed.
    pub failed: u32,
}

impl KindStats {
    /// Objects the sync looked at (everything but prune deletions).
    pub fn total(&self) -> u32 {
        self.created + self.updated + self.unchanged + self.recreated + self.skipped + self.failed
    }

    /// Objects written (created, updated, recreated, deleted).
    pub fn writes(&self) -> u32 {
        self.created + self.updated + self.recreated + self.deleted
    }
}

/// One object that failed, with the error's stable kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectFailure {
    /// The object (`Kind.group/namespace/name`).
    pub object: String,
    /// Stable error category (`TransformFailed`, `ApplyFailed` …).
    pub kind: String,
    /// The `failureHandling` category.
    pub category: FailureCategory,
    /// What went wrong.
    pub message: String,
    /// Whether a retry may help.
    pub transient: bool,
}

/// One object that was not applied, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SkippedObject {
    /// The object.
    pub object: String,
    /// Why.
    pub reason: String,
}

/// A change made (or, in plan mode, that would be made) to one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectChange {
    /// The object.
    pub object: String,
    /// What happened (or would).
    #[serde(flatten)]
    pub action: ApplyAction,
    /// The fields that change, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<ObjectDiff>,
}

/// A source workload's replica count (for the operator's `deploymentScales`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadScale {
    /// `Deployment` or `StatefulSet`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its replicas at the source (the recorded original when a cutover quieted it).
    pub source_replicas: i32,
}

/// What the site state held back in a sync ([`crate::site::Decision::Skip`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    /// The stable reason ([`crate::site::Reason::kind`]): `DestinationActive`, `SourceGone` …
    pub reason: String,
    /// What was held back, and why.
    pub message: String,
}

impl Held {
    /// `what` was held back for `reason`.
    pub fn new(reason: crate::site::Reason, what: &str) -> Self {
        Held {
            reason: reason.kind().to_owned(),
            message: format!("{what}: {reason}"),
        }
    }
}

/// The result of one sync or plan of a namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    /// Source namespace.
    pub source_namespace: String,
    /// Destination namespace.
    pub destination_namespace: String,
    /// Plan mode: nothing was written.
    pub dry_run: bool,
    /// The destination namespace is marked active (the DR side is the live site): nothing was written
    /// (see [`SyncReport::held`]), or, for a copy back to a quiet production, workloads kept their state.
    pub destination_active: bool,
    /// Why nothing (or, for deletions, not everything) was written although the sync ran: the recorded
    /// site state held it back ([`crate::site`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<Held>,
    /// Deletions the deletion brake held ([`crate::brake`]): nothing was deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_hold: Option<crate::brake::DeletionHold>,
    /// Types whose CustomResourceDefinition is being deleted at the source (`Kind.group`): their
    /// objects vanish there one by one, which is a removal of the type (or an outage), not a request to
    /// delete the DR copies, so none of them was pruned.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed_types: Vec<String>,
    /// Deletions a go-ahead allowed past the brake (0: none needed one).
    #[serde(skip_serializing_if = "is_zero")]
    pub deletions_allowed: usize,
    /// Per kind (`Kind.group`).
    pub kinds: BTreeMap<String, KindStats>,
    /// Objects that failed.
    pub failures: Vec<ObjectFailure>,
    /// Objects not applied, with the reason.
    pub skipped: Vec<SkippedObject>,
    /// Objects created, updated, recreated or deleted (in plan mode: that would be).
    pub changes: Vec<ObjectChange>,
    /// The source Deployments and StatefulSets, with their replica counts.
    pub workloads: Vec<WorkloadScale>,
    /// How long the sync took.
    #[serde(with = "duration_secs")]
    pub duration: Duration,
}

impl SyncReport {
    /// Sum over all kinds.
    pub fn totals(&self) -> KindStats {
        self.kinds.values().fold(KindStats::default(), |mut acc, k| {
            acc.created += k.created;
            acc.updated += k.updated;
            acc.unchanged += k.unchanged;
            acc.recreated += k.recreated;
            acc.skipped += k.skipped;
            acc.excluded += k.excluded;
            acc.deleted += k.deleted;
            acc.failed += k.failed;
            acc
        })
    }

    /// Whether every object was handled without error.
    pub fn is_success(&self) -> bool {
        self.failures.is_empty()
    }

    /// Replace the values of Secret fields in `changes` by `"<redacted>"` (keys and paths stay), so a
    /// plan or diff can be shown and logged without leaking secrets.
    pub fn redact_secrets(&mut self) {
        for change in &mut self.changes {
            if !change.object.starts_with("Secret/") {
                continue;
            }
            for field in change.diff.iter_mut().flat_map(|d| d.changes.iter_mut()) {
                let sensitive = field.path == "/data"
                    || field.path == "/stringData"
                    || field.path.starts_with("/data/")
                    || field.path.starts_with("/stringData/");
                if sensitive {
                    for v in [&mut field.old, &mut field.new].into_iter().flatten() {
                        *v = "\"<redacted>\"".into();
                    }
                }
            }
        }
    }

    pub(crate) fn stats(&mut self, group_kind: &str) -> &mut KindStats {
        self.kinds.entry(group_kind.to_owned()).or_default()
    }

    pub(crate) fn record(
        &mut self,
        group_kind: &str,
        object: String,
        action: ApplyAction,
        diff: Option<ObjectDiff>,
    ) {
        let stats = self.stats(group_kind);
        match &action {
            ApplyAction::Created => stats.created += 1,
            ApplyAction::Updated => stats.updated += 1,
            ApplyAction::Unchanged => stats.unchanged += 1,
            ApplyAction::Recreated => stats.recreated += 1,
            ApplyAction::Deleted => stats.deleted += 1,
            ApplyAction::Skipped(reason) => {
                stats.skipped += 1;
                self.skipped.push(SkippedObject {
                    object,
                    reason: reason.clone(),
                });
                return;
            }
        }
        if action != ApplyAction::Unchanged {
            self.changes.push(ObjectChange { object, action, diff });
        }
    }

    pub(crate) fn fail(&mut self, group_kind: &str, object: String, err: &crate::Error) {
        self.stats(group_kind).failed += 1;
        self.failures.push(ObjectFailure {
            object,
            kind: err.kind().to_owned(),
            category: err.category(),
            message: err.to_string(),
            transient: err.is_transient(),
        });
    }

    /// Left out on purpose (selection, a transformer's drop).
    pub(crate) fn exclude(&mut self, group_kind: &str, object: String, reason: String) {
        self.stats(group_kind).excluded += 1;
        self.skip(group_kind, object, reason);
    }

    pub(crate) fn skip(&mut self, group_kind: &str, object: String, reason: String) {
        self.stats(group_kind).skipped += 1;
        self.skipped.push(SkippedObject { object, reason });
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::FieldChange;

    #[test]
    fn secret_values_are_redacted_keys_kept() {
        let field = |path: &str| FieldChange {
            path: path.into(),
            old: Some(
                if path.starts_with("/data") {
                    "\"czNjcmV0\""
                } else {
                    "\"old\""
                }
                .into(),
            ),
            new: Some("\"bmV3\"".into()),
        };
        let mut r = SyncReport {
            changes: vec![
                ObjectChange {
                    object: "Secret/app/db".into(),
                    action: ApplyAction::Updated,
                    diff: Some(ObjectDiff {
                        changes: vec![field("/data/password"), field("/metadata/labels/x")],
                    }),
                },
                ObjectChange {
                    object: "ConfigMap/app/c".into(),
                    action: ApplyAction::Updated,
                    diff: Some(ObjectDiff {
                        changes: vec![field("/data/a")],
                    }),
                },
            ],
            ..Default::default()
        };
        r.redact_secrets();
        let secret = &r.changes[0].diff.as_ref().unwrap().changes;
        assert_eq!(secret[0].path, "/data/password");
        assert_eq!(secret[0].new.as_deref(), Some("\"<redacted>\""));
        assert_eq!(secret[0].old.as_deref(), Some("\"<redacted>\""));
        assert_eq!(
            secret[1].new.as_deref(),
            Some("\"bmV3\""),
            "non-secret fields stay"
        );
        assert_eq!(
            r.changes[1].diff.as_ref().unwrap().changes[0].new.as_deref(),
            Some("\"bmV3\"")
        );
        let json = serde_json::to_string(&r.changes[0]).unwrap();
        assert!(!json.contains("czNjcmV0"), "{json}");
    }
}

mod duration_secs {
    use std::time::Duration;

    use serde::Serializer;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}
