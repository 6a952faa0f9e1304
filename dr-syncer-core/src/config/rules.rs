//! `transformRules`, validated and compiled: what a rule matches and the JSON Patch it applies
//! ([`crate::transform::TransformRules`] applies them).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::DynamicObject;
use regex::Regex;

use crate::{
    api::{JsonPatchOp, TransformRule},
    resource::ResourceType,
};

/// A validated transform rule.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    group: Option<String>,
    kind: Option<String>,
    name: Option<Regex>,
    label_selector: Option<LabelSelector>,
    /// The JSON Patch the rule applies.
    pub(crate) patch: json_patch::Patch,
}

impl CompiledRule {
    /// Validate a rule. Errors are `(field suffix, message)` pairs, all of them.
    pub fn compile(rule: &TransformRule) -> Result<CompiledRule, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let m = rule.match_.clone().unwrap_or_default();
        let name = match m.name.as_deref().filter(|n| !n.is_empty()) {
            None => None,
            Some(re) => match Regex::new(&format!("^(?:{re})$")) {
                Ok(r) => Some(r),
                Err(e) => {
                    errors.push((".match.name".into(), format!("invalid regular expression: {e}")));
                    None
                }
            },
        };
        if let Some(sel) = &m.label_selector
            && let Err(e) = crate::matching::validate_label_selector(sel)
        {
            errors.push((".match.labelSelector".into(), e));
        }
        for (i, op) in rule.patches.iter().enumerate() {
            let mut check_pointer = |field: &str, p: &str| {
                if !(p.is_empty() || p.starts_with('/')) {
                    errors.push((
                        format!(".patches[{i}].{field}"),
                        format!("{p:?} is not a JSON pointer (must start with /)"),
                    ));
                } else if let Some(bad) = p.split('/').find(|seg| {
                    let mut chars = seg.chars().peekable();
                    while let Some(c) = chars.next() {
                        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                            return true;
                        }
                    }
                    false
                }) {
                    errors.push((
                        format!(".patches[{i}].{field}"),
                        format!("bad escape in segment {bad:?} (use ~0 or ~1)"),
                    ));
                }
            };
            check_pointer("path", &op.path);
            match op.op {
                JsonPatchOp::Move | JsonPatchOp::Copy => match &op.from {
                    Some(f) => check_pointer("from", f),
                    None => errors.push((format!(".patches[{i}].from"), "required by move and copy".into())),
                },
                JsonPatchOp::Add | JsonPatchOp::Replace | JsonPatchOp::Test if op.value.is_none() => {
                    errors.push((
                        format!(".patches[{i}].value"),
                        "required by add, replace and test".into(),
                    ));
                }
                _ => {}
            }
        }
        let patch = if errors.is_empty() {
            match serde_json::to_value(&rule.patches).and_then(serde_json::from_value::<json_patch::Patch>) {
                Ok(p) => Some(p),
                Err(e) => {
                    errors.push((".patches".into(), e.to_string()));
                    None
                }
            }
        } else {
            None
        };
        match patch {
            Some(patch) if errors.is_empty() => Ok(CompiledRule {
                group: m.group.map(|g| if g == "core" { String::new() } else { g }),
                kind: m.kind.map(|k| k.to_ascii_lowercase()),
                name,
                label_selector: m.label_selector,
                patch,
            }),
            _ => Err(errors),
        }
    }

    /// Whether the rule selects `obj`, of type `resource`.
    pub fn matches(&self, obj: &DynamicObject, resource: &ResourceType) -> bool {
        let empty = Default::default();
        self.group.as_ref().is_none_or(|g| *g == resource.group)
            && self
                .kind
                .as_ref()
                .is_none_or(|k| *k == resource.kind.to_ascii_lowercase())
            && self
                .name
                .as_ref()
                .is_none_or(|r| r.is_match(obj.metadata.name.as_deref().unwrap_or_default()))
            && self.label_selector.as_ref().is_none_or(|s| {
                crate::matching::selector_matches(s, obj.metadata.labels.as_ref().unwrap_or(&empty))
            })
    }
}
