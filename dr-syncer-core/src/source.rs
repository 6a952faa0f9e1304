//! The [`ResourceSource`] trait: where objects to replicate come from.

use std::pin::Pin;

use futures::Stream;
use kube::core::DynamicObject;

use crate::resource::ResourceType;

/// A boxed, sendable stream (the return type of [`ResourceSource::watch`]).
pub type BoxStream<'a, T> = Pin<Box<dyn Stream<Item = T> + Send + 'a>>;

/// What to read: types within one namespace (or cluster-scoped types when `namespace` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceScope {
    /// The namespace, or `None` for cluster-scoped types (e.g. CRDs); a watch or list of a namespaced type
    /// with `None` reads it across all namespaces.
    pub namespace: Option<String>,
    /// The types to read, already resolved by [`crate::selection`].
    pub types: Vec<ResourceType>,
}

/// One object read from the source, with its type.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceObject {
    /// The object's type.
    pub resource: ResourceType,
    /// The object as the source server returned it.
    pub object: DynamicObject,
}

/// A change seen by [`ResourceSource::watch`].
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    /// Created or changed (also emitted for every object after a re-list).
    Applied(SourceObject),
    /// Deleted.
    Deleted(SourceObject),
    /// The watch of this type re-listed (at the start, after a restart or a 410 Gone): the objects of the
    /// type that follow until [`SourceEvent::Resynced`] are its complete current state; anything not among
    /// them is gone.
    Relisting(ResourceType),
    /// The re-list of this type is complete.
    Resynced(ResourceType),
}

/// Errors of a source.
#[derive(Debug, Clone)]
pub struct SourceError {
    /// What was being read.
    pub context: String,
    /// What went wrong.
    pub message: String,
    /// Whether retrying may help (network, 5xx, 429).
    pub transient: bool,
    /// The `failureHandling` category.
    pub category: crate::failure::FailureCategory,
    /// The error underneath, when there is one (e.g. the API server's `Status`): the error's `source()`.
    pub cause: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.context, self.message)
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl SourceError {
    /// An error reading `context`; its category follows from `transient` (network or other).
    pub fn new(context: impl Into<String>, message: impl Into<String>, transient: bool) -> Self {
        SourceError {
            context: context.into(),
            message: message.into(),
            transient,
            category: if transient {
                crate::failure::FailureCategory::NetworkError
            } else {
                crate::failure::FailureCategory::Other
            },
            cause: None,
        }
    }

    /// The same error, caused by `cause` (kept as its `source()`).
    pub fn with_cause(mut self, cause: std::sync::Arc<dyn std::error::Error + Send + Sync>) -> Self {
        self.cause = Some(cause);
        self
    }

    /// Whether the API server refused the request as forbidden (403): the identity lacks a permission.
    pub fn is_forbidden(&self) -> bool {
        self.cause
            .as_deref()
            .and_then(|c| c.downcast_ref::<kube::core::Status>())
            .is_some_and(|s| s.code == 403)
    }

    /// The same error in `category`.
    pub fn with_category(mut self, category: crate::failure::FailureCategory) -> Self {
        self.category = category;
        self
    }
}

/// Reads the selected objects of a namespace and watches them.
///
/// # Guarantees
/// - `list` returns every object of the scope's types at one point in time per type (no pagination gaps).
/// - `watch` never ends on its own: after disconnects, restarts of the API server and 410 Gone it resumes,
///   re-listing when it must (signalled by [`SourceEvent::Relisting`] / [`SourceEvent::Resynced`]), so a
///   consumer that applies every event sees every change or its final state.
///
/// # Caveats
/// Selection by label or name is the caller's job ([`crate::selection::ObjectFilter`]); a source returns
/// everything of the requested types.
///
/// # Errors
/// `list` fails with a [`SourceError`]; `watch` yields errors as items (marked transient or not) and keeps
/// going after transient ones.
#[cfg_attr(test, mockall::automock)]
#[async_trait::async_trait]
pub trait ResourceSource: Send + Sync {
    /// List the scope's objects.
    async fn list(&self, scope: &SourceScope) -> Result<Vec<SourceObject>, SourceError>;

    /// Watch the scope's objects.
    fn watch(&self, scope: &SourceScope) -> BoxStream<'static, Result<SourceEvent, SourceError>>;

    /// Get one object (`namespace` `None` for cluster-scoped types); `Ok(None)` when it does not exist.
    async fn get<'a>(
        &self,
        resource: &ResourceType,
        namespace: Option<&'a str>,
        name: &str,
    ) -> Result<Option<DynamicObject>, SourceError>;
}

#[async_trait::async_trait]
impl<T: ResourceSource + ?Sized> ResourceSource for Box<T> {
    async fn list(&self, scope: &SourceScope) -> Result<Vec<SourceObject>, SourceError> {
        (**self).list(scope).await
    }
    fn watch(&self, scope: &SourceScope) -> BoxStream<'static, Result<SourceEvent, SourceError>> {
        (**self).watch(scope)
    }
    async fn get<'a>(
        &self,
        r: &ResourceType,
        ns: Option<&'a str>,
        name: &str,
    ) -> Result<Option<DynamicObject>, SourceError> {
        (**self).get(r, ns, name).await
    }
}

#[async_trait::async_trait]
impl<T: ResourceSource + ?Sized> ResourceSource for std::sync::Arc<T> {
    async fn list(&self, scope: &SourceScope) -> Result<Vec<SourceObject>, SourceError> {
        (**self).list(scope).await
    }
    fn watch(&self, scope: &SourceScope) -> BoxStream<'static, Result<SourceEvent, SourceError>> {
        (**self).watch(scope)
    }
    async fn get<'a>(
        &self,
        r: &ResourceType,
        ns: Option<&'a str>,
        name: &str,
    ) -> Result<Option<DynamicObject>, SourceError> {
        (**self).get(r, ns, name).await
    }
}

#[async_trait::async_trait]
impl<T: ResourceSource + ?Sized> ResourceSource for &T {
    async fn list(&self, scope: &SourceScope) -> Result<Vec<SourceObject>, SourceError> {
        (**self).list(scope).await
    }
    fn watch(&self, scope: &SourceScope) -> BoxStream<'static, Result<SourceEvent, SourceError>> {
        (**self).watch(scope)
    }
    async fn get<'a>(
        &self,
        r: &ResourceType,
        ns: Option<&'a str>,
        name: &str,
    ) -> Result<Option<DynamicObject>, SourceError> {
        (**self).get(r, ns, name).await
    }
}
