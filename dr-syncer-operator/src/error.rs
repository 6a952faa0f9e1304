//! The operator's error type, with stable kinds for metrics, events and conditions.

/// Why a RemoteCluster cannot be used. [`ClusterError::reason`] gives the condition reason (the Go
/// operator's reasons where it had them).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    /// The RemoteCluster does not exist.
    #[error("RemoteCluster {0} not found")]
    RemoteClusterNotFound(String),
    /// The ClusterMapping does not exist.
    #[error("ClusterMapping {0} not found")]
    ClusterMappingNotFound(String),
    /// The mapping names no clusters, or names them twice.
    #[error("{0}")]
    ClustersUnspecified(String),
    /// The kubeconfig Secret does not exist.
    #[error("kubeconfig Secret {0} not found")]
    SecretNotFound(String),
    /// The Secret has no such key.
    #[error("kubeconfig Secret {secret} has no key {key:?}")]
    KeyNotFound {
        /// `namespace/name` of the Secret.
        secret: String,
        /// The key.
        key: String,
    },
    /// A reference out of bounds ([`dr_syncer_core::boundaries`]): nothing was read.
    #[error(transparent)]
    Boundary(dr_syncer_core::boundaries::BoundaryError),
    /// The kubeconfig cannot be used.
    #[error("invalid kubeconfig in Secret {secret}: {message}")]
    InvalidKubeconfig {
        /// `namespace/name` of the Secret.
        secret: String,
        /// What is wrong.
        message: String,
    },
    /// The cluster did not answer.
    #[error("cannot connect to cluster {cluster}: {message}")]
    ConnectionFailed {
        /// The RemoteCluster.
        cluster: String,
        /// What happened.
        message: String,
    },
    /// The kubeconfig now reaches another cluster than the one the RemoteCluster is pinned to.
    #[error(
        "RemoteCluster {cluster} reaches another cluster (kube-system UID {found}) than the one it is pinned to \
         ({pinned}): nothing is written through it until it is accepted with `kubectl annotate remotecluster \
         {name} dr-syncer.io/accept-cluster-identity={found}`"
    )]
    IdentityChanged {
        /// The RemoteCluster (`namespace/name`).
        cluster: String,
        /// Its name (for the command).
        name: String,
        /// The pinned UID.
        pinned: String,
        /// The UID reached now.
        found: String,
    },
    /// The controller cluster refused or failed a read (e.g. no permission to read the Secret).
    #[error("{what}: {message}")]
    ControllerApi {
        /// What was being read.
        what: String,
        /// The error.
        message: String,
        /// Whether retrying may help.
        transient: bool,
    },
}

impl ClusterError {
    /// The condition reason (stable).
    pub fn reason(&self) -> &'static str {
        match self {
            ClusterError::RemoteClusterNotFound(_) => "RemoteClusterNotFound",
            ClusterError::ClusterMappingNotFound(_) => "ClusterMappingNotFound",
            ClusterError::ClustersUnspecified(_) => "ClustersUnspecified",
            ClusterError::SecretNotFound(_) => "KubeconfigSecretNotFound",
            ClusterError::KeyNotFound { .. } => "KubeconfigKeyNotFound",
            ClusterError::InvalidKubeconfig { .. } => "InvalidKubeconfig",
            ClusterError::Boundary(e) => e.kind(),
            ClusterError::ConnectionFailed { .. } => "ConnectionFailed",
            ClusterError::ControllerApi { .. } => "ControllerApiError",
            ClusterError::IdentityChanged { .. } => "ClusterIdentityChanged",
        }
    }

    /// Whether retrying later may help without anyone changing anything. Missing objects may appear
    /// later, so they are retried too (slowly).
    pub fn is_transient(&self) -> bool {
        match self {
            ClusterError::ConnectionFailed { .. } => true,
            ClusterError::ControllerApi { transient, .. } => *transient,
            _ => false,
        }
    }
}

/// Everything a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the controller cluster failed.
    #[error("{context}: {source}")]
    Kube {
        /// What was being done.
        context: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },
    /// The sync machinery failed.
    #[error(transparent)]
    Core(#[from] dr_syncer_core::Error),
    /// A cluster cannot be used.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The finalizer machinery failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// A controller-cluster API error with what was being done.
    pub fn kube(context: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            context: context.into(),
            source: Box::new(source),
        }
    }

    /// A short, stable name of the error's category (metric label, event reason).
    /// A reconcile that failed inside the finalizer machinery has the kind of what failed there (the
    /// sync, the cleanup, the finalizer patch), not a kind of its own.
    pub fn kind(&self) -> &'static str {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Kube { source, .. } => kube_kind(source),
            Error::Core(e) => e.kind(),
            Error::Cluster(e) => e.reason(),
            Error::Finalizer(f) => match f.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.kind(),
                F::AddFinalizer(e) | F::RemoveFinalizer(e) => kube_kind(e),
                _ => "Finalizer",
            },
        }
    }
}

/// The kind of a controller-cluster API error.
fn kube_kind(e: &kube::Error) -> &'static str {
    match e {
        kube::Error::Api(s) if s.code == 403 || s.code == 401 => "Unauthorized",
        kube::Error::Api(s) if s.code == 404 => "NotFound",
        kube::Error::Api(s) if s.code == 409 => "Conflict",
        kube::Error::Api(_) => "KubeApi",
        _ => "Connection",
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_stable() {
        let e = Error::from(ClusterError::KeyNotFound {
            secret: "dr/kc".into(),
            key: "kubeconfig".into(),
        });
        assert_eq!(e.kind(), "KubeconfigKeyNotFound");
        assert_eq!(e.to_string(), "kubeconfig Secret dr/kc has no key \"kubeconfig\"");
        let e = Error::from(dr_syncer_core::Error::InvalidConfig("x".into()));
        assert_eq!(e.kind(), "InvalidConfig");
        assert!(
            ClusterError::ConnectionFailed {
                cluster: "a".into(),
                message: "b".into()
            }
            .is_transient()
        );
        assert!(!ClusterError::SecretNotFound("a".into()).is_transient());
        // Through the finalizer machinery, the kind of what failed.
        let e = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(
            Error::from(dr_syncer_core::Error::InvalidConfig("x".into())),
        )));
        assert_eq!(e.kind(), "InvalidConfig");
        let e = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::CleanupFailed(
            Error::from(ClusterError::SecretNotFound("a".into())),
        )));
        assert_eq!(e.kind(), ClusterError::SecretNotFound("a".into()).reason());
        assert_eq!(
            Error::Finalizer(Box::new(kube::runtime::finalizer::Error::UnnamedObject)).kind(),
            "Finalizer"
        );
    }
}
