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

#[cfg(test)]
mod tests {
    use super::*;

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
