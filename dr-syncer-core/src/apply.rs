//! The [`Applier`] trait: how desired objects reach the DR side.

use kube::core::DynamicObject;

use crate::{
    config::ImmutablePolicy,
    failure::FailureCategory,
    resource::{ObjectKey, ResourceType},
};

/// What applying one object did (or, in plan mode, would do).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "action", content = "reason")]
pub enum ApplyAction {
    /// The object did not exist and was created.
    Created,
    /// The object existed and differed; it was updated.
    Updated,
    /// The object already matched; nothing was written.
    Unchanged,
    /// An immutable field changed and the object was deleted and created again (per the user's policy).
    Recreated,
    /// Not applied, for the given reason (e.g. an immutable change under the `NoChange` policy).
    Skipped(String),
    /// Deleted (prune, or a deletion policy).
    Deleted,
}

/// The result of [`Applier::apply`].
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyResult {
    /// What happened.
    pub action: ApplyAction,
    /// In plan mode (and when the applier computes it), the difference between the live and desired object.
    pub diff: Option<ObjectDiff>,
}

/// A difference between the live DR object and the desired one.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ObjectDiff {
    /// Changed fields as JSON pointers with old and new values (rendered as JSON).
    pub changes: Vec<FieldChange>,
}

/// One changed field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldChange {
    /// JSON pointer of the field.
    pub path: String,
    /// Old value (`None` when added).
    pub old: Option<String>,
    /// New value (`None` when removed).
    pub new: Option<String>,
}

/// How to apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Report the difference instead of writing (plan mode).
    pub dry_run: bool,
    /// What to do when a change hits an immutable field (the mapping's `immutableResourceConfig`).
    pub immutable: std::sync::Arc<ImmutablePolicy>,
    /// Take over an existing object that dr-syncer did not put there (no `dr-syncer.io/synced-by`).
    /// Without it such an object is left alone: [`ApplyAction::Skipped`] with [`NOT_MANAGED`].
    pub adopt: bool,
}

/// Why an existing DR object dr-syncer did not create is left alone.
pub const NOT_MANAGED: &str = "exists, not managed by dr-syncer (no dr-syncer.io/synced-by): left alone; set \
     adoptExisting: true on the mapping (--adopt-existing in the CLI) to take it over";

impl ApplyOptions {
    /// Plan mode: report, do not write.
    pub fn plan() -> Self {
        ApplyOptions {
            dry_run: true,
            ..Default::default()
        }
    }
}

/// Errors of an applier, for one object.
#[derive(Debug, Clone)]
pub struct ApplyError {
    /// The object.
    pub object: String,
    /// What went wrong.
    pub message: String,
    /// Whether retrying may help.
    pub transient: bool,
    /// The `failureHandling` category.
    pub category: FailureCategory,
    /// The error underneath, when there is one (e.g. the API server's `Status`): the error's `source()`.
    pub cause: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object, self.message)
    }
}

impl std::error::Error for ApplyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl ApplyError {
    /// An error about `object`; its category follows from `transient` (network or other).
    pub fn new(object: impl std::fmt::Display, message: impl Into<String>, transient: bool) -> Self {
        ApplyError {
            object: object.to_string(),
            message: message.into(),
            transient,
            category: if transient {
                FailureCategory::NetworkError
            } else {
                FailureCategory::Other
            },
            cause: None,
        }
    }

    /// The same error, caused by `cause` (kept as its `source()`).
    pub fn with_cause(mut self, cause: std::sync::Arc<dyn std::error::Error + Send + Sync>) -> Self {
        self.cause = Some(cause);
        self
    }

    /// The same error in `category`.
    pub fn with_category(mut self, category: FailureCategory) -> Self {
        self.category = category;
        self
    }
}

/// Writes desired objects to the destination.
///
/// # Guarantees
/// - An object that already matches the desired state costs no write (`Unchanged`).
/// - Only the fields dr-syncer manages are written (field manager `dr-syncer`): fields other managers own
///   on the DR side are left alone.
/// - Nothing is deleted unless the user asked for it: [`Applier::delete`] is called for prune and
///   deletion policies only, and `Recreated` happens only under a recreate policy.
/// - An existing object dr-syncer did not create (no `dr-syncer.io/synced-by`) is not changed unless
///   [`ApplyOptions::adopt`] says so (Namespaces excepted: dr-syncer writes only its own fields there).
///
/// # Errors
/// Per object: an [`ApplyError`] concerns that object alone; callers carry on with the others.
#[cfg_attr(test, mockall::automock)]
#[async_trait::async_trait]
pub trait Applier: Send + Sync {
    /// Apply one desired object of type `resource`.
    async fn apply(
        &self,
        resource: &ResourceType,
        desired: &DynamicObject,
        options: ApplyOptions,
    ) -> Result<ApplyResult, ApplyError>;

    /// Delete one object (idempotent: a missing object is not an error). Returns whether it existed.
    async fn delete(
        &self,
        resource: &ResourceType,
        key: &ObjectKey,
        options: ApplyOptions,
    ) -> Result<bool, ApplyError>;

    /// The live object on the destination, if it exists (from the applier's cache when it has one).
    async fn live(
        &self,
        resource: &ResourceType,
        key: &ObjectKey,
    ) -> Result<Option<DynamicObject>, ApplyError>;

    /// The destination objects of `resource` in `namespace` (`None`: cluster-scoped) whose
    /// `dr-syncer.io/synced-by` annotation is `synced_by` — the only objects prune may delete.
    async fn list_managed<'a>(
        &self,
        resource: &ResourceType,
        namespace: Option<&'a str>,
        synced_by: &str,
    ) -> Result<Vec<DynamicObject>, ApplyError>;

    /// Get ready to apply objects of `types` in `namespace`: an applier with a cache of live objects fills
    /// it here (one list per type) so that [`Applier::apply`] can tell unchanged objects apart without a
    /// request each. The default does nothing.
    async fn prepare<'a>(
        &self,
        namespace: Option<&'a str>,
        types: &[ResourceType],
    ) -> Result<(), ApplyError> {
        let _ = (namespace, types);
        Ok(())
    }
}

#[async_trait::async_trait]
impl<T: Applier + ?Sized> Applier for Box<T> {
    async fn apply(
        &self,
        r: &ResourceType,
        d: &DynamicObject,
        o: ApplyOptions,
    ) -> Result<ApplyResult, ApplyError> {
        (**self).apply(r, d, o).await
    }
    async fn delete(&self, r: &ResourceType, k: &ObjectKey, o: ApplyOptions) -> Result<bool, ApplyError> {
        (**self).delete(r, k, o).await
    }
    async fn live(&self, r: &ResourceType, k: &ObjectKey) -> Result<Option<DynamicObject>, ApplyError> {
        (**self).live(r, k).await
    }
    async fn list_managed<'a>(
        &self,
        r: &ResourceType,
        ns: Option<&'a str>,
        by: &str,
    ) -> Result<Vec<DynamicObject>, ApplyError> {
        (**self).list_managed(r, ns, by).await
    }
    async fn prepare<'a>(&self, ns: Option<&'a str>, types: &[ResourceType]) -> Result<(), ApplyError> {
        (**self).prepare(ns, types).await
    }
}

#[async_trait::async_trait]
impl<T: Applier + ?Sized> Applier for std::sync::Arc<T> {
    async fn apply(
        &self,
        r: &ResourceType,
        d: &DynamicObject,
        o: ApplyOptions,
    ) -> Result<ApplyResult, ApplyError> {
        (**self).apply(r, d, o).await
    }
    async fn delete(&self, r: &ResourceType, k: &ObjectKey, o: ApplyOptions) -> Result<bool, ApplyError> {
        (**self).delete(r, k, o).await
    }
    async fn live(&self, r: &ResourceType, k: &ObjectKey) -> Result<Option<DynamicObject>, ApplyError> {
        (**self).live(r, k).await
    }
    async fn list_managed<'a>(
        &self,
        r: &ResourceType,
        ns: Option<&'a str>,
        by: &str,
    ) -> Result<Vec<DynamicObject>, ApplyError> {
        (**self).list_managed(r, ns, by).await
    }
    async fn prepare<'a>(&self, ns: Option<&'a str>, types: &[ResourceType]) -> Result<(), ApplyError> {
        (**self).prepare(ns, types).await
    }
}

#[async_trait::async_trait]
impl<T: Applier + ?Sized> Applier for &T {
    async fn apply(
        &self,
        r: &ResourceType,
        d: &DynamicObject,
        o: ApplyOptions,
    ) -> Result<ApplyResult, ApplyError> {
        (**self).apply(r, d, o).await
    }
    async fn delete(&self, r: &ResourceType, k: &ObjectKey, o: ApplyOptions) -> Result<bool, ApplyError> {
        (**self).delete(r, k, o).await
    }
    async fn live(&self, r: &ResourceType, k: &ObjectKey) -> Result<Option<DynamicObject>, ApplyError> {
        (**self).live(r, k).await
    }
    async fn list_managed<'a>(
        &self,
        r: &ResourceType,
        ns: Option<&'a str>,
        by: &str,
    ) -> Result<Vec<DynamicObject>, ApplyError> {
        (**self).list_managed(r, ns, by).await
    }
    async fn prepare<'a>(&self, ns: Option<&'a str>, types: &[ResourceType]) -> Result<(), ApplyError> {
        (**self).prepare(ns, types).await
    }
}
