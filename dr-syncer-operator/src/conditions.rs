//! `metav1.Condition` lists: set a condition, keeping `lastTransitionTime` unless the status changes.

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

/// The time now, at second precision (as the API server stores `Time`).
pub fn now() -> Time {
    Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now()))
}

/// Set condition `type_` in `conditions`. `lastTransitionTime` changes only when the status does, as
/// Kubernetes' API conventions ask; reason, message and observedGeneration are always updated.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    let mut message: String = message.into();
    if message.len() > 32_000 {
        let mut end = 32_000;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now();
            }
            c.status = status;
            c.reason = reason.to_owned();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message,
            observed_generation: generation,
            last_transition_time: now(),
        }),
    }
}

/// Remove condition `type_`.
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// Whether condition `type_` is `True`.
pub fn is_true(conditions: Option<&Vec<Condition>>, type_: &str) -> bool {
    conditions
        .into_iter()
        .flatten()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// The conditions a kind's summary `Ready` condition reads: `Ready` is `True` when every `required`
/// condition is `True` and no `blocking` one is; otherwise `False` with the reason and message of the
/// first that is not (a required condition not yet reported: reason `Pending`).
#[derive(Debug, Clone, Copy)]
pub struct ReadyRule {
    /// Conditions that must be `True`.
    pub required: &'static [&'static str],
    /// Conditions that must not be `True`.
    pub blocking: &'static [&'static str],
}

/// RemoteCluster: usable (its kubeconfig read and valid, the cluster answering, the schedule valid when
/// there is one) and still the cluster it is pinned to.
pub const REMOTE_CLUSTER_READY: ReadyRule = ReadyRule {
    required: &["KubeconfigAvailable", "KubeconfigValid", "ClusterAvailable"],
    blocking: &["ClusterIdentityChanged"],
};

/// ClusterMapping: not paused, both clusters (and the source's agents, when checked) reachable.
pub const CLUSTER_MAPPING_READY: ReadyRule = ReadyRule {
    required: &["Connected"],
    blocking: &["Paused"],
};

/// NamespaceMapping: not paused, the last sync succeeded, nothing is overdue, and the two sites are not
/// both live.
pub const NAMESPACE_MAPPING_READY: ReadyRule = ReadyRule {
    required: &["Synced"],
    blocking: &["Paused", "Stale", "BothSitesActive"],
};

/// Set the summary `Ready` condition from the others (kstatus style: `kubectl wait --for=condition=Ready`).
pub fn summarize(conditions: &mut Vec<Condition>, rule: ReadyRule, generation: Option<i64>) {
    // A schedule that does not parse keeps a RemoteCluster from serving its mappings too.
    let optional_required = ["ScheduleValid"];
    let find = |t: &str| conditions.iter().find(|c| c.type_ == t);
    let not_ready = |c: &Condition| (c.reason.clone(), format!("{}: {}", c.type_, c.message));
    let mut verdict = rule
        .blocking
        .iter()
        .filter_map(|t| find(t))
        .find(|c| c.status == "True")
        .map(not_ready);
    for t in rule.required.iter().chain(&optional_required) {
        if verdict.is_some() {
            break;
        }
        verdict = match find(t) {
            Some(c) if c.status == "True" => None,
            Some(c) => Some(not_ready(c)),
            None if optional_required.contains(t) => None,
            None => Some(("Pending".into(), format!("{t} is not reported yet"))),
        };
    }
    match verdict {
        Some((reason, message)) => set(conditions, "Ready", false, &reason, message, generation),
        None => set(conditions, "Ready", true, "Ready", "ready", generation),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_summarizes_the_other_conditions() {
        let ready = |c: &Vec<Condition>| {
            let r = c.iter().find(|c| c.type_ == "Ready").unwrap();
            (r.status.clone(), r.reason.clone())
        };
        let mut c = Vec::new();
        summarize(&mut c, NAMESPACE_MAPPING_READY, Some(1));
        assert_eq!(ready(&c), ("False".into(), "Pending".into()));
        set(&mut c, "Synced", true, "SyncCompleted", "ok", Some(1));
        summarize(&mut c, NAMESPACE_MAPPING_READY, Some(1));
        assert_eq!(ready(&c), ("True".into(), "Ready".into()));
        set(
            &mut c,
            "Stale",
            true,
            "Stale",
            "3 periods without a sync",
            Some(1),
        );
        summarize(&mut c, NAMESPACE_MAPPING_READY, Some(1));
        assert_eq!(ready(&c), ("False".into(), "Stale".into()));
        set(&mut c, "Stale", false, "Fresh", "", Some(1));
        set(&mut c, "Synced", false, "SyncFailed", "boom", Some(2));
        summarize(&mut c, NAMESPACE_MAPPING_READY, Some(2));
        assert_eq!(ready(&c), ("False".into(), "SyncFailed".into()));
        let r = c.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (r.message.as_str(), r.observed_generation),
            ("Synced: boom", Some(2))
        );

        let mut rc = Vec::new();
        for t in REMOTE_CLUSTER_READY.required {
            set(&mut rc, t, true, "Ok", "", None);
        }
        summarize(&mut rc, REMOTE_CLUSTER_READY, None);
        assert_eq!(ready(&rc), ("True".into(), "Ready".into()));
        set(&mut rc, "ScheduleValid", false, "InvalidSchedule", "bad", None);
        summarize(&mut rc, REMOTE_CLUSTER_READY, None);
        assert_eq!(ready(&rc), ("False".into(), "InvalidSchedule".into()));
        remove(&mut rc, "ScheduleValid");
        set(
            &mut rc,
            "ClusterIdentityChanged",
            true,
            "ClusterIdentityChanged",
            "other cluster",
            None,
        );
        summarize(&mut rc, REMOTE_CLUSTER_READY, None);
        assert_eq!(ready(&rc), ("False".into(), "ClusterIdentityChanged".into()));
    }

    #[test]
    fn transition_time_moves_only_with_the_status() {
        let mut c = Vec::new();
        set(&mut c, "Synced", true, "SyncCompleted", "ok", Some(1));
        let t0 = c[0].last_transition_time.clone();
        c[0].last_transition_time = Time(Timestamp::from_second(1).unwrap());
        set(&mut c, "Synced", true, "SyncCompleted", "still ok", Some(2));
        assert_eq!(c[0].last_transition_time.0.as_second(), 1);
        assert_eq!(
            (c[0].message.as_str(), c[0].observed_generation),
            ("still ok", Some(2))
        );
        set(&mut c, "Synced", false, "SyncFailed", "boom", Some(2));
        assert!(c[0].last_transition_time.0 >= t0.0);
        assert_eq!(c.len(), 1);
        assert!(!is_true(Some(&c), "Synced"));
        remove(&mut c, "Synced");
        assert!(c.is_empty());
    }
}
