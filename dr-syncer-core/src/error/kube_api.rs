//! The one classifier of Kubernetes API errors (feature `client`): whether a failed request may succeed
//! when retried, the delay it asks for, its `failureHandling` category, and the stable kind dr-syncer
//! reports it as (metric label, Event reason, exit code). Every layer (the request budget `Calls`, the
//! source, the applier, the operations and [`crate::Error`]) asks these functions, so one error is
//! classified the same way wherever it surfaces.

use std::time::Duration;

use crate::failure::FailureCategory;

/// The error of an attempt that did not answer within the deadline (a transport error: retried, and
/// counted as a network problem).
#[derive(Debug, thiserror::Error)]
#[error("{what}: no answer within {after:?} (timed out after {after:?})")]
pub struct TimedOut {
    /// The request.
    pub what: String,
    /// The deadline.
    pub after: Duration,
}

/// Whether a failed request may succeed when retried: 429, 500, 502, 503, 504, and transport errors
/// (connection refused or reset, timeouts). Everything else (4xx) is the request's own fault.
pub fn is_retryable(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => matches!(status.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// The delay a 429 or 503 asks for (`Retry-After`, which the API server puts in the Status's
/// `details.retryAfterSeconds`).
pub fn retry_after(err: &kube::Error) -> Option<Duration> {
    match err {
        kube::Error::Api(s) if matches!(s.code, 429 | 503) => s
            .details
            .as_ref()
            .map(|d| d.retry_after_seconds)
            .filter(|secs| *secs > 0)
            .map(|secs| Duration::from_secs(u64::from(secs))),
        _ => None,
    }
}

/// Whether `err` is an attempt that ran into its deadline ([`TimedOut`]).
pub fn is_timed_out(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Service(e) if e.is::<TimedOut>())
}

/// The `failureHandling` category of a failed request.
pub fn category_of(err: &kube::Error) -> FailureCategory {
    match err {
        kube::Error::Api(status) => FailureCategory::from_status(status.code),
        _ if is_retryable(err) => FailureCategory::NetworkError,
        _ => FailureCategory::Other,
    }
}

/// Whether `err` is a 409 AlreadyExists (a create of an object that exists).
pub fn is_already_exists(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// Whether `err` is a 404 Not Found.
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}

/// Whether `err` says the requested *type* is not served here: a 404, or a 404 whose body was not a Status
/// at all (an API path the server does not serve — a custom resource whose CRD is not installed — answers
/// with a listing of the root paths, which kube decodes as an empty Status). Only the destination side
/// reads this as "nothing there" (the safe direction: an apply creates, prune finds nothing to delete);
/// the source side reports it as an error, so prune never mistakes it for "every object is gone".
pub fn is_unserved(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(s) => s.code == 404 || (s.code == 0 && s.reason.is_empty() && s.message.is_empty()),
        _ => false,
    }
}

/// The stable kind of a failed request: `Timeout` (a deadline of `Calls`), `Unauthorized` (401/403),
/// `NotFound` (404), `KubeApi` (any other answer of the API server), `Connection` (no answer).
pub fn kind_of(err: &kube::Error) -> &'static str {
    match err {
        e if is_timed_out(e) => "Timeout",
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => "Unauthorized",
        kube::Error::Api(s) if s.code == 404 => "NotFound",
        kube::Error::Api(_) => "KubeApi",
        _ => "Connection",
    }
}

/// The part of `err` kept as the `source()` of an error that states it in its own words (the applier's
/// and the source's per-object errors, which are cloned into reports): the API server's `Status` for an
/// answer, else the transport error's message.
pub fn cause_of(err: &kube::Error) -> std::sync::Arc<dyn std::error::Error + Send + Sync> {
    match err {
        kube::Error::Api(status) => std::sync::Arc::new(status.as_ref().clone()),
        other => std::sync::Arc::new(std::io::Error::other(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use rstest::rstest;

    use super::*;
    use crate::apply::ApplyError;

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            reason: reason.into(),
            message: format!("the server says {code}"),
            ..Default::default()
        }))
    }

    #[rstest]
    #[case(api(422, "Invalid"), "KubeApi", FailureCategory::ValidationFailure, false)]
    #[case(api(404, "NotFound"), "NotFound", FailureCategory::ResourceNotFound, false)]
    #[case(api(403, "Forbidden"), "Unauthorized", FailureCategory::Other, false)]
    #[case(api(429, "TooManyRequests"), "KubeApi", FailureCategory::NetworkError, true)]
    #[case(
        api(503, "ServiceUnavailable"),
        "KubeApi",
        FailureCategory::NetworkError,
        true
    )]
    #[case(
        kube::Error::Service(Box::new(TimedOut { what: "get x".into(), after: Duration::from_secs(1) })),
        "Timeout",
        FailureCategory::NetworkError,
        true
    )]
    fn one_classification_of_each_error(
        #[case] err: kube::Error,
        #[case] kind: &str,
        #[case] category: FailureCategory,
        #[case] retryable: bool,
    ) {
        assert_eq!(kind_of(&err), kind);
        assert_eq!(category_of(&err), category);
        assert_eq!(is_retryable(&err), retryable);
        // The crate's error says the same.
        let wrapped = crate::Error::kube("doing it", err);
        assert_eq!(wrapped.kind(), kind);
        assert_eq!(wrapped.category(), category);
        assert_eq!(wrapped.is_transient(), retryable);
    }

    #[test]
    fn a_per_object_error_keeps_the_api_status_as_its_source() {
        let err =
            ApplyError::new("ConfigMap/shop/a", "rejected", false).with_cause(cause_of(&api(422, "Invalid")));
        let source = err.source().expect("a source");
        let status = source.downcast_ref::<kube::core::Status>().expect("the Status");
        assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
        // A transport error keeps its message.
        let transport = cause_of(&kube::Error::Service("connection reset".into()));
        assert!(transport.to_string().contains("connection reset"), "{transport}");
    }
}
