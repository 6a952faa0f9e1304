//! The [`Transformer`] trait: pure, synchronous rewriting of one source object into its DR form.
//!
//! A transformer gets an object read from the source cluster and a [`TransformContext`] (clusters,
//! namespaces, the mapping's configuration) and either keeps the object — possibly changed — or drops it with
//! a reason. Transformers compose into a [`TransformerChain`]; closures are transformers too, so a platform
//! team can plug its own rule in with a line:
//!
//! ```
//! use dr_syncer_core::transform::{Outcome, TransformContext, Transformer, TransformerChain};
//! use kube::core::DynamicObject;
//!
//! let label_dr = |mut obj: DynamicObject, _ctx: &TransformContext| {
//!     obj.metadata.labels.get_or_insert_with(Default::default).insert("site".into(), "dr".into());
//!     Ok(Outcome::Keep(obj))
//! };
//! let chain = TransformerChain::builtin().then(label_dr);
//! # let _ = chain;
//! ```
//!
//! Guarantees every built-in transformer gives: no IO, no panics on any input (property-tested), and a
//! [`TransformError`] naming the object when it cannot handle one — never a silently half-changed object.

mod env;
mod ingress;
mod namespace;
mod pvc;
mod quiet;
mod rules;
mod sanitize;
mod service;

pub(crate) use crate::object::{annotate, label, same_identity};
pub use crate::{
    config::CompiledRule,
    object::{TransformError, annotation},
};
use std::{borrow::Cow, fmt, sync::Arc};

use kube::core::DynamicObject;

pub use self::{
    env::TransformEnv, ingress::IngressTransform, namespace::NamespaceMapper, pvc::PvcTransform,
    quiet::QuietDrSite, rules::TransformRules, sanitize::Sanitize, service::ServiceTransform,
};
use crate::{config::SyncConfig, resource::ResourceType};

/// What a transformer decided for one object.
// `Keep` is far larger than `Drop`, but an outcome is consumed right away; boxing would cost an allocation
// per object and transformer.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Apply this (possibly changed) object to the DR side.
    Keep(DynamicObject),
    /// Do not replicate the object.
    Drop {
        /// Why, for reports and logs.
        reason: String,
    },
}

impl Outcome {
    /// Shorthand for [`Outcome::Drop`].
    pub fn drop(reason: impl Into<String>) -> Self {
        Outcome::Drop {
            reason: reason.into(),
        }
    }
}

/// Result of one transformation.
pub type TransformResult = Result<Outcome, TransformError>;

/// Everything a transformer may know besides the object itself.
#[derive(Debug, Clone)]
pub struct TransformContext {
    /// Name of the source cluster.
    pub source_cluster: String,
    /// Name of the destination cluster.
    pub destination_cluster: String,
    /// The source namespace.
    pub source_namespace: String,
    /// The destination namespace.
    pub destination_namespace: String,
    /// The value of `dr-syncer.io/synced-by` (`<ns>/<mapping>` or `cli/<source-namespace>`).
    pub synced_by: String,
    /// The type of the object being transformed.
    pub resource: ResourceType,
    /// The DR namespace is marked active by a cutover: workloads must not be quieted.
    pub destination_active: bool,
    /// The mapping's validated configuration.
    pub config: Arc<SyncConfig>,
}

impl TransformContext {
    /// A context with default configuration, for tests and examples.
    pub fn for_test(resource: ResourceType) -> Self {
        TransformContext {
            source_cluster: "prod".into(),
            destination_cluster: "dr".into(),
            source_namespace: "app".into(),
            destination_namespace: "app-dr".into(),
            synced_by: "dr-syncer/app".into(),
            resource,
            destination_active: false,
            config: Arc::new(SyncConfig::default()),
        }
    }
}

/// Pure, synchronous rewriting of one object for the DR side.
///
/// # Guarantees implementors must give
/// - no IO and no global state: the same input gives the same output;
/// - no panics, whatever the object holds: return a [`TransformError`] instead;
/// - types the transformer does not handle pass through unchanged ([`Outcome::Keep`]).
///
/// # Errors
/// A [`TransformError`] means this one object cannot be replicated; the engine reports it and carries on
/// with the others.
pub trait Transformer: Send + Sync {
    /// A short name for reports and errors.
    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed(std::any::type_name::<Self>())
    }

    /// Transform `obj`.
    fn transform(&self, obj: DynamicObject, ctx: &TransformContext) -> TransformResult;

    /// Run `next` on what this transformer keeps.
    fn then<T: Transformer + 'static>(self, next: T) -> TransformerChain
    where
        Self: Sized + 'static,
    {
        TransformerChain::new().with(self).with(next)
    }
}

impl<F> Transformer for F
where
    F: Fn(DynamicObject, &TransformContext) -> TransformResult + Send + Sync,
{
    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed("custom")
    }

    fn transform(&self, obj: DynamicObject, ctx: &TransformContext) -> TransformResult {
        self(obj, ctx)
    }
}

// Closures implement `Transformer` (blanket impl above), so the forwarding impls for `Box` and `&` are
// for trait objects: a generic `Box<T>` would overlap with the closure impl (`Box<F>` is itself `Fn`).
impl Transformer for Box<dyn Transformer> {
    fn name(&self) -> Cow<'_, str> {
        (**self).name()
    }
    fn transform(&self, obj: DynamicObject, ctx: &TransformContext) -> TransformResult {
        (**self).transform(obj, ctx)
    }
}

impl<T: Transformer + ?Sized> Transformer for Arc<T> {
    fn name(&self) -> Cow<'_, str> {
        (**self).name()
    }
    fn transform(&self, obj: DynamicObject, ctx: &TransformContext) -> TransformResult {
        (**self).transform(obj, ctx)
    }
}

impl Transformer for &dyn Transformer {
    fn name(&self) -> Cow<'_, str> {
        (**self).name()
    }
    fn transform(&self, obj: DynamicObject, ctx: &TransformContext) -> TransformResult {
        (**self).transform(obj, ctx)
    }
}

/// Transformers run in order; the first drop ends the chain.
#[derive(Clone, Default)]
pub struct TransformerChain {
    steps: Vec<Arc<dyn Transformer>>,
}

impl fmt::Debug for TransformerChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.steps.iter().map(|s| s.name().into_owned()))
            .finish()
    }
}

impl TransformerChain {
    /// An empty chain (keeps every object unchanged).
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in transformers in their order: sanitise metadata, map namespaces, Services, Ingresses,
    /// PVCs, environment rewrites, quiet DR site, then the mapping's `transformRules`.
    pub fn builtin() -> Self {
        TransformerChain::new()
            .with(Sanitize)
            .with(NamespaceMapper)
            .with(ServiceTransform)
            .with(IngressTransform)
            .with(PvcTransform)
            .with(TransformEnv)
            .with(QuietDrSite)
            .with(TransformRules)
    }

    /// Append a transformer.
    pub fn with(mut self, t: impl Transformer + 'static) -> Self {
        self.steps.push(Arc::new(t));
        self
    }

    /// Append a transformer (alias of [`TransformerChain::with`] that reads well after `builtin()`).
    pub fn then(self, t: impl Transformer + 'static) -> Self {
        self.with(t)
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether the chain has no steps.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

impl Transformer for TransformerChain {
    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed("chain")
    }

    fn transform(&self, obj: DynamicObject, ctx: &TransformContext) -> TransformResult {
        let mut current = obj;
        for step in &self.steps {
            match step.transform(current, ctx)? {
                Outcome::Keep(next) => current = next,
                dropped @ Outcome::Drop { .. } => return Ok(dropped),
            }
        }
        Ok(Outcome::Keep(current))
    }
}

// === helpers shared by the built-in transformers ===

/// The pod template spec of a workload kind (`/spec/template/spec`, or the CronJob's job template).
pub(crate) fn pod_spec_pointer(resource: &ResourceType) -> Option<&'static str> {
    match (resource.group.as_str(), resource.kind.as_str()) {
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet") | ("batch", "Job") => {
            Some("/spec/template/spec")
        }
        ("batch", "CronJob") => Some("/spec/jobTemplate/spec/template/spec"),
        ("", "Pod") => Some("/spec"),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Builders for transformer tests.

    use kube::core::DynamicObject;
    use serde_json::{Value, json};

    use super::TransformContext;
    use crate::resource::ResourceType;

    pub(crate) fn obj(api_version: &str, kind: &str, body: Value) -> DynamicObject {
        let mut v = json!({"apiVersion": api_version, "kind": kind});
        if let (Some(target), Some(extra)) = (v.as_object_mut(), body.as_object()) {
            for (k, val) in extra {
                target.insert(k.clone(), val.clone());
            }
        }
        if v.get("metadata").is_none() {
            v["metadata"] = json!({"name": "x", "namespace": "app"});
        }
        serde_json::from_value(v).expect("test object")
    }

    pub(crate) fn rt(api_version: &str, kind: &str) -> ResourceType {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let plural = format!("{}s", kind.to_ascii_lowercase());
        ResourceType::namespaced(group, version, kind, &plural)
    }

    pub(crate) fn ctx_for(o: &DynamicObject) -> TransformContext {
        let t = o.types.clone().expect("types");
        TransformContext::for_test(rt(&t.api_version, &t.kind))
    }

    pub(crate) fn json_of(o: &DynamicObject) -> Value {
        serde_json::to_value(o).expect("serialisable")
    }
}
