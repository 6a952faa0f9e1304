//! Failure categories: what kind of problem a failure is, so a mapping's `failureHandling` can decide what
//! to do about it (retry with backoff, wait for the next sync, or stop at once).

use serde::Serialize;

use crate::api::{FailureHandlingConfig, FailureMode};

/// The `failureHandling` category of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum FailureCategory {
    /// A PersistentVolumeClaim names a StorageClass the DR cluster does not have.
    StorageClassNotFound,
    /// Something the sync needs does not exist (the source namespace, a referenced object, a type).
    ResourceNotFound,
    /// The DR side (or dr-syncer itself) refused an object or the configuration as invalid.
    ValidationFailure,
    /// The network or the API server was unavailable, slow or throttling (429, 5xx, timeouts).
    NetworkError,
    /// Anything else (e.g. a permission the kubeconfig lacks).
    #[default]
    Other,
}

impl FailureCategory {
    /// Every category, in `failureHandling`'s order.
    pub const ALL: [FailureCategory; 5] = [
        FailureCategory::StorageClassNotFound,
        FailureCategory::ResourceNotFound,
        FailureCategory::ValidationFailure,
        FailureCategory::NetworkError,
        FailureCategory::Other,
    ];

    /// The category's name as `failureHandling` spells it (`networkError` …); `other` for the rest.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCategory::StorageClassNotFound => "storageClassNotFound",
            FailureCategory::ResourceNotFound => "resourceNotFound",
            FailureCategory::ValidationFailure => "validationFailure",
            FailureCategory::NetworkError => "networkError",
            FailureCategory::Other => "other",
        }
    }

    /// The category of an HTTP status code of the Kubernetes API (`0`: no response at all).
    pub fn from_status(code: u16) -> FailureCategory {
        match code {
            0 | 408 | 429 | 500..=599 => FailureCategory::NetworkError,
            400 | 409 | 413 | 415 | 422 => FailureCategory::ValidationFailure,
            404 | 410 => FailureCategory::ResourceNotFound,
            _ => FailureCategory::Other,
        }
    }

    /// What `handling` says to do about a failure of this category (`defaultMode` for `Other`).
    pub fn mode(self, handling: &FailureHandlingConfig) -> FailureMode {
        match self {
            FailureCategory::StorageClassNotFound => handling.storage_class_not_found,
            FailureCategory::ResourceNotFound => handling.resource_not_found,
            FailureCategory::ValidationFailure => handling.validation_failure,
            FailureCategory::NetworkError => handling.network_error,
            FailureCategory::Other => handling.default_mode,
        }
    }
}

/// The categories `handling` sets to `FailFast`: a sync stops at the first failure of one of them.
pub fn fail_fast_categories(handling: &FailureHandlingConfig) -> Vec<FailureCategory> {
    FailureCategory::ALL
        .into_iter()
        .filter(|c| c.mode(handling) == FailureMode::FailFast)
        .collect()
}

/// How a sync that failed with failures of `categories` is retried: `RetryOnly` when any category says
/// so (retries until `retryConfig` gives up), else `RetryAndWait` when any does (retries, then waits for
/// the next sync), else `None` (no retry: `FailFast` only).
pub fn retry_mode(
    categories: impl IntoIterator<Item = FailureCategory>,
    handling: &FailureHandlingConfig,
) -> Option<FailureMode> {
    let modes: Vec<FailureMode> = categories.into_iter().map(|c| c.mode(handling)).collect();
    [FailureMode::RetryOnly, FailureMode::RetryAndWait]
        .into_iter()
        .find(|m| modes.contains(m))
}

impl std::fmt::Display for FailureCategory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case(0, FailureCategory::NetworkError)]
    #[case(429, FailureCategory::NetworkError)]
    #[case(503, FailureCategory::NetworkError)]
    #[case(422, FailureCategory::ValidationFailure)]
    #[case(400, FailureCategory::ValidationFailure)]
    #[case(404, FailureCategory::ResourceNotFound)]
    #[case(403, FailureCategory::Other)]
    fn statuses(#[case] code: u16, #[case] want: FailureCategory) {
        assert_eq!(FailureCategory::from_status(code), want);
    }

    #[test]
    fn modes_follow_the_mapping_defaults() {
        let h = FailureHandlingConfig::default();
        assert_eq!(FailureCategory::NetworkError.mode(&h), FailureMode::RetryAndWait);
        assert_eq!(
            FailureCategory::StorageClassNotFound.mode(&h),
            FailureMode::WaitForNextSync
        );
        assert_eq!(FailureCategory::ResourceNotFound.mode(&h), FailureMode::FailFast);
        assert_eq!(FailureCategory::ValidationFailure.mode(&h), FailureMode::FailFast);
        assert_eq!(FailureCategory::Other.mode(&h), FailureMode::RetryAndWait);
    }

    #[test]
    fn fail_fast_categories_are_those_set_to_fail_fast() {
        let mut h = FailureHandlingConfig::default();
        assert_eq!(
            fail_fast_categories(&h),
            vec![
                FailureCategory::ResourceNotFound,
                FailureCategory::ValidationFailure
            ]
        );
        h.network_error = FailureMode::FailFast;
        h.resource_not_found = FailureMode::RetryOnly;
        assert_eq!(
            fail_fast_categories(&h),
            vec![FailureCategory::ValidationFailure, FailureCategory::NetworkError]
        );
    }

    #[rstest]
    // No failure: no retry.
    #[case(&[], None)]
    // FailFast and WaitForNextSync categories: no retry.
    #[case(&[FailureCategory::ValidationFailure, FailureCategory::StorageClassNotFound], None)]
    #[case(&[FailureCategory::NetworkError], Some(FailureMode::RetryAndWait))]
    // RetryOnly wins over RetryAndWait, whatever the order.
    #[case(&[FailureCategory::NetworkError, FailureCategory::ResourceNotFound], Some(FailureMode::RetryOnly))]
    #[case(&[FailureCategory::ResourceNotFound, FailureCategory::Other], Some(FailureMode::RetryOnly))]
    fn retry_mode_prefers_retry_only(
        #[case] categories: &[FailureCategory],
        #[case] want: Option<FailureMode>,
    ) {
        let h = FailureHandlingConfig {
            resource_not_found: FailureMode::RetryOnly,
            ..FailureHandlingConfig::default()
        };
        assert_eq!(retry_mode(categories.iter().copied(), &h), want);
    }
}
