//! Trust boundaries (pure): which namespaces a mapping may never touch, and where a resource's references
//! may point.
//!
//! - **Protected namespaces** (`kube-system`, `kube-public`, `kube-node-lease`, the operator's own, and
//!   any a platform adds) are never a source or a destination of a sync, never pruned and never deleted:
//!   a selector that matches `kube-system` with an empty suffix would otherwise overwrite the DR
//!   cluster's own system objects.
//! - **References stay home:** a resource may name Secrets and mappings only in its own namespace, the
//!   operator's namespace, or namespaces the platform allowed. A NamespaceMapping author in `team-a`
//!   must not make the operator read another team's Secret with the operator's rights.

use std::collections::BTreeSet;

/// The namespaces every cluster's control plane owns.
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// The default operator namespace (when neither `--operator-namespace` nor `POD_NAMESPACE` says).
pub const DEFAULT_OPERATOR_NAMESPACE: &str = "dr-syncer";

/// Why a namespace or a reference is out of bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundaryError {
    /// A protected namespace was named as a source or destination.
    #[error(
        "{role} namespace {namespace} is protected: dr-syncer never syncs from or into, prunes or deletes \
         kube-system, kube-public, kube-node-lease, its own namespace or those added with --protected-namespace"
    )]
    ProtectedNamespace {
        /// `source`, `destination`.
        role: String,
        /// The namespace.
        namespace: String,
    },
    /// A reference points into a namespace it may not.
    #[error(
        "{what} {namespace}/{name} is in another namespace: a resource in {from} may reference only its own \
         namespace, the operator's namespace ({operator}), or namespaces allowed with \
         --allow-reference-namespace"
    )]
    ReferenceNotAllowed {
        /// What is referenced (`Secret`, `ClusterMapping` …).
        what: String,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The namespace of the resource that references it.
        from: String,
        /// The operator's namespace.
        operator: String,
    },
}

impl BoundaryError {
    /// A stable name (condition reasons, events, metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            BoundaryError::ProtectedNamespace { .. } => "ProtectedNamespace",
            BoundaryError::ReferenceNotAllowed { .. } => "ReferenceNotAllowed",
        }
    }
}

/// The boundaries of one operator (or CLI run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boundaries {
    operator_namespace: String,
    reference_namespaces: BTreeSet<String>,
    protected: BTreeSet<String>,
}

impl Default for Boundaries {
    fn default() -> Self {
        Boundaries::new(DEFAULT_OPERATOR_NAMESPACE)
    }
}

impl Boundaries {
    /// The system namespaces and `operator_namespace` protected; references allowed into their own
    /// namespace and `operator_namespace`.
    pub fn new(operator_namespace: &str) -> Self {
        let mut protected: BTreeSet<String> = SYSTEM_NAMESPACES.iter().map(|s| (*s).to_owned()).collect();
        protected.insert(operator_namespace.to_owned());
        Boundaries {
            operator_namespace: operator_namespace.to_owned(),
            reference_namespaces: BTreeSet::new(),
            protected,
        }
    }

    /// Only the system namespaces protected (a CLI run, which has no operator namespace).
    pub fn system_only() -> Self {
        Boundaries {
            operator_namespace: String::new(),
            reference_namespaces: BTreeSet::new(),
            protected: SYSTEM_NAMESPACES.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// Also allow references into `namespaces`.
    #[must_use]
    pub fn allowing_references_to(mut self, namespaces: impl IntoIterator<Item = String>) -> Self {
        self.reference_namespaces.extend(namespaces);
        self
    }

    /// Also protect `namespaces`.
    #[must_use]
    pub fn protecting(mut self, namespaces: impl IntoIterator<Item = String>) -> Self {
        self.protected.extend(namespaces);
        self
    }

    /// The operator's namespace.
    pub fn operator_namespace(&self) -> &str {
        &self.operator_namespace
    }

    /// The protected namespaces.
    pub fn protected(&self) -> impl Iterator<Item = &str> {
        self.protected.iter().map(String::as_str)
    }

    /// Whether `namespace` is protected.
    pub fn is_protected(&self, namespace: &str) -> bool {
        self.protected.contains(namespace)
    }

    /// Check that `namespace` may be a sync's `role` (`source`, `destination`).
    ///
    /// # Errors
    /// [`BoundaryError::ProtectedNamespace`].
    pub fn check_namespace(&self, role: &str, namespace: &str) -> Result<(), BoundaryError> {
        if self.is_protected(namespace) {
            return Err(BoundaryError::ProtectedNamespace {
                role: role.to_owned(),
                namespace: namespace.to_owned(),
            });
        }
        Ok(())
    }

    /// Check that a sync from namespace `source` into `destination` touches no protected namespace.
    ///
    /// # Errors
    /// [`BoundaryError::ProtectedNamespace`], naming the side.
    pub fn check_pair(&self, source: &str, destination: &str) -> Result<(), BoundaryError> {
        self.check_namespace("source", source)?;
        self.check_namespace("destination", destination)
    }

    /// Check a reference from a resource in namespace `from` to `what` `namespace/name`.
    ///
    /// # Errors
    /// [`BoundaryError::ReferenceNotAllowed`] outside `from`, the operator's namespace and the allowed
    /// ones.
    pub fn check_reference(
        &self,
        from: &str,
        what: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(), BoundaryError> {
        if namespace == from
            || namespace == self.operator_namespace
            || self.reference_namespaces.contains(namespace)
        {
            return Ok(());
        }
        Err(BoundaryError::ReferenceNotAllowed {
            what: what.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            from: from.to_owned(),
            operator: self.operator_namespace.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case("kube-system", true)]
    #[case("kube-public", true)]
    #[case("kube-node-lease", true)]
    #[case("dr-ops", true)] // the operator's own
    #[case("payments", true)] // added
    #[case("shop", false)]
    #[case("kube-systemx", false)]
    fn protected_namespaces(#[case] ns: &str, #[case] protected: bool) {
        let b = Boundaries::new("dr-ops").protecting(["payments".to_owned()]);
        assert_eq!(b.is_protected(ns), protected);
        let r = b.check_namespace("destination", ns);
        assert_eq!(r.is_err(), protected);
        if let Err(e) = r {
            assert_eq!(e.kind(), "ProtectedNamespace");
            assert!(
                e.to_string()
                    .contains(&format!("destination namespace {ns} is protected"))
            );
        }
    }

    #[rstest]
    #[case("team-a", true)] // its own
    #[case("dr-ops", true)] // the operator's
    #[case("platform", true)] // allowed
    #[case("team-b", false)]
    #[case("kube-system", false)]
    fn references_stay_home(#[case] to: &str, #[case] allowed: bool) {
        let b = Boundaries::new("dr-ops").allowing_references_to(["platform".to_owned()]);
        let r = b.check_reference("team-a", "Secret", to, "db");
        assert_eq!(r.is_ok(), allowed, "{r:?}");
        if let Err(e) = r {
            assert_eq!(e.kind(), "ReferenceNotAllowed");
            assert!(e.to_string().contains(&format!("Secret {to}/db")), "{e}");
        }
    }

    #[test]
    fn a_cli_run_protects_the_system_namespaces_only() {
        let b = Boundaries::system_only();
        assert!(b.is_protected("kube-system") && !b.is_protected("dr-syncer"));
    }
}
