//! External transformer plugins: executables in a plugin directory that rewrite (or white out) each object
//! after the built-in transformers and a mapping's `transformRules`, without recompiling dr-syncer.
//!
//! A plugin is named, never given as a command: `NAME` is the executable `DIR/NAME` in the plugin directory
//! the operator (`--plugin-dir`) or the CLI (`--plugin-dir`) was given. Two protocols, chosen by the
//! plugin's answer to the metadata request:
//!
//! - **Crane** (the default): compatible with Konveyor Crane's binary transform plugins, so existing Crane
//!   plugins work unchanged. The executable runs once per object. Stdin `{}` asks for metadata
//!   ([`Metadata`]); otherwise stdin is the object as `kubectl get -o json` prints it, plus an optional
//!   top-level `"extras"` map of string flags, and stdout is `{"version": "v1", "isWhiteOut": bool,
//!   "patches": [RFC 6902 operations]}`.
//! - **JSON lines** ([`JSON_LINES_PROTOCOL`], declared as `"protocol"` in the metadata answer): one process
//!   per sync, started with the environment variable [`PROTOCOL_ENV`] set to the protocol; each stdin line
//!   is `{"object": …, "extras": {…}}` and the plugin answers each with one stdout line, the same response
//!   as Crane's (or `{"error": "…"}` for an object it cannot handle), in order.
//!
//! `isWhiteOut: true` means the object is not copied; with `prune`, a DR copy dr-syncer made is removed as
//! if the source object were gone. A non-zero exit, a timeout, invalid output, or patches that change the
//! object's apiVersion, kind, name or namespace fail that object only ([`TransformError`]); a plugin's
//! stderr goes to the log. Plugins run on forward syncs only (never on a failback's copy back).
//!
//! Plugins must be deterministic: a plugin whose output changes between runs costs a write per object and
//! sync (the applier skips only writes that change nothing).

mod process;

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use futures::{StreamExt, stream};
use kube::core::DynamicObject;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::debug;

use crate::{object::TransformError, resource::ResourceType};

/// The streaming protocol's name, as a plugin declares it in its metadata (`"protocol"`) and as the
/// value of [`PROTOCOL_ENV`] when it is started in that mode.
pub const JSON_LINES_PROTOCOL: &str = "dr-syncer.io/json-lines/v1";
/// The environment variable a plugin is started with in the streaming mode.
pub const PROTOCOL_ENV: &str = "DR_SYNCER_PLUGIN_PROTOCOL";
/// The default time a plugin may take per object (and for its metadata answer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Where the operator image looks for plugins when `--plugin-dir` is not given.
pub const DEFAULT_OPERATOR_PLUGIN_DIR: &str = "/usr/lib/dr-syncer/plugins";
/// The most a plugin may print for one object (stdout): more fails the object. (An object is at most
/// 1.5 MiB in etcd; an answer is a list of patches.)
const MAX_OUTPUT: usize = 4 << 20;
/// The most of a plugin's stderr that is logged per process; the rest is read and dropped.
const MAX_STDERR: usize = 64 << 10;
/// The most of a plugin's own error message (`{"error": …}`) that reaches a report or a status.
const MAX_MESSAGE: usize = 200;

/// A plugin a mapping uses: its name in the plugin directory and the string flags it is given
/// (`transformPlugins: [{name, extras}]`, the CLI's `--plugin NAME[:key=value,...]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PluginRef {
    /// The executable's file name in the plugin directory.
    pub name: String,
    /// Flags passed as the request's `"extras"` map.
    #[serde(default)]
    pub extras: BTreeMap<String, String>,
}

impl PluginRef {
    /// Parse the CLI form `NAME[:key=value,...]`.
    ///
    /// # Errors
    /// A message naming what is wrong: a bad name ([`check_name`]), an extra without `=` or with an
    /// empty key.
    pub fn parse(spec: &str) -> Result<PluginRef, String> {
        let (name, rest) = spec.split_once(':').unwrap_or((spec, ""));
        check_name(name)?;
        let mut extras = BTreeMap::new();
        for pair in rest.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("plugin {name}: extra {pair:?} is not key=value"))?;
            if k.is_empty() {
                return Err(format!("plugin {name}: extra {pair:?} has an empty key"));
            }
            extras.insert(k.to_owned(), v.to_owned());
        }
        Ok(PluginRef {
            name: name.to_owned(),
            extras,
        })
    }
}

/// Check a plugin name: a file name (letters, digits, `.`, `_`, `-`; not starting with `.` or `-`; at
/// most 128 characters), never a path.
///
/// # Errors
/// A message saying why the name is refused.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "plugin name {name:?} is not a file name of the plugin directory (letters, digits, '.', '_', '-'; \
             not starting with '.' or '-')"
        ))
    }
}

/// A plugin's answer to the metadata request (Crane's `PluginMetadata`, plus `protocol`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// The plugin's own name.
    #[serde(default)]
    pub name: String,
    /// The plugin's version.
    #[serde(default)]
    pub version: String,
    /// Request versions it understands (`v1`).
    #[serde(default)]
    pub request_version: Vec<String>,
    /// Response versions it writes (`v1`).
    #[serde(default)]
    pub response_version: Vec<String>,
    /// The `extras` flags it reads.
    #[serde(default)]
    pub optional_fields: Vec<OptionalField>,
    /// [`JSON_LINES_PROTOCOL`] for the streaming mode; absent for Crane's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// One flag a plugin reads from `extras`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OptionalField {
    /// The key in `extras`.
    #[serde(default)]
    pub flag_name: String,
    /// What it does.
    #[serde(default)]
    pub help: String,
    /// An example value.
    #[serde(default)]
    pub example: String,
}

/// How a plugin is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// One process per object (Konveyor Crane's binary plugins).
    Crane,
    /// One process per sync, JSON lines in and out ([`JSON_LINES_PROTOCOL`]).
    JsonLines,
}

/// A plugin could not be found or did not answer the metadata request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    /// The name is not a plain file name.
    #[error("{0}")]
    BadName(String),
    /// No plugin directory is configured.
    #[error("plugin {name}: no plugin directory is configured (--plugin-dir)")]
    NoDirectory {
        /// The plugin asked for.
        name: String,
    },
    /// The plugin directory has no such executable.
    #[error("plugin {name}: {why} in the plugin directory {dir}")]
    NotFound {
        /// The plugin asked for.
        name: String,
        /// The directory.
        dir: String,
        /// What was found instead.
        why: String,
    },
    /// The metadata request failed.
    #[error("plugin {name}: no valid metadata answer: {message}")]
    Metadata {
        /// The plugin.
        name: String,
        /// What went wrong.
        message: String,
    },
}

impl PluginError {
    /// A stable kind for metrics, events and exit codes.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::BadName(_) => "PluginName",
            PluginError::NoDirectory { .. } | PluginError::NotFound { .. } => "PluginNotFound",
            PluginError::Metadata { .. } => "PluginMetadata",
        }
    }
}

/// A plugin found in a plugin directory, with its metadata.
#[derive(Debug)]
pub struct Plugin {
    name: String,
    path: PathBuf,
    metadata: Metadata,
    protocol: Protocol,
    timeout: Duration,
}

impl Plugin {
    /// The name it was found under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its metadata answer.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// How it is run.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Ask `path` for its metadata: `{}` on stdin (as current crane-lib does); a plugin that fails on it
    /// is asked again with the older hosts' literal `METADATA`.
    async fn load(name: &str, path: &Path, timeout: Duration) -> Result<Plugin, PluginError> {
        let ask = |input: &'static [u8]| async move {
            let out = process::run_once(name, path, input, timeout).await?;
            serde_json::from_slice::<Metadata>(&out)
                .map_err(|e| format!("the answer is not plugin metadata JSON: {e}"))
        };
        let metadata = match ask(b"{}").await {
            Ok(m) => m,
            Err(first) => ask(b"METADATA").await.map_err(|_| PluginError::Metadata {
                name: name.to_owned(),
                message: first,
            })?,
        };
        let protocol = match metadata.protocol.as_deref() {
            None | Some("") => Protocol::Crane,
            Some(JSON_LINES_PROTOCOL) => Protocol::JsonLines,
            Some(other) => {
                return Err(PluginError::Metadata {
                    name: name.to_owned(),
                    message: format!(
                        "unknown protocol {other:?} (known: Crane's, when absent, and {JSON_LINES_PROTOCOL:?})"
                    ),
                });
            }
        };
        if !metadata.request_version.is_empty() && !metadata.request_version.iter().any(|v| v == "v1") {
            return Err(PluginError::Metadata {
                name: name.to_owned(),
                message: format!(
                    "requestVersion {:?} does not include v1",
                    metadata.request_version
                ),
            });
        }
        Ok(Plugin {
            name: name.to_owned(),
            path: path.to_owned(),
            metadata,
            protocol,
            timeout,
        })
    }
}

/// A plugin directory: finds plugins by name and caches their metadata (asked again when the
/// executable changes).
#[derive(Debug)]
pub struct PluginDir {
    dir: Option<PathBuf>,
    timeout: Duration,
    cache: Mutex<HashMap<String, Cached>>,
}

/// A loaded plugin and the executable's modification time and size when it was loaded.
type Cached = (SystemTime, u64, Arc<Plugin>);

impl PluginDir {
    /// Plugins are executables in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PluginDir {
            dir: Some(dir.into()),
            ..Self::none()
        }
    }

    /// No plugin directory: naming a plugin is an error.
    pub fn none() -> Self {
        PluginDir {
            dir: None,
            timeout: DEFAULT_TIMEOUT,
            cache: Mutex::default(),
        }
    }

    /// The time a plugin may take per object (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The directory, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The plugin `name`.
    ///
    /// # Errors
    /// [`PluginError`]: a bad name, no directory, no executable file of that name, no metadata.
    pub async fn load(&self, name: &str) -> Result<Arc<Plugin>, PluginError> {
        check_name(name).map_err(PluginError::BadName)?;
        let dir = self.dir.as_ref().ok_or_else(|| PluginError::NoDirectory {
            name: name.to_owned(),
        })?;
        let path = dir.join(name);
        let not_found = |why: &str| PluginError::NotFound {
            name: name.to_owned(),
            dir: dir.display().to_string(),
            why: why.to_owned(),
        };
        let meta = std::fs::metadata(&path).map_err(|_| not_found("no such file"))?;
        if !meta.is_file() {
            return Err(not_found("not a regular file"));
        }
        {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o111 == 0 {
                return Err(not_found("not executable"));
            }
        }
        let stamp = (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len());
        if let Some((modified, len, plugin)) = self.cache.lock().expect("plugin cache").get(name)
            && (*modified, *len) == stamp
        {
            return Ok(plugin.clone());
        }
        let plugin = Arc::new(Plugin::load(name, &path, self.timeout).await?);
        debug!(plugin = name, protocol = ?plugin.protocol, version = %plugin.metadata.version, "plugin loaded");
        self.cache
            .lock()
            .expect("plugin cache")
            .insert(name.to_owned(), (stamp.0, stamp.1, plugin.clone()));
        Ok(plugin)
    }

    /// The plugins of `refs`, in order, ready to run.
    ///
    /// # Errors
    /// The first plugin that cannot be loaded.
    pub async fn resolve(&self, refs: &[PluginRef]) -> Result<Plugins, PluginError> {
        let mut steps = Vec::with_capacity(refs.len());
        for r in refs {
            steps.push((self.load(&r.name).await?, r.extras.clone()));
        }
        Ok(Plugins {
            steps,
            ..Plugins::default()
        })
    }
}

/// What the plugins decided for one object.
// As with `transform::Outcome`: consumed at once, so not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Copy this (possibly patched) object.
    Keep(DynamicObject),
    /// Do not copy the object; a DR copy made by dr-syncer goes as if the source object were gone.
    WhiteOut {
        /// The plugin that whited it out.
        plugin: String,
    },
}

/// The plugins a sync runs, in order, each with its extras.
#[derive(Debug, Clone)]
pub struct Plugins {
    steps: Vec<(Arc<Plugin>, BTreeMap<String, String>)>,
    concurrency: usize,
}

impl Default for Plugins {
    fn default() -> Self {
        Plugins {
            steps: Vec::new(),
            concurrency: 4,
        }
    }
}

impl Plugins {
    /// No plugins.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether there are no plugins.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The plugins' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.steps.iter().map(|(p, _)| p.name()).collect()
    }

    /// At most `n` processes of a Crane-protocol plugin at once (default 4, at least 1).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Run every plugin on `objects` (each with its type), in order; an object whited out or failed by one
    /// plugin is not given to the next. The results are in the order of `objects`. `quiet_site`: the DR
    /// namespace is kept quiet, and this tells whether a workload runs (the engine passes
    /// `activation::is_running`): a patch that starts one fails the object. `None` on the live site.
    pub async fn run(
        &self,
        objects: Vec<(ResourceType, DynamicObject)>,
        quiet_site: Option<RunningCheck>,
    ) -> Vec<Result<Verdict, TransformError>> {
        let (types, objects): (Vec<_>, Vec<_>) = objects.into_iter().unzip();
        let mut results: Vec<Result<Verdict, TransformError>> =
            objects.into_iter().map(|o| Ok(Verdict::Keep(o))).collect();
        for (plugin, extras) in &self.steps {
            // The objects still kept, with their positions.
            let mut positions = Vec::new();
            let mut inputs = Vec::new();
            for (i, r) in results.iter_mut().enumerate() {
                if matches!(r, Ok(Verdict::Keep(_))) {
                    // Taken out; the plugin's result goes back into this place below.
                    let placeholder = Err(TransformError {
                        transformer: format!("plugin {}", plugin.name),
                        object: String::new(),
                        message: "no result".into(),
                    });
                    if let Ok(Verdict::Keep(obj)) = std::mem::replace(r, placeholder) {
                        positions.push(i);
                        inputs.push((
                            StageContext {
                                resource: types[i].clone(),
                                quiet_site,
                            },
                            obj,
                        ));
                    }
                }
            }
            let outputs = match plugin.protocol {
                Protocol::Crane => {
                    stream::iter(inputs)
                        .map(|(ctx, obj)| async move { process::crane(plugin, extras, obj, &ctx).await })
                        .buffered(self.concurrency)
                        .collect::<Vec<_>>()
                        .await
                }
                Protocol::JsonLines => process::json_lines(plugin, extras, inputs).await,
            };
            // (One result per object; were one missing, its place keeps the "no result" failure.)
            debug_assert_eq!(outputs.len(), positions.len());
            for (i, out) in positions.into_iter().zip(outputs) {
                results[i] = out;
            }
        }
        results
    }
}

/// Whether a workload of a type runs (replicas above 0, not suspended, …).
pub type RunningCheck = fn(&ResourceType, &DynamicObject) -> bool;

/// What a plugin's answer is checked against: the object's type, and on a quiet DR site how to tell a
/// running workload.
#[derive(Debug, Clone)]
pub(crate) struct StageContext {
    resource: ResourceType,
    quiet_site: Option<RunningCheck>,
}

/// A plugin's response to one object.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Response {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    is_white_out: bool,
    #[serde(default)]
    patches: Option<Value>,
    #[serde(default)]
    error: Option<String>,
}

/// The request for one object: the object's JSON with `extras` added at the top level.
fn request(obj: &DynamicObject, extras: &BTreeMap<String, String>) -> Result<Value, String> {
    let mut v = serde_json::to_value(obj).map_err(|e| format!("cannot serialise the object: {e}"))?;
    if !extras.is_empty()
        && let Some(map) = v.as_object_mut()
    {
        map.insert("extras".into(), serde_json::to_value(extras).unwrap_or_default());
    }
    Ok(v)
}

/// What a JSON (de)serialisation error says, without the values it may quote (they may be the object's
/// data, a Secret's say): its category and position.
fn json_problem(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

/// At most [`MAX_MESSAGE`] characters of `text`.
fn clip(text: &str) -> String {
    let cut: String = text.chars().take(MAX_MESSAGE).collect();
    if cut.len() < text.len() {
        format!("{cut}… (cut)")
    } else {
        cut
    }
}

/// The `dr-syncer.io/` labels and annotations of an object: what dr-syncer records (ownership, the
/// source's replicas, the site state), never a plugin's to change.
fn markers(obj: &DynamicObject) -> Vec<(&'static str, &str, &str)> {
    [
        ("label", &obj.metadata.labels),
        ("annotation", &obj.metadata.annotations),
    ]
    .into_iter()
    .flat_map(|(kind, map)| {
        map.iter()
            .flatten()
            .filter(|(k, _)| k.starts_with(crate::annotations::PREFIX))
            .map(move |(k, v)| (kind, k.as_str(), v.as_str()))
    })
    .collect()
}

/// Apply a plugin's response to `obj`.
///
/// A response may change the object's content, never what dr-syncer relies on: its apiVersion, kind,
/// name and namespace, its `dr-syncer.io/` labels and annotations, nor — on a DR site kept quiet — start
/// a workload the built-in transformers quieted.
fn apply_response(
    plugin: &str,
    obj: DynamicObject,
    out: &[u8],
    ctx: &StageContext,
) -> Result<Verdict, TransformError> {
    let fail = |obj: &DynamicObject, m: String| TransformError::new(&format!("plugin {plugin}"), obj, m);
    // The output is not quoted: it may hold the object's data (a Secret's, say).
    let response: Response = serde_json::from_slice(out).map_err(|e| {
        fail(
            &obj,
            format!(
                "invalid output ({} bytes, not a plugin response: {})",
                out.len(),
                json_problem(&e)
            ),
        )
    })?;
    if let Some(error) = response.error {
        return Err(fail(
            &obj,
            format!("the plugin refused the object: {}", clip(&error)),
        ));
    }
    if response.version.as_deref().is_some_and(|v| v != "v1") {
        return Err(fail(&obj, "the response version is not v1".into()));
    }
    if response.is_white_out {
        return Ok(Verdict::WhiteOut {
            plugin: plugin.to_owned(),
        });
    }
    let patches = match response.patches {
        None | Some(Value::Null) => return Ok(Verdict::Keep(obj)),
        Some(p) => p,
    };
    let patch: json_patch::Patch = serde_json::from_value(patches).map_err(|e| {
        fail(
            &obj,
            format!("patches are not RFC 6902 operations: {}", json_problem(&e)),
        )
    })?;
    if patch.0.is_empty() {
        return Ok(Verdict::Keep(obj));
    }
    let mut doc = serde_json::to_value(&obj).map_err(|e| fail(&obj, json_problem(&e)))?;
    json_patch::patch(&mut doc, &patch).map_err(|e| fail(&obj, format!("the patches do not apply: {e}")))?;
    let patched: DynamicObject = serde_json::from_value(doc).map_err(|e| {
        fail(
            &obj,
            format!(
                "the patched object is not a Kubernetes object: {}",
                json_problem(&e)
            ),
        )
    })?;
    if !crate::object::same_identity(&obj, &patched) {
        return Err(fail(
            &obj,
            "the patches change the object's apiVersion, kind, name or namespace; refused".into(),
        ));
    }
    if markers(&obj) != markers(&patched) {
        return Err(fail(
            &obj,
            "the patches change dr-syncer's own labels or annotations (dr-syncer.io/…); refused".into(),
        ));
    }
    if let Some(is_running) = ctx.quiet_site
        && !is_running(&ctx.resource, &obj)
        && is_running(&ctx.resource, &patched)
    {
        return Err(fail(
            &obj,
            "the patches start a workload on a DR site that is kept quiet; refused".into(),
        ));
    }
    Ok(Verdict::Keep(patched))
}

#[cfg(test)]
mod tests;
