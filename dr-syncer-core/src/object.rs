//! Pure helpers on dynamic objects shared by the transformers, the activation rules and the plugins:
//! reading and setting metadata, identity, and the error of a transformation.

use kube::core::DynamicObject;

/// A transformer could not handle an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{transformer}: {object}: {message}")]
pub struct TransformError {
    /// Which transformer.
    pub transformer: String,
    /// Which object (`Kind.group/namespace/name`).
    pub object: String,
    /// What went wrong.
    pub message: String,
}

impl TransformError {
    /// An error of `transformer` about `obj`.
    pub fn new(transformer: &str, obj: &DynamicObject, message: impl Into<String>) -> Self {
        let kind = obj.types.as_ref().map(|t| t.kind.as_str()).unwrap_or("object");
        let name = obj.metadata.name.as_deref().unwrap_or("<unnamed>");
        let object = match obj.metadata.namespace.as_deref() {
            Some(ns) => format!("{kind} {ns}/{name}"),
            None => format!("{kind} {name}"),
        };
        TransformError {
            transformer: transformer.to_owned(),
            object,
            message: message.into(),
        }
    }
}

/// Set an annotation.
pub fn annotate(obj: &mut DynamicObject, key: &str, value: impl Into<String>) {
    obj.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(key.to_owned(), value.into());
}

/// Read an annotation.
pub fn annotation<'a>(obj: &'a DynamicObject, key: &str) -> Option<&'a str> {
    obj.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// Whether `b` is still the object `a` is: the same apiVersion, kind, name and namespace (what a patch of
/// `transformRules` or a plugin may never change).
pub fn same_identity(a: &DynamicObject, b: &DynamicObject) -> bool {
    a.types == b.types && a.metadata.name == b.metadata.name && a.metadata.namespace == b.metadata.namespace
}

/// Read a label.
pub fn label<'a>(obj: &'a DynamicObject, key: &str) -> Option<&'a str> {
    obj.metadata.labels.as_ref()?.get(key).map(String::as_str)
}
