//! The pure parts of the simulated kubelet: image matching, path rewriting, field references, the
//! scheduler's predicate, and the desired pods of the DaemonSet, Deployment and StatefulSet controllers.

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
};

use k8s_openapi::api::{
    apps::v1::DaemonSet,
    core::v1::{Container, NodeSelectorRequirement, Pod, PodSpec, PodTemplateSpec},
};

/// The repository name of an image reference: last path segment, tag and digest stripped
/// (`registry:5000/org/busybox:1.36@sha256:..` → `busybox`).
pub(crate) fn image_repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

/// The process arguments of a container: `command[1..]` then `args` when `command` is set (`command[0]`
/// is the image's entrypoint, replaced by the registered binary), else `args`.
pub(crate) fn container_args(c: &Container) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(cmd) = &c.command {
        out.extend(cmd.iter().skip(1).cloned());
    }
    out.extend(c.args.iter().flatten().cloned());
    out
}

/// A container path and the host path it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathMapping {
    /// The path inside the "container" (a volumeMount's mountPath, or the termination message path).
    pub(crate) container: String,
    /// Where it is on the host.
    pub(crate) host: PathBuf,
}

fn is_left_boundary(c: char) -> bool {
    c.is_whitespace() || "'\"=:(<>;|&,`".contains(c)
}

fn is_right_boundary(c: char) -> bool {
    c == '/' || c.is_whitespace() || "'\"):<>;|&,`".contains(c)
}

/// Rewrite container paths in `s` to host paths.
///
/// A mapped container path is replaced wherever it appears as a path: at the start of `s` or after a
/// whitespace, quote, `=`, `:`, `(`, `<`, `>`, `;`, `|`, `&`, `,` or backtick, and followed by the end of
/// `s`, a `/` or one of those separators. This covers an argument that is the path, one that starts with
/// `<path>/`, `--flag=<path>...`, and paths inside a shell script (`sh -c "cat /etc/cfg/key > /data/out"`).
/// The longest matching container path wins.
pub(crate) fn rewrite_paths(s: &str, mappings: &[PathMapping]) -> String {
    let mut sorted: Vec<&PathMapping> = mappings
        .iter()
        .filter(|m| m.container.starts_with('/') && m.container.len() > 1)
        .collect();
    sorted.sort_by_key(|m| std::cmp::Reverse(m.container.len()));
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut prev: Option<char> = None;
    while i < s.len() {
        let rest = &s[i..];
        let at_boundary = prev.is_none_or(is_left_boundary);
        if at_boundary && rest.starts_with('/') {
            let hit = sorted.iter().find(|m| {
                rest.starts_with(m.container.as_str())
                    && rest[m.container.len()..]
                        .chars()
                        .next()
                        .is_none_or(is_right_boundary)
            });
            if let Some(m) = hit {
                out.push_str(&m.host.to_string_lossy());
                i += m.container.len();
                prev = m.container.chars().last();
                continue;
            }
        }
        let Some(c) = rest.chars().next() else { break };
        out.push(c);
        prev = Some(c);
        i += c.len_utf8();
    }
    out
}

/// The host path of a volume mount: the volume's host directory, joined with `subPath` if set.
pub(crate) fn mount_host_path(volume_dir: &Path, sub_path: Option<&str>) -> PathBuf {
    match sub_path.map(|p| p.trim_start_matches('/')) {
        Some(sub) if !sub.is_empty() => volume_dir.join(sub),
        _ => volume_dir.to_path_buf(),
    }
}

/// The value of an env `fieldRef` the simulator supports.
pub(crate) fn field_ref_value(field_path: &str, pod: &Pod, node_ip: &str) -> Option<String> {
    let spec = pod.spec.as_ref();
    match field_path {
        "metadata.name" => pod.metadata.name.clone(),
        "metadata.namespace" => pod.metadata.namespace.clone(),
        "metadata.uid" => pod.metadata.uid.clone(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        "spec.serviceAccountName" => Some(
            spec.and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".to_owned()),
        ),
        "status.hostIP" | "status.podIP" => Some(node_ip.to_owned()),
        other => {
            // metadata.labels['key'] / metadata.annotations['key']
            let (map, key) = if let Some(k) = other.strip_prefix("metadata.labels[") {
                (pod.metadata.labels.as_ref(), k)
            } else if let Some(k) = other.strip_prefix("metadata.annotations[") {
                (pod.metadata.annotations.as_ref(), k)
            } else {
                return None;
            };
            let key = key.trim_end_matches(']').trim_matches(|c| c == '\'' || c == '"');
            map.and_then(|m| m.get(key).cloned())
        }
    }
}

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether a pod with `spec` may run on the node `node` with `labels`: `spec.nodeSelector` and the
/// required node affinity (`matchExpressions` on labels, `matchFields` on `metadata.name`). Taints,
/// resources and pod affinity are not considered.
pub(crate) fn node_matches(spec: &PodSpec, node: &str, labels: &BTreeMap<String, String>) -> bool {
    if let Some(sel) = &spec.node_selector
        && sel.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref());
    let Some(required) = required else {
        return true;
    };
    // Terms are ORed; the requirements of one term are ANDed. No terms: nothing matches.
    required.node_selector_terms.iter().any(|term| {
        let exprs = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        if exprs.is_empty() && fields.is_empty() {
            return false;
        }
        let name = node.to_owned();
        exprs.iter().all(|r| requirement_matches(r, labels.get(&r.key)))
            && fields
                .iter()
                .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(&name)))
    })
}

/// A simulated node as the controllers see it.
#[derive(Debug, Clone)]
pub(crate) struct NodeInfo {
    pub(crate) name: String,
    pub(crate) ip: String,
    pub(crate) labels: BTreeMap<String, String>,
}

/// The nodes a DaemonSet wants a pod on, in node order.
pub(crate) fn daemonset_nodes<'a>(ds: &DaemonSet, nodes: &'a [NodeInfo]) -> Vec<&'a NodeInfo> {
    let Some(spec) = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else {
        return Vec::new();
    };
    nodes
        .iter()
        .filter(|n| node_matches(spec, &n.name, &n.labels))
        .collect()
}

/// The name of a DaemonSet's pod on a node.
pub(crate) fn daemon_pod_name(ds: &str, node: &str) -> String {
    let name = format!("{ds}-{node}");
    name.chars().take(253).collect()
}

/// A stable hash (FNV-1a, hex) of a pod template, stored on the workloads' pods to detect changes.
pub(crate) fn template_hash(template: &PodTemplateSpec) -> String {
    let text = serde_json::to_string(template).unwrap_or_default();
    format!("{:016x}", fnv(&text))
}

/// A pod a workload owns, as its controller sees it.
#[derive(Debug, Clone)]
pub(crate) struct OwnedPod {
    pub(crate) name: String,
    /// The template hash it was made from ([`template_hash`]).
    pub(crate) hash: Option<String>,
    /// It has a `deletionTimestamp`.
    pub(crate) terminating: bool,
    /// Its Ready condition is True.
    pub(crate) ready: bool,
}

/// What a workload controller does in one pass: the names of the pods to create and to delete.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) create: Vec<String>,
    pub(crate) delete: Vec<String>,
}

fn fnv(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The short template hash in pod names and the `pod-template-hash` label (10 characters).
pub(crate) fn short_hash(hash: &str) -> &str {
    hash.get(..10).unwrap_or(hash)
}

/// The name of a Deployment's pod: `<deployment>-<short hash>-<5 characters>`, the suffix derived from
/// the template hash and a slot number (kube's alphabet, as its random suffixes).
pub(crate) fn deployment_pod_name(deployment: &str, hash: &str, slot: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = fnv(&format!("{hash}/{slot}"));
    let mut suffix = String::with_capacity(5);
    for _ in 0..5 {
        let i = usize::try_from(h % ALPHABET.len() as u64).unwrap_or(0);
        suffix.push(char::from(ALPHABET[i]));
        h /= ALPHABET.len() as u64;
    }
    format!("{deployment}-{}-{suffix}", short_hash(hash))
}

/// The Deployment controller's pass: pods of an older template are deleted (all at once, and their
/// replacements created at once), surplus pods deleted (unready ones first), missing ones created under
/// names no pod in the namespace has (`taken`, terminating ones included). Terminating pods count for
/// nothing.
pub(crate) fn plan_deployment(
    name: &str,
    replicas: usize,
    hash: &str,
    pods: &[OwnedPod],
    taken: &HashSet<String>,
) -> Plan {
    let mut plan = Plan::default();
    let mut current: Vec<&OwnedPod> = Vec::new();
    for p in pods.iter().filter(|p| !p.terminating) {
        if p.hash.as_deref() == Some(hash) {
            current.push(p);
        } else {
            plan.delete.push(p.name.clone());
        }
    }
    current.sort_by(|a, b| b.ready.cmp(&a.ready).then_with(|| a.name.cmp(&b.name)));
    plan.delete
        .extend(current.iter().skip(replicas).map(|p| p.name.clone()));
    let mut slot = 0;
    while current.len() + plan.create.len() < replicas {
        let candidate = deployment_pod_name(name, hash, slot);
        if !taken.contains(&candidate) && !plan.create.contains(&candidate) {
            plan.create.push(candidate);
        }
        slot += 1;
    }
    plan
}

/// The name of a StatefulSet's pod with ordinal `i`.
pub(crate) fn statefulset_pod_name(sts: &str, i: usize) -> String {
    format!("{sts}-{i}")
}

/// The ordinal of a StatefulSet's pod (`None` when `pod` is not `<sts>-<number>`).
pub(crate) fn statefulset_ordinal(sts: &str, pod: &str) -> Option<usize> {
    let n = pod.strip_prefix(sts)?.strip_prefix('-')?;
    if n.is_empty() || (n.len() > 1 && n.starts_with('0')) || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// The StatefulSet controller's pass. Pods `<sts>-0..replicas-1`. `OrderedReady`: a pod is created only
/// when every lower ordinal is Ready, and surplus pods go one at a time, highest ordinal first, each once
/// the one before is gone; `Parallel` (`parallel`): all at once. A pod of an older template is deleted
/// (highest ordinal first, one at a time, once every pod is Ready and none is terminating) and recreated
/// under its name once it is gone.
pub(crate) fn plan_statefulset(
    name: &str,
    replicas: usize,
    parallel: bool,
    hash: &str,
    pods: &[OwnedPod],
) -> Plan {
    let mut plan = Plan::default();
    let mut by_ordinal: BTreeMap<usize, &OwnedPod> = BTreeMap::new();
    for p in pods {
        match statefulset_ordinal(name, &p.name) {
            Some(i) => {
                by_ordinal.insert(i, p);
            }
            None if !p.terminating => plan.delete.push(p.name.clone()),
            None => {}
        }
    }
    // Scale down.
    let surplus: Vec<&OwnedPod> = by_ordinal.range(replicas..).rev().map(|(_, p)| *p).collect();
    if parallel {
        plan.delete
            .extend(surplus.iter().filter(|p| !p.terminating).map(|p| p.name.clone()));
    } else if !surplus.iter().any(|p| p.terminating)
        && let Some(p) = surplus.first()
    {
        plan.delete.push(p.name.clone());
    }
    // Scale up.
    for i in 0..replicas {
        match by_ordinal.get(&i) {
            None => {
                plan.create.push(statefulset_pod_name(name, i));
                if !parallel {
                    break;
                }
            }
            Some(p) if !parallel && (p.terminating || !p.ready) => break,
            Some(_) => {}
        }
    }
    // Template changes.
    let settled =
        plan.create.is_empty() && plan.delete.is_empty() && pods.iter().all(|p| !p.terminating && p.ready);
    if settled
        && let Some(p) = by_ordinal
            .range(..replicas)
            .rev()
            .map(|(_, p)| *p)
            .find(|p| p.hash.as_deref() != Some(hash))
    {
        plan.delete.push(p.name.clone());
    }
    plan
}

/// Exponential restart backoff: 1 s, doubling, at most 10 s.
pub(crate) fn restart_backoff(restarts: u32) -> std::time::Duration {
    let secs = 1u64 << restarts.min(4);
    std::time::Duration::from_secs(secs.min(10))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::{
        apps::v1::DaemonSetSpec,
        core::v1::{Affinity, NodeAffinity, NodeSelector, NodeSelectorTerm, PodSpec, PodTemplateSpec},
    };
    use kube::api::ObjectMeta;

    use super::*;

    fn m(container: &str, host: &str) -> PathMapping {
        PathMapping {
            container: container.into(),
            host: host.into(),
        }
    }

    #[test]
    fn image_repository_strips_registry_tag_and_digest() {
        assert_eq!(image_repository("busybox"), "busybox");
        assert_eq!(image_repository("busybox:1.36"), "busybox");
        assert_eq!(image_repository("reg:5000/org/agent:v1@sha256:ab"), "agent");
        assert_eq!(image_repository("ghcr.io/x/mover@sha256:ab"), "mover");
    }

    #[test]
    fn args_replace_the_entrypoint() {
        let c = Container {
            command: Some(vec!["/bin/sh".into(), "-c".into()]),
            args: Some(vec!["echo hi".into()]),
            ..Default::default()
        };
        assert_eq!(container_args(&c), ["-c", "echo hi"]);
        let c = Container {
            args: Some(vec!["--a".into()]),
            ..Default::default()
        };
        assert_eq!(container_args(&c), ["--a"]);
    }

    #[test]
    fn paths_are_rewritten_at_path_boundaries() {
        let maps = [
            m("/data", "/h/pv"),
            m("/data/sub", "/h/sub"),
            m("/etc/cfg", "/h/cfg"),
            m("/dev/termination-log", "/h/tl"),
        ];
        assert_eq!(rewrite_paths("/data", &maps), "/h/pv");
        assert_eq!(rewrite_paths("/data/x/y", &maps), "/h/pv/x/y");
        assert_eq!(rewrite_paths("/data/sub/z", &maps), "/h/sub/z");
        assert_eq!(rewrite_paths("--root=/data/a", &maps), "--root=/h/pv/a");
        assert_eq!(rewrite_paths("/database", &maps), "/database");
        assert_eq!(rewrite_paths("/x/data", &maps), "/x/data");
        assert_eq!(rewrite_paths("http://h/data", &maps), "http://h/data");
        assert_eq!(
            rewrite_paths(
                "cat /etc/cfg/key > /data/out; echo done > /dev/termination-log",
                &maps
            ),
            "cat /h/cfg/key > /h/pv/out; echo done > /h/tl"
        );
        assert_eq!(rewrite_paths("'/data'", &maps), "'/h/pv'");
        assert_eq!(rewrite_paths("ünï /data", &maps), "ünï /h/pv");
    }

    #[test]
    fn sub_path_is_joined() {
        assert_eq!(
            mount_host_path(Path::new("/v"), Some("a/b")),
            PathBuf::from("/v/a/b")
        );
        assert_eq!(mount_host_path(Path::new("/v"), Some("")), PathBuf::from("/v"));
        assert_eq!(mount_host_path(Path::new("/v"), None), PathBuf::from("/v"));
    }

    #[test]
    fn field_refs_resolve() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                labels: Some([("app".to_owned(), "x".to_owned())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let f = |p: &str| field_ref_value(p, &pod, "10.0.0.1");
        assert_eq!(f("metadata.name").as_deref(), Some("p"));
        assert_eq!(f("metadata.namespace").as_deref(), Some("ns"));
        assert_eq!(f("metadata.uid").as_deref(), Some("u1"));
        assert_eq!(f("spec.nodeName").as_deref(), Some("n1"));
        assert_eq!(f("spec.serviceAccountName").as_deref(), Some("default"));
        assert_eq!(f("status.hostIP").as_deref(), Some("10.0.0.1"));
        assert_eq!(f("status.podIP").as_deref(), Some("10.0.0.1"));
        assert_eq!(f("metadata.labels['app']").as_deref(), Some("x"));
        assert_eq!(f("status.phase"), None);
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn affinity(key: &str, op: &str, values: &[&str]) -> Option<Affinity> {
        Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: key.into(),
                            operator: op.into(),
                            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
                        }]),
                        match_fields: None,
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn scheduler_predicate() {
        let n1 = labels(&[("kubernetes.io/hostname", "n1"), ("role", "src")]);
        let mut spec = PodSpec::default();
        assert!(node_matches(&spec, "n1", &n1));
        spec.node_selector = Some(labels(&[("role", "src")]));
        assert!(node_matches(&spec, "n1", &n1));
        spec.node_selector = Some(labels(&[("role", "dr")]));
        assert!(!node_matches(&spec, "n1", &n1));
        spec.node_selector = None;
        spec.affinity = affinity("kubernetes.io/hostname", "In", &["n2", "n1"]);
        assert!(node_matches(&spec, "n1", &n1));
        spec.affinity = affinity("kubernetes.io/hostname", "In", &["n2"]);
        assert!(!node_matches(&spec, "n1", &n1));
        spec.affinity = affinity("role", "NotIn", &["dr"]);
        assert!(node_matches(&spec, "n1", &n1));
        spec.affinity = affinity("gpu", "Exists", &[]);
        assert!(!node_matches(&spec, "n1", &n1));
    }

    #[test]
    fn daemonset_wants_matching_nodes() {
        let nodes = vec![
            NodeInfo {
                name: "a".into(),
                ip: "10.0.0.1".into(),
                labels: labels(&[("role", "src")]),
            },
            NodeInfo {
                name: "b".into(),
                ip: "10.0.0.2".into(),
                labels: labels(&[("role", "dr")]),
            },
        ];
        let mut ds = DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                ..Default::default()
            },
            spec: Some(DaemonSetSpec {
                template: PodTemplateSpec {
                    spec: Some(PodSpec::default()),
                    ..Default::default()
                },
                ..Default::default()
            }),
            ..Default::default()
        };
        let names = |ds: &DaemonSet| -> Vec<String> {
            daemonset_nodes(ds, &nodes)
                .iter()
                .map(|n| n.name.clone())
                .collect()
        };
        assert_eq!(names(&ds), ["a", "b"]);
        let before = template_hash(&ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default());
        if let Some(spec) = ds.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
            spec.node_selector = Some(labels(&[("role", "src")]));
        }
        assert_eq!(names(&ds), ["a"]);
        let after = template_hash(&ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default());
        assert_ne!(before, after);
        assert_eq!(daemon_pod_name("agent", "a"), "agent-a");
    }

    fn owned(name: &str, hash: &str, terminating: bool, ready: bool) -> OwnedPod {
        OwnedPod {
            name: name.into(),
            hash: Some(hash.into()),
            terminating,
            ready,
        }
    }

    #[test]
    fn deployment_pod_names_are_stable_and_kube_like() {
        let a = deployment_pod_name("web", "0123456789abcdef", 0);
        assert_eq!(a, deployment_pod_name("web", "0123456789abcdef", 0));
        assert_ne!(a, deployment_pod_name("web", "0123456789abcdef", 1));
        assert!(a.starts_with("web-0123456789-"), "{a}");
        assert_eq!(a.len(), "web-0123456789-".len() + 5);
    }

    #[test]
    fn deployment_plans() {
        let h = "0123456789abcdef";
        let none = HashSet::new();
        // From nothing: two new names.
        let plan = plan_deployment("web", 2, h, &[], &none);
        assert_eq!(plan.create.len(), 2);
        assert!(plan.delete.is_empty());
        // Scale down: unready pods go first.
        let pods = [owned("web-a", h, false, true), owned("web-b", h, false, false)];
        let plan = plan_deployment("web", 1, h, &pods, &none);
        assert_eq!(plan.delete, ["web-b"]);
        assert!(plan.create.is_empty());
        // Terminating pods count for nothing, and their names are not reused.
        let gone = owned(&deployment_pod_name("web", h, 0), h, true, true);
        let taken: HashSet<String> = [gone.name.clone()].into();
        let plan = plan_deployment("web", 1, h, &[gone], &taken);
        assert_eq!(plan.create, [deployment_pod_name("web", h, 1)]);
        assert!(plan.delete.is_empty());
        // A new template: old pods deleted, new ones created.
        let pods = [owned("web-old", "fedcba9876543210", false, true)];
        let plan = plan_deployment("web", 1, h, &pods, &none);
        assert_eq!(plan.delete, ["web-old"]);
        assert_eq!(plan.create.len(), 1);
    }

    #[test]
    fn statefulset_ordinals() {
        assert_eq!(statefulset_ordinal("db", "db-0"), Some(0));
        assert_eq!(statefulset_ordinal("db", "db-12"), Some(12));
        assert_eq!(statefulset_ordinal("db", "db-01"), None);
        assert_eq!(statefulset_ordinal("db", "db-x"), None);
        assert_eq!(statefulset_ordinal("db", "dbx-1"), None);
        assert_eq!(statefulset_ordinal("db", "db-"), None);
    }

    #[test]
    fn statefulset_plans() {
        let h = "h";
        // OrderedReady: one at a time, each once the one before is Ready.
        assert_eq!(plan_statefulset("db", 3, false, h, &[]).create, ["db-0"]);
        let pods = [owned("db-0", h, false, false)];
        assert_eq!(plan_statefulset("db", 3, false, h, &pods), Plan::default());
        let pods = [owned("db-0", h, false, true)];
        assert_eq!(plan_statefulset("db", 3, false, h, &pods).create, ["db-1"]);
        // Parallel: all at once.
        assert_eq!(
            plan_statefulset("db", 3, true, h, &[]).create,
            ["db-0", "db-1", "db-2"]
        );
        // Scale down: highest first, one at a time.
        let pods = [
            owned("db-0", h, false, true),
            owned("db-1", h, false, true),
            owned("db-2", h, false, true),
        ];
        assert_eq!(plan_statefulset("db", 1, false, h, &pods).delete, ["db-2"]);
        assert_eq!(plan_statefulset("db", 1, true, h, &pods).delete, ["db-2", "db-1"]);
        let pods = [
            owned("db-0", h, false, true),
            owned("db-1", h, false, true),
            owned("db-2", h, true, true),
        ];
        assert_eq!(plan_statefulset("db", 1, false, h, &pods), Plan::default());
        // A terminating pod is recreated under its name only once it is gone.
        let pods = [owned("db-0", h, true, true)];
        assert_eq!(plan_statefulset("db", 1, false, h, &pods), Plan::default());
        // A template change: highest ordinal first, once everything is Ready.
        let pods = [
            owned("db-0", "old", false, true),
            owned("db-1", "old", false, true),
        ];
        assert_eq!(plan_statefulset("db", 2, false, h, &pods).delete, ["db-1"]);
        let pods = [owned("db-0", "old", false, true), owned("db-1", h, false, false)];
        assert_eq!(plan_statefulset("db", 2, false, h, &pods), Plan::default());
    }

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        let secs: Vec<u64> = (0..6).map(|n| restart_backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
    }
}
