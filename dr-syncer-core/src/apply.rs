//! The [`Applier`] trait: how desired objects reach the DR side.

use kube::core::DynamicObject;

use crate::resource::{ObjectKey, ResourceType};

/// What applying one object did (or, in plan mode, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectDiff {
    /// Changed fields as JSON pointers with old and new values (rendered as JSON).
    pub changes: Vec<FieldChange>,
}

/// One changed field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    /// JSON pointer of the field.
    pub path: String,
    /// Old value (`None` when added).
    pub old: Option<String>,
    /// New value (`None` when removed).
    pub new: Option<String>,
}

/// How to apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOptions {
    /// Report the difference instead of writing (plan mode).
    pub dry_run: bool,
}

/// Errors of an applier, for one object.
#[derive(Debug, thiserror::Error)]
#[error("{object}: {message}")]
pub struct ApplyError {
    /// The object.
    pub object: String,
    /// What went wrong.
    pub message: String,
    /// Whether retrying may help.
    pub transient: bool,
}

/// Writes desired objects to the destination.
///
/// # Guarantees
/// - An object that already matches the desired state costs no write (`Unchanged`).
/// - Only the fields dr-syncer manages are written (server-side apply with field manager `dr-syncer`):
///   fields other managers own on the DR side are left alone.
/// - Nothing is deleted unless the user asked for it: [`Applier::delete`] is called for prune and
///   deletion policies only, and `Recreated` happens only under a recreate policy.
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
}
