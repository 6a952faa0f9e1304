//! A mapping's configuration, validated once before use: [`SyncConfig`].
//!
//! [`SyncConfig::from_spec`] checks a [`NamespaceMappingSpec`] and reports **all** its problems at once
//! (invalid regular expressions and JSON pointers, contradictory options) instead of failing on the first.
//! Resource-type names are checked later, against discovery (see [`crate::selection`]).

mod rules;

pub use self::rules::CompiledRule;

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::{
    api::{
        ExcludeLabel, ImmutableHandling, IngressConfig, NamespaceConfig, NamespaceMappingSpec, ServiceConfig,
        TransformRule,
    },
    matching::{self, ExcludeRule},
    resource::ResourceType,
};

/// Validated configuration of one mapping, shared by the selection and the transformers.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Quiet the DR site (workloads at zero, CronJobs suspended, DaemonSets held).
    pub scale_to_zero: bool,
    /// Requested resource types (as written; resolved against discovery by [`crate::selection`]).
    pub resource_types: Vec<String>,
    /// Further namespaced types (`resource.group`, or `*`).
    pub namespace_scoped_resources: Vec<String>,
    /// Replicate the CRDs of replicated custom resources.
    pub sync_crds: bool,
    /// Objects with any of these labels are skipped.
    pub exclude_labels: Vec<ExcludeLabel>,
    /// Objects matching any of these are skipped.
    pub exclude_resources: Vec<ExcludeRule>,
    /// Only objects matching this are replicated.
    pub label_selector: Option<LabelSelector>,
    /// Services.
    pub service: ServiceConfig,
    /// Ingresses.
    pub ingress: IngressConfig,
    /// The destination namespace.
    pub namespace: NamespaceConfig,
    /// StorageClass renames.
    pub storage_class_mappings: BTreeMap<String, String>,
    /// Access-mode renames.
    pub access_mode_mappings: BTreeMap<String, String>,
    /// Keep PV bindings (volumeName and binding annotations).
    pub preserve_volume_bindings: bool,
    /// Delete DR objects whose source is gone.
    pub prune: bool,
    /// Take over existing DR objects dr-syncer did not create: `Some(true)` always, `Some(false)` never,
    /// `None` only in a DR namespace the Go operator marked (`dr-syncer.io/managed-by=dr-syncer`).
    pub adopt_existing: Option<bool>,
    /// When deletions (prune, mirrored deletions) are held for a go-ahead.
    pub deletion_brake: crate::brake::DeletionBrake,
    /// Declarative transforms.
    pub rules: Vec<CompiledRule>,
    /// External transformer plugins, in order ([`crate::plugin`]; resolved by the caller's plugin
    /// directory).
    pub plugins: Vec<crate::plugin::PluginRef>,
    /// What to do when a change hits an immutable field.
    pub immutable: ImmutablePolicy,
}

/// `immutableResourceConfig`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImmutablePolicy {
    /// Handling without an override.
    pub default: ImmutableHandling,
    /// Per `resource.group` (core types by plural).
    pub overrides: BTreeMap<String, ImmutableHandling>,
    /// How long evicting a workload's pods may take.
    pub drain_timeout: Duration,
    /// How long a foreground deletion may take.
    pub force_delete_timeout: Duration,
}

impl Default for ImmutablePolicy {
    fn default() -> Self {
        ImmutablePolicy {
            default: ImmutableHandling::NoChange,
            overrides: BTreeMap::new(),
            drain_timeout: Duration::from_secs(300),
            force_delete_timeout: Duration::from_secs(120),
        }
    }
}

impl ImmutablePolicy {
    /// The handling for objects of `rt`. PersistentVolumeClaims hold data: a default that deletes
    /// (`Recreate`, `RecreateWithPodDrain`, `ForceUpdate`) never applies to them — only an override that
    /// names `persistentvolumeclaims` explicitly can recreate a claim.
    pub fn handling_for(&self, rt: &ResourceType) -> ImmutableHandling {
        if let Some(h) = self.overrides.get(&rt.resource_group()) {
            return *h;
        }
        match self.default {
            ImmutableHandling::Recreate
            | ImmutableHandling::RecreateWithPodDrain
            | ImmutableHandling::ForceUpdate
                if rt.is("", "PersistentVolumeClaim") =>
            {
                ImmutableHandling::NoChange
            }
            h => h,
        }
    }
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            scale_to_zero: true,
            resource_types: Vec::new(),
            namespace_scoped_resources: Vec::new(),
            sync_crds: false,
            exclude_labels: Vec::new(),
            exclude_resources: Vec::new(),
            label_selector: None,
            service: ServiceConfig::default(),
            ingress: IngressConfig::default(),
            namespace: NamespaceConfig::default(),
            storage_class_mappings: BTreeMap::new(),
            access_mode_mappings: BTreeMap::new(),
            preserve_volume_bindings: false,
            prune: false,
            adopt_existing: None,
            deletion_brake: crate::brake::DeletionBrake::default(),
            rules: Vec::new(),
            plugins: Vec::new(),
            immutable: ImmutablePolicy::default(),
        }
    }
}

/// One problem found in a mapping's spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The field, as a path (`spec.transformRules[0].match.name`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// All problems of a spec, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ConfigProblems(pub Vec<ConfigProblem>);

impl SyncConfig {
    /// Validate `spec` into a configuration, reporting every problem at once.
    pub fn from_spec(spec: &NamespaceMappingSpec) -> Result<SyncConfig, ConfigProblems> {
        let mut problems = Vec::new();
        let mut problem = |field: &str, message: String| {
            problems.push(ConfigProblem {
                field: field.to_owned(),
                message,
            });
        };

        // Contradictory or missing cluster/namespace choices.
        if spec.cluster_mapping_ref.is_some()
            && (spec.source_cluster.is_some() || spec.destination_cluster.is_some())
        {
            problem(
                "spec.clusterMappingRef",
                "set either clusterMappingRef or sourceCluster/destinationCluster, not both".into(),
            );
        }
        if spec.source_namespace.is_some() && spec.namespace_selector.is_some() {
            problem(
                "spec.namespaceSelector",
                "set either sourceNamespace or namespaceSelector, not both".into(),
            );
        }
        if spec.source_namespace.as_deref().is_none_or(str::is_empty) && spec.namespace_selector.is_none() {
            problem(
                "spec.sourceNamespace",
                "one of sourceNamespace or namespaceSelector is required".into(),
            );
        }
        if spec.namespace_selector.is_some() && spec.destination_namespace.is_some() {
            problem(
                "spec.destinationNamespace",
                "not used with namespaceSelector (destinations are source name + destinationSuffix)".into(),
            );
        }
        for (field, name) in [
            ("spec.sourceNamespace", &spec.source_namespace),
            ("spec.destinationNamespace", &spec.destination_namespace),
        ] {
            if let Some(n) = name.as_deref().filter(|n| !n.is_empty())
                && !is_dns1123_label(n)
            {
                problem(field, format!("{n:?} is not a valid namespace name"));
            }
        }
        if let Some(sel) = &spec.namespace_selector {
            if let Err(e) = matching::validate_label_selector(&sel.label_selector) {
                problem("spec.namespaceSelector.labelSelector", e);
            }
            if sel.destination_suffix.len() > 20 {
                problem(
                    "spec.namespaceSelector.destinationSuffix",
                    "longer than 20 characters".into(),
                );
            }
        }
        if let Some(sel) = &spec.label_selector
            && let Err(e) = matching::validate_label_selector(sel)
        {
            problem("spec.labelSelector", e);
        }

        let ingress = spec.ingress_config.clone().unwrap_or_default();
        if ingress.transform_hosts && ingress.host_suffix.as_deref().is_none_or(str::is_empty) {
            problem(
                "spec.ingressConfig.hostSuffix",
                "required when transformHosts is true".into(),
            );
        }

        let mut exclude_resources = Vec::new();
        for (i, ex) in spec.exclude_resources.iter().flatten().enumerate() {
            match ExcludeRule::new(&ex.kind, &ex.name) {
                Ok(rule) => exclude_resources.push(rule),
                Err(e) => problem(&format!("spec.excludeResources[{i}]"), e),
            }
        }
        for (i, ex) in spec.exclude_labels.iter().flatten().enumerate() {
            if ex.key.is_empty() {
                problem(
                    &format!("spec.excludeLabels[{i}].key"),
                    "must not be empty".into(),
                );
            }
        }

        let pvc = spec.pvc_config.clone().unwrap_or_default();
        let storage_class_mappings = mappings(
            &pvc.storage_class_mappings,
            "spec.pvcConfig.storageClassMappings",
            &mut problem,
        );
        let access_mode_mappings = mappings(
            &pvc.access_mode_mappings,
            "spec.pvcConfig.accessModeMappings",
            &mut problem,
        );
        for (i, m) in pvc.access_mode_mappings.iter().flatten().enumerate() {
            for v in [&m.from, &m.to] {
                if ![
                    "ReadWriteOnce",
                    "ReadOnlyMany",
                    "ReadWriteMany",
                    "ReadWriteOncePod",
                ]
                .contains(&v.as_str())
                {
                    problem(
                        &format!("spec.pvcConfig.accessModeMappings[{i}]"),
                        format!("unknown access mode {v:?}"),
                    );
                }
            }
        }

        let mut immutable = ImmutablePolicy::default();
        if let Some(ic) = &spec.immutable_resource_config {
            immutable.default = ic.default_handling;
            for (key, handling) in ic.resource_overrides.iter().flatten() {
                let valid = key
                    .split('.')
                    .all(|part| is_dns1123_label(&part.to_ascii_lowercase()));
                if !valid {
                    problem(
                        &format!("spec.immutableResourceConfig.resourceOverrides[{key}]"),
                        "keys are resource.group names such as statefulsets.apps (core types by plural)"
                            .into(),
                    );
                }
                immutable.overrides.insert(key.to_ascii_lowercase(), *handling);
            }
            for (field, text, target) in [
                ("drainTimeout", &ic.drain_timeout, &mut immutable.drain_timeout),
                (
                    "forceDeleteTimeout",
                    &ic.force_delete_timeout,
                    &mut immutable.force_delete_timeout,
                ),
            ] {
                match parse_duration(text) {
                    Ok(d) => *target = d,
                    Err(e) => problem(&format!("spec.immutableResourceConfig.{field}"), e),
                }
            }
        }

        let mut deletion_brake = crate::brake::DeletionBrake::default();
        if let Some(b) = &spec.deletion_brake {
            deletion_brake.enabled = b.enabled;
            deletion_brake.min_objects = b.min_objects;
            if b.percent > 100 {
                problem(
                    "spec.deletionBrake.percent",
                    format!("a share of 0 to 100 (percent), not {}", b.percent),
                );
            }
            deletion_brake.percent = b.percent.min(100);
            match parse_duration(&b.window) {
                Ok(d) => deletion_brake.window = d,
                Err(e) => problem("spec.deletionBrake.window", e),
            }
        }

        let (rules, rule_problems) = compile_rules(spec.transform_rules.as_deref().unwrap_or_default());
        problems.extend(rule_problems);
        let mut plugins = Vec::new();
        for (i, p) in spec.transform_plugins.iter().flatten().enumerate() {
            match crate::plugin::check_name(&p.name) {
                Ok(()) => plugins.push(crate::plugin::PluginRef {
                    name: p.name.clone(),
                    extras: p.extras.clone().unwrap_or_default(),
                }),
                Err(e) => problems.push(ConfigProblem {
                    field: format!("spec.transformPlugins[{i}].name"),
                    message: e,
                }),
            }
        }

        if !problems.is_empty() {
            return Err(ConfigProblems(problems));
        }
        Ok(SyncConfig {
            scale_to_zero: spec.scale_to_zero,
            resource_types: spec.resource_types.clone().unwrap_or_default(),
            namespace_scoped_resources: spec.namespace_scoped_resources.clone().unwrap_or_default(),
            sync_crds: spec.sync_crds,
            exclude_labels: spec.exclude_labels.clone().unwrap_or_default(),
            exclude_resources,
            label_selector: spec.label_selector.clone(),
            service: spec.service_config.clone().unwrap_or_default(),
            ingress,
            namespace: spec.namespace_config.clone().unwrap_or_default(),
            storage_class_mappings,
            access_mode_mappings,
            preserve_volume_bindings: pvc.sync_persistent_volumes || pvc.preserve_volume_attributes,
            prune: spec.prune,
            adopt_existing: spec.adopt_existing,
            deletion_brake,
            rules,
            plugins,
            immutable,
        })
    }

    /// A configuration with these declarative rules (for tests and embedding).
    pub fn with_rules(mut self, rules: &[TransformRule]) -> Result<Self, ConfigProblems> {
        let (compiled, problems) = compile_rules(rules);
        if !problems.is_empty() {
            return Err(ConfigProblems(problems));
        }
        self.rules = compiled;
        Ok(self)
    }
}

/// Compile `spec.transformRules`, collecting every problem.
fn compile_rules(rules: &[TransformRule]) -> (Vec<CompiledRule>, Vec<ConfigProblem>) {
    let mut compiled = Vec::new();
    let mut problems = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        match CompiledRule::compile(rule) {
            Ok(r) => compiled.push(r),
            Err(errs) => problems.extend(errs.into_iter().map(|(field, message)| ConfigProblem {
                field: format!("spec.transformRules[{i}]{field}"),
                message,
            })),
        }
    }
    (compiled, problems)
}

fn mappings(
    list: &Option<Vec<crate::api::NameMapping>>,
    field: &str,
    problem: &mut impl FnMut(&str, String),
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (i, m) in list.iter().flatten().enumerate() {
        if m.from.is_empty() || m.to.is_empty() {
            problem(&format!("{field}[{i}]"), "from and to must not be empty".into());
        } else if let Some(prev) = out.insert(m.from.clone(), m.to.clone())
            && prev != m.to
        {
            problem(
                &format!("{field}[{i}]"),
                format!("{:?} is mapped twice ({prev:?} and {:?})", m.from, m.to),
            );
        }
    }
    out
}

/// Parse a Go-style duration (`90s`, `5m`, `1h30m`, `1.5h`, `250ms`; units ns, us, µs, ms, s, m, h).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{text:?}: missing unit (use h, m, s or ms)"))?;
        let (num, tail) = rest.split_at(num_end);
        let value: f64 = num
            .parse()
            .map_err(|_| format!("{text:?} is not a duration such as 30s, 5m or 1h30m"))?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(format!("{text:?}: unknown unit {unit:?} (use h, m, s or ms)")),
        };
        total += value * seconds;
        rest = next;
    }
    Duration::try_from_secs_f64(total).map_err(|_| format!("{text:?} is out of range"))
}

/// RFC 1123 label: lowercase alphanumerics and '-', starting and ending alphanumeric, at most 63.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::json;

    use super::*;

    fn spec(v: serde_json::Value) -> NamespaceMappingSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_plain_mapping_is_valid() {
        let cfg = SyncConfig::from_spec(&spec(json!({"sourceNamespace": "app"}))).unwrap();
        assert!(cfg.scale_to_zero);
        assert!(cfg.rules.is_empty());
    }

    #[rstest]
    #[case::both_cluster_choices(json!({"sourceNamespace": "a", "clusterMappingRef": {"name": "m"}, "sourceCluster": "p"}), "spec.clusterMappingRef")]
    #[case::no_source(json!({}), "spec.sourceNamespace")]
    #[case::both_namespace_choices(json!({"sourceNamespace": "a", "namespaceSelector": {"labelSelector": {}}}), "spec.namespaceSelector")]
    #[case::bad_namespace(json!({"sourceNamespace": "Not_Valid"}), "spec.sourceNamespace")]
    #[case::hosts_without_suffix(json!({"sourceNamespace": "a", "ingressConfig": {"transformHosts": true}}), "spec.ingressConfig.hostSuffix")]
    #[case::bad_rule_regex(json!({"sourceNamespace": "a", "transformRules": [{"match": {"name": "("}, "patches": []}]}), "spec.transformRules[0].match.name")]
    #[case::bad_pointer(json!({"sourceNamespace": "a", "transformRules": [{"patches": [{"op": "add", "path": "no-slash", "value": 1}]}]}), "spec.transformRules[0].patches[0].path")]
    #[case::bad_access_mode(json!({"sourceNamespace": "a", "pvcConfig": {"accessModeMappings": [{"from": "RWO", "to": "ReadWriteMany"}]}}), "spec.pvcConfig.accessModeMappings[0]")]
    #[case::bad_selector(json!({"sourceNamespace": "a", "labelSelector": {"matchExpressions": [{"key": "k", "operator": "Sometimes"}]}}), "spec.labelSelector")]
    #[case::empty_exclude_kind(json!({"sourceNamespace": "a", "excludeResources": [{"kind": "", "name": "x"}]}), "spec.excludeResources[0]")]
    fn problems_are_reported(#[case] v: serde_json::Value, #[case] field: &str) {
        let err = SyncConfig::from_spec(&spec(v)).unwrap_err();
        assert!(err.0.iter().any(|p| p.field == field), "{field} not in {err}");
    }

    #[rstest]
    #[case("30s", 30_000)]
    #[case("5m", 300_000)]
    #[case("1h30m", 5_400_000)]
    #[case("1.5h", 5_400_000)]
    #[case("250ms", 250)]
    #[case("0", 0)]
    fn durations(#[case] text: &str, #[case] millis: u128) {
        assert_eq!(parse_duration(text).unwrap().as_millis(), millis);
    }

    #[rstest]
    #[case("")]
    #[case("5")]
    #[case("5 minutes")]
    #[case("m")]
    #[case("1d")]
    fn bad_durations(#[case] text: &str) {
        assert!(parse_duration(text).is_err());
    }

    #[rstest]
    #[case::default_applies(json!({"defaultHandling": "Recreate"}), "configmaps", "", "ConfigMap", ImmutableHandling::Recreate)]
    #[case::override_wins(json!({"defaultHandling": "Recreate", "resourceOverrides": {"statefulsets.apps": "PartialUpdate"}}), "statefulsets", "apps", "StatefulSet", ImmutableHandling::PartialUpdate)]
    #[case::pvc_never_recreated_by_default(json!({"defaultHandling": "Recreate"}), "persistentvolumeclaims", "", "PersistentVolumeClaim", ImmutableHandling::NoChange)]
    #[case::pvc_never_force_updated_by_default(json!({"defaultHandling": "ForceUpdate"}), "persistentvolumeclaims", "", "PersistentVolumeClaim", ImmutableHandling::NoChange)]
    #[case::pvc_partial_update_is_fine(json!({"defaultHandling": "PartialUpdate"}), "persistentvolumeclaims", "", "PersistentVolumeClaim", ImmutableHandling::PartialUpdate)]
    #[case::pvc_explicit_override(json!({"defaultHandling": "NoChange", "resourceOverrides": {"persistentvolumeclaims": "Recreate"}}), "persistentvolumeclaims", "", "PersistentVolumeClaim", ImmutableHandling::Recreate)]
    fn immutable_handling(
        #[case] config: serde_json::Value,
        #[case] plural: &str,
        #[case] group: &str,
        #[case] kind: &str,
        #[case] expected: ImmutableHandling,
    ) {
        let cfg = SyncConfig::from_spec(&spec(
            json!({"sourceNamespace": "a", "immutableResourceConfig": config}),
        ))
        .unwrap();
        let rt = ResourceType::namespaced(group, "v1", kind, plural);
        assert_eq!(cfg.immutable.handling_for(&rt), expected);
    }

    #[test]
    fn immutable_config_problems() {
        let err = SyncConfig::from_spec(&spec(json!({"sourceNamespace": "a", "immutableResourceConfig": {
            "drainTimeout": "forever", "resourceOverrides": {"Stateful Sets!": "Recreate"}
        }})))
        .unwrap_err();
        let fields: Vec<_> = err.0.iter().map(|p| p.field.as_str()).collect();
        assert!(
            fields.contains(&"spec.immutableResourceConfig.drainTimeout"),
            "{err}"
        );
        assert!(
            fields
                .iter()
                .any(|f| f.starts_with("spec.immutableResourceConfig.resourceOverrides")),
            "{err}"
        );
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let err = SyncConfig::from_spec(&spec(json!({
            "sourceNamespace": "BAD",
            "ingressConfig": {"transformHosts": true},
            "transformRules": [{"match": {"name": "["}, "patches": [{"op": "move", "path": "/a"}]}]
        })))
        .unwrap_err();
        assert!(err.0.len() >= 4, "{err}");
    }
}
