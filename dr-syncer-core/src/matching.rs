//! Matching names and labels (pure): `*` globs, `excludeResources` rules, and label selectors (validated
//! as the API server validates them, and matched as it matches them).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Excludes objects of a kind whose name equals a value or matches a `*` glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExcludeRule {
    kind: String,
    name: String,
}

impl ExcludeRule {
    /// A rule; the kind is compared case-insensitively.
    pub fn new(kind: &str, name: &str) -> Result<Self, String> {
        if kind.trim().is_empty() || name.is_empty() {
            return Err("kind and name must not be empty".into());
        }
        Ok(ExcludeRule {
            kind: kind.trim().to_ascii_lowercase(),
            name: name.to_owned(),
        })
    }

    /// Whether the rule excludes an object of `kind` named `name`.
    pub fn matches(&self, kind: &str, name: &str) -> bool {
        self.kind == kind.to_ascii_lowercase() && glob_match(&self.name, name)
    }
}

/// `*` matches any run of characters; everything else literally.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Check a label selector's operators and values.
pub fn validate_label_selector(sel: &LabelSelector) -> Result<(), String> {
    for (i, expr) in sel.match_expressions.iter().flatten().enumerate() {
        let values = expr.values.as_deref().unwrap_or_default();
        match expr.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!(
                    "matchExpressions[{i}]: operator {} needs values",
                    expr.operator
                ));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(format!(
                    "matchExpressions[{i}]: operator {} takes no values",
                    expr.operator
                ));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => return Err(format!("matchExpressions[{i}]: unknown operator {other:?}")),
        }
        if expr.key.is_empty() {
            return Err(format!("matchExpressions[{i}]: key must not be empty"));
        }
    }
    Ok(())
}

/// Whether `labels` satisfy `sel` (an empty selector matches everything).
pub fn selector_matches(sel: &LabelSelector, labels: &std::collections::BTreeMap<String, String>) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_ok
        && sel.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}
