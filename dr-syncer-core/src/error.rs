//! The error type of dr-syncer-core.
//!
//! Each part of the pipeline has its own error type, scoped to what it knows (a [`TransformError`] names the
//! object and transformer, an [`ApplyError`] the object and whether a retry may help …); [`Error`] gathers
//! them for callers that drive the whole pipeline, with a stable [`Error::kind`] for metric labels, event
//! reasons and exit codes, and [`Error::is_transient`] to choose between retrying and reporting.

#[cfg(feature = "client")]
pub mod kube_api;

use crate::{
    apply::ApplyError, config::ConfigProblems, data::DataMoverError, failure::FailureCategory,
    selection::UnknownResourceTypes, source::SourceError, transform::TransformError,
};

/// Result alias with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in dr-syncer-core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The user's configuration is invalid; retrying will not help until it changes.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A mapping's spec has problems (all of them are listed).
    #[error("invalid mapping: {0}")]
    Config(#[from] ConfigProblems),
    /// Requested resource types the server does not know.
    #[error(transparent)]
    UnknownResourceTypes(#[from] UnknownResourceTypes),
    /// A JSON document could not be encoded or decoded.
    #[error("{context}: {source}")]
    Json {
        /// What was being encoded or decoded.
        context: String,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// Reading the source failed.
    #[error("source: {0}")]
    Source(#[from] SourceError),
    /// A transformer could not handle an object.
    #[error("transform: {0}")]
    Transform(#[from] TransformError),
    /// A transformer plugin a mapping names cannot be used.
    #[error(transparent)]
    Plugin(#[from] crate::plugin::PluginError),
    /// Applying an object to the destination failed.
    #[error("apply: {0}")]
    Apply(#[from] ApplyError),
    /// Moving volume data failed.
    #[error("data: {0}")]
    Data(#[from] DataMoverError),
    /// Waiting for something took too long.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The recorded site state forbids what was asked ([`crate::site`]): e.g. a stage onto an active DR
    /// site, a failback while both sites are active.
    #[error("{action} refused: {reason}")]
    Refused {
        /// What was asked.
        action: String,
        /// Why the site state forbids it.
        reason: crate::site::Reason,
    },
    /// The source namespace is on another cluster than the one the DR namespace was filled from (its
    /// `kube-system` UID differs from the one recorded in `dr-syncer.io/source-cluster-uid`): a
    /// kubeconfig re-pointed at the wrong cluster, or a rebuilt production. Nothing is written until the
    /// new cluster is accepted.
    #[error(
        "the source cluster changed: DR namespace {namespace} was filled from the cluster whose kube-system UID is \
         {recorded}, but the source now is {found}; nothing is written until the new cluster is accepted"
    )]
    ClusterIdentityChanged {
        /// The DR namespace.
        namespace: String,
        /// The UID it records.
        recorded: String,
        /// The source's UID now.
        found: String,
    },
    /// A drill finished its steps but left something as it must not be (e.g. a workload quieted on one
    /// side is not active on the other).
    #[error("incomplete: {0}")]
    Incomplete(String),
    /// A drill was interrupted (SIGINT/SIGTERM) at a safe point; what it recorded lets a re-run resume.
    #[error("interrupted {0}")]
    Interrupted(String),
    /// A protected namespace or an out-of-bounds reference ([`crate::boundaries`]): nothing was read or
    /// written.
    #[error(transparent)]
    Boundary(#[from] crate::boundaries::BoundaryError),
    /// A kubeconfig could not be read, parsed or used.
    #[error("invalid kubeconfig: {0}")]
    Kubeconfig(String),
    /// A Kubernetes API request failed.
    #[cfg(feature = "client")]
    #[error("{context}: {source}")]
    Kube {
        /// What was being done.
        context: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
}

impl Error {
    /// A Kubernetes API error with what was being done.
    #[cfg(feature = "client")]
    pub fn kube(context: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

impl Error {
    /// The `failureHandling` category (what a mapping's `failureHandling` decides about).
    pub fn category(&self) -> FailureCategory {
        match self {
            Error::InvalidConfig(_)
            | Error::Config(_)
            | Error::Json { .. }
            | Error::Transform(_)
            | Error::Plugin(_) => FailureCategory::ValidationFailure,
            Error::UnknownResourceTypes(_) => FailureCategory::ResourceNotFound,
            Error::Source(e) => e.category,
            Error::Apply(e) => e.category,
            Error::Data(e) if e.is_transient() => FailureCategory::NetworkError,
            Error::Data(_) | Error::Kubeconfig(_) | Error::Incomplete(_) | Error::Interrupted(_) => {
                FailureCategory::Other
            }
            Error::Refused { .. } | Error::ClusterIdentityChanged { .. } | Error::Boundary(_) => {
                FailureCategory::ValidationFailure
            }
            Error::Timeout(_) => FailureCategory::NetworkError,
            #[cfg(feature = "client")]
            Error::Kube { source, .. } => kube_api::category_of(source),
        }
    }

    /// A short, stable name of the error's category, used as a metric label, an event reason and to choose
    /// exit codes. Never changes for an existing variant.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidConfig(_) | Error::Config(_) => "InvalidConfig",
            Error::UnknownResourceTypes(_) => "UnknownResourceType",
            Error::Json { .. } => "Json",
            Error::Source(_) => "SourceFailed",
            Error::Transform(_) => "TransformFailed",
            Error::Plugin(e) => e.kind(),
            Error::Apply(_) => "ApplyFailed",
            Error::Data(e) => e.kind(),
            Error::Kubeconfig(_) => "InvalidKubeconfig",
            Error::Boundary(e) => e.kind(),
            Error::Timeout(_) => "Timeout",
            Error::Refused { .. } => "Refused",
            Error::ClusterIdentityChanged { .. } => "ClusterIdentityChanged",
            Error::Incomplete(_) => "Incomplete",
            Error::Interrupted(_) => "Interrupted",
            #[cfg(feature = "client")]
            Error::Kube { source, .. } => kube_api::kind_of(source),
        }
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::InvalidConfig(_)
            | Error::Config(_)
            | Error::UnknownResourceTypes(_)
            | Error::Json { .. }
            | Error::Transform(_)
            | Error::Plugin(_) => false,
            Error::Source(e) => e.transient,
            Error::Apply(e) => e.transient,
            Error::Data(e) => e.is_transient(),
            Error::Kubeconfig(_)
            | Error::Boundary(_)
            | Error::Refused { .. }
            | Error::Incomplete(_)
            | Error::ClusterIdentityChanged { .. } => false,
            Error::Timeout(_) | Error::Interrupted(_) => true,
            #[cfg(feature = "client")]
            Error::Kube { source, .. } => kube_api::is_retryable(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::config::ConfigProblem;

    fn source(transient: bool) -> Error {
        SourceError::new("list configmaps", "boom", transient).into()
    }

    fn apply(transient: bool) -> Error {
        ApplyError::new("ConfigMap app/x", "boom", transient).into()
    }

    #[rstest]
    #[case(Error::InvalidConfig("x".into()), "InvalidConfig", false)]
    #[case(ConfigProblems(vec![ConfigProblem { field: "spec.a".into(), message: "bad".into() }]).into(), "InvalidConfig", false)]
    #[case(UnknownResourceTypes(vec!["widgets".into()]).into(), "UnknownResourceType", false)]
    #[case(Error::Json { context: "c".into(), source: serde_json::from_str::<u8>("x").unwrap_err() }, "Json", false)]
    #[case(source(true), "SourceFailed", true)]
    #[case(source(false), "SourceFailed", false)]
    #[case(TransformError { transformer: "t".into(), object: "o".into(), message: "m".into() }.into(), "TransformFailed", false)]
    #[case(apply(true), "ApplyFailed", true)]
    #[case(apply(false), "ApplyFailed", false)]
    #[case(DataMoverError::HostKeyMismatch { host: "h".into() }.into(), "HostKeyMismatch", false)]
    #[case(DataMoverError::Failed { message: "m".into(), transient: true }.into(), "TransferFailed", true)]
    #[case(DataMoverError::InvalidRequest("r".into()).into(), "InvalidTransferRequest", false)]
    #[case(DataMoverError::Verification("v".into()).into(), "VerificationFailed", true)]
    #[case(Error::Refused { action: "stage".into(), reason: crate::site::Reason::DestinationActive }, "Refused", false)]
    #[case(Error::Incomplete("w".into()), "Incomplete", false)]
    #[case(Error::ClusterIdentityChanged { namespace: "a".into(), recorded: "1".into(), found: "2".into() }, "ClusterIdentityChanged", false)]
    #[case(Error::Interrupted("during x".into()), "Interrupted", true)]
    fn kinds_are_stable(#[case] err: Error, #[case] kind: &str, #[case] transient: bool) {
        assert_eq!(err.kind(), kind);
        assert_eq!(err.is_transient(), transient);
        assert!(!err.to_string().is_empty());
    }

    #[test]
    fn config_problems_are_all_in_the_message() {
        let err: Error = ConfigProblems(vec![
            ConfigProblem {
                field: "spec.a".into(),
                message: "bad".into(),
            },
            ConfigProblem {
                field: "spec.b".into(),
                message: "worse".into(),
            },
        ])
        .into();
        assert_eq!(err.to_string(), "invalid mapping: spec.a: bad; spec.b: worse");
    }
}
