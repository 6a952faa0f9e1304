//! [`KubeApplier`]: server-side apply with no-op detection against the live DR objects.

mod immutable;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use kube::{
    Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    core::{DynamicObject, TypeMeta},
};
use serde_json::Value;

use super::{
    FIELD_MANAGER,
    calls::{Calls, is_already_exists, is_not_found, is_retryable},
    dynamic::{api_for, get_one, list_all, with_types},
    ownership,
};
use crate::{
    annotations,
    apply::{Applier, ApplyAction, ApplyError, ApplyOptions, ApplyResult, ObjectDiff},
    diff,
    resource::{ObjectKey, ResourceType},
    transform::{annotate, annotation},
};

/// Cache key: `resource.group` and namespace.
type CacheKey = (String, Option<String>);

/// Writes to a cluster: objects that do not exist yet are created with POST, existing ones are updated
/// with server-side apply (field manager `dr-syncer` for both; conflicts forced: dr-syncer is the
/// authority for the fields it sends, so a hand edit of one of them on the DR side is repaired).
///
/// # Creates and field ownership
/// The API server takes a create markedly faster than a server-side apply, which is what a first copy
/// does for every object. Fields created by POST belong to dr-syncer's `Update` entry in
/// `managedFields`, which a later apply would never remove; so an update whose desired state lacks a field
/// that entry still owns is written as one merge patch that nulls the dropped fields and converts the
/// entry into the `Apply` entry (the details are in the private `ownership` module). Either way one change
/// costs one write — but for a takeover where another manager owns something inside a list dr-syncer
/// sends (a merge patch would replace the list whole): two writes, the `managedFields`, then the apply.
///
/// # No-op detection
/// [`Applier::prepare`] lists the live DR objects of each type (one list per type and namespace); `apply`
/// compares the desired object with the live one ([`crate::diff`]) and writes only when they differ, so a
/// sync of an unchanged namespace makes no write request. Each write records the desired object's
/// fingerprint in `dr-syncer.io/desired-hash` (so a field removed at the source is removed on the DR side
/// too) and the time in `dr-syncer.io/last-synced`. Live objects are held (and returned by
/// [`Applier::live`]) without `metadata.managedFields`.
///
/// # Compact caches
/// An applier kept between syncs (continuous mode keeps one per DR namespace) can be compacted
/// ([`KubeApplier::compact`]): each live object is then held as the one fact an exact no-op check needs —
/// the desired state it was last found to hold, as a fingerprint — instead of the object (tens of bytes
/// instead of kilobytes). A desired state with that fingerprint is unchanged without a request; any other
/// is compared with the object read afresh (one GET), so drift and changes are found exactly as before.
///
/// # Immutable fields
/// When the API server rejects a change to an immutable field, the mapping's policy decides
/// (`ApplyOptions::immutable`): `NoChange` (skip, with one Warning Event on the DR object per desired
/// state), `Recreate`, `RecreateWithPodDrain` (evict the workload's pods through the eviction API, which
/// honours PodDisruptionBudgets, then recreate), `PartialUpdate` (apply everything but the immutable
/// fields), `ForceUpdate` (foreground deletion, wait, create). PersistentVolumeClaims are recreated only
/// when an override names them ([`crate::config::ImmutablePolicy::handling_for`]).
pub struct KubeApplier {
    pub(super) client: Client,
    pub(super) calls: Calls,
    cache: RwLock<HashMap<CacheKey, HashMap<String, Held>>>,
    /// Immutable rejections already reported: (object, desired hash) → the live resourceVersion then.
    rejected: Mutex<HashMap<(ObjectKey, String), Option<String>>>,
}

impl std::fmt::Debug for KubeApplier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeApplier").finish_non_exhaustive()
    }
}

pub(super) fn apply_error(key: &ObjectKey, e: &kube::Error) -> ApplyError {
    let message = match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    };
    ApplyError::new(key, message, is_retryable(e))
        .with_category(super::calls::category_of(e))
        .with_cause(crate::error::kube_api::cause_of(e))
}

/// The desired object as compared with the live one: without `apiVersion`/`kind` (list items lack them)
/// and without `dr-syncer.io/last-synced` (it changes with every write).
fn comparable(obj: &DynamicObject) -> Value {
    let mut v = serde_json::to_value(obj).unwrap_or(Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
    }
    if let Some(a) = v
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(annotations::LAST_SYNCED);
    }
    v
}

/// The fingerprint of `want` without the activation state a drill switches (Deployment/StatefulSet
/// replicas, CronJob `suspend`, a DaemonSet's quiet node-selector key, the `dr-syncer.io/active` mark),
/// so a cutover or failback does not make the next sync rewrite every workload for bookkeeping alone;
/// their values are still compared field by field ([`diff::is_subset`]), and they are always present in a
/// desired object, so no removal of them can go unnoticed. Those fields are taken out of `want` for the
/// hashing and put back (no copy of the object: this runs for every object of every sync).
fn activation_neutral_fingerprint(want: &mut Value, types: Option<&TypeMeta>) -> (String, String) {
    let (api_version, kind) = types.map_or(("", ""), |t| (t.api_version.as_str(), t.kind.as_str()));
    let field = match (api_version, kind) {
        ("apps/v1", "Deployment" | "StatefulSet") => Some("replicas"),
        ("batch/v1", "CronJob") => Some("suspend"),
        _ => None,
    };
    let mut taken: Vec<(&'static str, &'static str, Value)> = Vec::new();
    let mut take = |want: &mut Value, at: &'static str, key: &'static str| {
        if let Some(v) = want
            .pointer_mut(at)
            .and_then(Value::as_object_mut)
            .and_then(|m| m.remove(key))
        {
            taken.push((at, key, v));
        }
    };
    if let Some(field) = field {
        take(want, "/spec", field);
    }
    if (api_version, kind) == ("apps/v1", "DaemonSet") {
        take(
            want,
            "/spec/template/spec/nodeSelector",
            annotations::QUIET_NODE_SELECTOR_KEY,
        );
    }
    take(want, "/metadata/annotations", annotations::ACTIVE);
    let hash = diff::fingerprint(want);
    let mut activation = String::new();
    for (at, key, v) in taken {
        activation.push_str(&format!("|{at}/{key}={v}"));
        if let Some(m) = want.pointer_mut(at).and_then(Value::as_object_mut) {
            m.insert(key.to_owned(), v);
        }
    }
    (hash, activation)
}

/// Stamp the desired object with `dr-syncer.io/desired-hash`, the fingerprint of its comparable form
/// (which leaves out `last-synced` and any earlier hash); returns that form, stamped too, the hash, and
/// the activation values the hash leaves out (see [`verified_key`]).
/// One serialisation per object: this runs for every object of every sync.
fn stamp_desired_hash(desired: &mut DynamicObject) -> (Value, String, String) {
    let mut want = comparable(desired);
    if let Some(a) = want
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(annotations::DESIRED_HASH);
    }
    let (hash, activation) = activation_neutral_fingerprint(&mut want, desired.types.as_ref());
    annotate(desired, annotations::DESIRED_HASH, hash.clone());
    want["metadata"]["annotations"][annotations::DESIRED_HASH] = Value::String(hash.clone());
    (want, hash, activation)
}

/// Whether a live workload is active: replicas above 0 (Deployments, StatefulSets), or a CronJob not
/// suspended.
fn left_active(rt: &ResourceType, live: &DynamicObject) -> bool {
    if rt.is("batch", "CronJob") {
        return live.data.pointer("/spec/suspend").and_then(Value::as_bool) == Some(false);
    }
    live.data
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .is_some_and(|r| r > 0)
}

/// A live object as the applier holds it.
#[derive(Clone)]
struct Live {
    /// The object, as [`Applier::live`] returns it: without `metadata.managedFields`. No comparison reads
    /// them, and on a server-side-applied object they are often as large as the rest of it, so a cache of
    /// 10,000 DR objects would otherwise hold them all twice over.
    obj: DynamicObject,
    /// The field set of dr-syncer's `Update` entry (the object was created by POST), as compact JSON: an
    /// update checks it for fields the desired state drops ([`ownership`]).
    created: Option<Box<str>>,
    /// How the object's lists merge, read from its `managedFields` before they are dropped: items other
    /// managers added to keyed lists are no difference ([`diff::ListShapes`]).
    /// (Shared: a cache hit clones the entry.)
    lists: Arc<diff::ListShapes>,
    /// The drill's field manager set the workload's activation state (`spec.replicas`, `spec.suspend`):
    /// see [`drill_set_activation`].
    drill_activation: bool,
    /// The desired state this very object was found to hold ([`verified_key`]), kept by a compaction.
    verified: Option<Box<str>>,
}

/// A cached live object: whole, or compacted to what proves a desired state unchanged.
#[derive(Clone)]
enum Held {
    /// (Boxed: a compacted entry takes a few words, not the size of a whole one.)
    Full(Box<Live>),
    /// The object exists; it was last found to hold the desired state with this [`verified_key`] (none:
    /// not compared since it was read or written).
    Compact(Option<Box<str>>),
}

/// What identifies a desired state exactly, activation included: the activation-neutral desired hash
/// and the activation values taken out of it.
fn verified_key(hash: &str, activation: &str) -> Box<str> {
    format!("{hash}{activation}").into_boxed_str()
}

/// Whether a drill (field manager [`DRILL_FIELD_MANAGER`](super::DRILL_FIELD_MANAGER)) owns the
/// activation state of a workload (`spec.replicas` of Deployments and StatefulSets, `spec.suspend` of
/// CronJobs). A sync keeps that state as it is, active mark or not: the drill is its authority. (A cutover
/// marks the namespace active before it activates the DR workloads, so a sync holds off them anyway; this
/// covers a mark removed by hand after a cutover, and versions that activated first.) A hand edit of the
/// field moves its ownership away from the drill, so a DR workload scaled by hand in a quiet namespace is
/// still quieted again.
///
/// Only an *active* state the drill left is kept ([`left_active`]): the quiet state a failback's drill
/// leaves behind is the sync's to change again (a `scale-override` label, `scaleToZero: false`).
fn drill_set_activation(entries: &[ManagedFieldsEntry]) -> bool {
    entries.iter().any(|e| {
        e.manager.as_deref() == Some(super::DRILL_FIELD_MANAGER)
            && ownership::on_main_resource(e)
            && e.fields_v1.as_ref().is_some_and(|f| {
                f.0.pointer("/f:spec/f:replicas").is_some() || f.0.pointer("/f:spec/f:suspend").is_some()
            })
    })
}

/// [`Live::created`], parsed: read only when an object is written, not on every comparison.
fn parse_created(text: Option<Box<str>>) -> Option<Value> {
    serde_json::from_str(&text?).ok()
}

fn lean(mut obj: DynamicObject) -> Live {
    let created = ownership::created_fields(obj.metadata.managed_fields.as_deref().unwrap_or_default())
        .map(|f| f.to_string().into_boxed_str());
    // The entries of the main resource in the object's own version (a list may merge differently in
    // another version of a type).
    let version = obj.types.as_ref().map(|t| t.api_version.as_str());
    let lists = Arc::new(diff::ListShapes::from_field_sets(
        obj.metadata
            .managed_fields
            .iter()
            .flatten()
            .filter(|e| {
                ownership::on_main_resource(e) && (version.is_none() || e.api_version.as_deref() == version)
            })
            .filter_map(|e| e.fields_v1.as_ref().map(|f| &f.0)),
    ));
    let drill_activation = drill_set_activation(obj.metadata.managed_fields.as_deref().unwrap_or_default());
    obj.metadata.managed_fields = None;
    Live {
        obj,
        created,
        lists,
        drill_activation,
        verified: None,
    }
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl KubeApplier {
    /// An applier on `client`, with the limits and retries of `calls`.
    pub fn new(client: Client, calls: Calls) -> Self {
        KubeApplier {
            client,
            calls,
            cache: RwLock::new(HashMap::new()),
            rejected: Mutex::new(HashMap::new()),
        }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn cache_key(rt: &ResourceType, namespace: Option<&str>) -> CacheKey {
        (
            rt.resource_group(),
            namespace.filter(|_| rt.namespaced).map(str::to_owned),
        )
    }

    pub(super) fn remember(&self, rt: &ResourceType, key: &ObjectKey, obj: Option<DynamicObject>) {
        self.remember_live(rt, key, obj.map(|o| lean(with_types(o, rt))));
    }

    fn cached(&self, rt: &ResourceType, key: &ObjectKey) -> Option<Option<Held>> {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        cache
            .get(&Self::cache_key(rt, key.namespace.as_deref()))
            .map(|entries| entries.get(&key.name).cloned())
    }

    /// The live object of `key`: from the cache when it holds it whole, else read afresh (and cached
    /// whole again).
    async fn live_entry(&self, rt: &ResourceType, key: &ObjectKey) -> Result<Option<Live>, ApplyError> {
        match self.cached(rt, key) {
            Some(Some(Held::Full(live))) => Ok(Some(*live)),
            Some(None) => Ok(None),
            Some(Some(Held::Compact(_))) | None => {
                let live = self.get_live(rt, key).await.map_err(|e| apply_error(key, &e))?;
                self.remember_live(rt, key, live.clone());
                Ok(live)
            }
        }
    }

    /// Cache `live` (just read or written; `None`: gone) for `key`, where its type and namespace are
    /// cached.
    fn remember_live(&self, rt: &ResourceType, key: &ObjectKey, live: Option<Live>) {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if let Some(entries) = cache.get_mut(&Self::cache_key(rt, key.namespace.as_deref())) {
            match live {
                Some(l) => entries.insert(key.name.clone(), Held::Full(Box::new(l))),
                None => entries.remove(&key.name),
            };
        }
    }

    /// Record that the cached object of `key` holds the desired state `verified` (it compared equal).
    fn mark_verified(&self, rt: &ResourceType, key: &ObjectKey, verified: Box<str>) {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if let Some(Held::Full(live)) = cache
            .get_mut(&Self::cache_key(rt, key.namespace.as_deref()))
            .and_then(|entries| entries.get_mut(&key.name))
        {
            live.verified = Some(verified);
        }
    }

    /// Compact the cache when it holds more than `keep_whole` whole objects: every object is then held
    /// as the fingerprint of the desired state it was last found to hold (see *Compact caches* above).
    /// Returns how many objects were compacted.
    pub fn compact(&self, keep_whole: usize) -> usize {
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        let whole = cache
            .values()
            .flat_map(HashMap::values)
            .filter(|h| matches!(h, Held::Full(_)))
            .count();
        if whole <= keep_whole {
            return 0;
        }
        for entries in cache.values_mut() {
            for held in entries.values_mut() {
                if let Held::Full(live) = held {
                    *held = Held::Compact(live.verified.take());
                }
            }
            entries.shrink_to_fit();
        }
        whole
    }

    /// Fetch one object from the server (bypassing the cache).
    pub(super) async fn get(
        &self,
        rt: &ResourceType,
        key: &ObjectKey,
    ) -> Result<Option<DynamicObject>, ApplyError> {
        Ok(self
            .get_live(rt, key)
            .await
            .map_err(|e| apply_error(key, &e))?
            .map(|l| l.obj))
    }

    /// [`KubeApplier::get`], with the field set of dr-syncer's `Update` entry.
    async fn get_live(&self, rt: &ResourceType, key: &ObjectKey) -> Result<Option<Live>, kube::Error> {
        get_one(
            &self.client,
            &self.calls,
            rt,
            key.namespace.as_deref(),
            &key.name,
            true,
        )
        .await
        .map(|o| o.map(lean))
    }

    /// Server-side apply of `desired`; the object the server returns becomes the cached live one.
    pub(super) async fn server_side_apply(
        &self,
        rt: &ResourceType,
        key: &ObjectKey,
        desired: &DynamicObject,
    ) -> Result<(), kube::Error> {
        let api = api_for(&self.client, rt, key.namespace.as_deref());
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(desired);
        let written = self
            .calls
            .run(&format!("apply {key}"), || api.patch(&key.name, &params, &patch))
            .await?;
        self.remember(rt, key, Some(written));
        Ok(())
    }

    /// Create `desired` with POST (field manager `dr-syncer`): a first copy writes most objects this way,
    /// because the server takes a create markedly faster than a server-side apply (see
    /// [`super::ownership`] for how those fields are taken over later). When the object exists after all
    /// (created since the live objects were listed), it is updated instead.
    async fn create_or_apply(
        &self,
        rt: &ResourceType,
        key: &ObjectKey,
        desired: &DynamicObject,
    ) -> Result<(), kube::Error> {
        let api = api_for(&self.client, rt, key.namespace.as_deref());
        let params = PostParams {
            dry_run: false,
            field_manager: Some(FIELD_MANAGER.into()),
        };
        match self
            .calls
            .run(&format!("create {key}"), || api.create(&params, desired))
            .await
        {
            Ok(written) => {
                self.remember(rt, key, Some(written));
                Ok(())
            }
            // (Also what a retried create meets when the first attempt's answer was lost.)
            Err(e) if is_already_exists(&e) => {
                let created = self
                    .get_live(rt, key)
                    .await?
                    .and_then(|l| parse_created(l.created));
                self.update(rt, key, desired, created.as_ref()).await
            }
            Err(e) => Err(e),
        }
    }

    /// Update an existing object: with server-side apply, or — when the live object still has
    /// dr-syncer's `Update` entry (`created`: its field set, from a create by POST) and `desired` lacks a
    /// field that entry owns — with the one merge patch that removes the field and takes the entry over
    /// ([`super::ownership`]).
    pub(super) async fn update(
        &self,
        rt: &ResourceType,
        key: &ObjectKey,
        desired: &DynamicObject,
        created: Option<&Value>,
    ) -> Result<(), kube::Error> {
        if let Some(fields) = created {
            let body = serde_json::to_value(desired).map_err(kube::Error::SerdeError)?;
            if ownership::lacks_owned_field(fields, &body) {
                return self.take_over(rt, key, desired, &body).await;
            }
        }
        self.server_side_apply(rt, key, desired).await
    }

    /// The takeover write of [`KubeApplier::update`]: read the object with its `managedFields`, then
    /// merge-patch `desired` onto it ([`ownership::takeover_patch`]); tried again (read included) when
    /// the object changed in between. When another manager owns something inside a list `desired`
    /// sends, which a merge patch would replace whole, the takeover is two writes instead: the
    /// `managedFields` alone (a JSON patch, so no field changes), then the apply. (`body`: `desired` as
    /// JSON, which [`KubeApplier::update`] has already rendered.)
    async fn take_over(
        &self,
        rt: &ResourceType,
        key: &ObjectKey,
        desired: &DynamicObject,
        body: &Value,
    ) -> Result<(), kube::Error> {
        let api = api_for(&self.client, rt, key.namespace.as_deref());
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let full = self
                .calls
                .run(&format!("get {key}"), || api.get(&key.name))
                .await?;
            let entries = full.metadata.managed_fields.as_deref().unwrap_or_default();
            let Some(converted) = ownership::converted(entries) else {
                // Taken over since the live object was read: an apply does it all.
                return self.server_side_apply(rt, key, desired).await;
            };
            let others = ownership::others_fields(entries);
            let rv = full.metadata.resource_version.as_deref();
            // Two writes: the managedFields alone now, the apply after it.
            let two_writes = ownership::others_own_list_contents(&others, body);
            let patch: Patch<Value> = if two_writes {
                Patch::Json(
                    serde_json::from_value(serde_json::json!([
                        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
                        {"op": "replace", "path": "/metadata/managedFields", "value": converted},
                    ]))
                    .map_err(kube::Error::SerdeError)?,
                )
            } else {
                let ours = ownership::applied_fields(&converted).cloned().unwrap_or_default();
                Patch::Merge(ownership::takeover_patch(&ours, &others, body, &converted, rv))
            };
            tracing::debug!(object = %key, two_writes, "taking over fields dr-syncer created by POST");
            let written = self
                .calls
                .run(&format!("take over {key}"), || {
                    api.patch(&key.name, &params, &patch)
                })
                .await;
            match written {
                Ok(_) if two_writes => return self.server_side_apply(rt, key, desired).await,
                Ok(written) => {
                    self.remember(rt, key, Some(written));
                    return Ok(());
                }
                // Changed since it was read (or a JSON patch's test failed): read it again.
                Err(kube::Error::Api(s))
                    if attempt < 3 && (s.code == 409 || (s.code == 422 && s.message.contains("test"))) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Delete one object; `Ok(false)` when it did not exist.
    pub(super) async fn delete_object(
        &self,
        rt: &ResourceType,
        key: &ObjectKey,
        params: &DeleteParams,
    ) -> Result<bool, ApplyError> {
        let api = api_for(&self.client, rt, key.namespace.as_deref());
        let r = self
            .calls
            .run(&format!("delete {key}"), || api.delete(&key.name, params))
            .await;
        self.remember(rt, key, None);
        match r {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(apply_error(key, &e)),
        }
    }

    /// Record an immutable rejection left as it is (`NoChange`); returns whether it is new (a Warning
    /// Event is due). Bounded: the record is cleared when it grows past 10,000 entries.
    pub(super) fn first_rejection(
        &self,
        key: &ObjectKey,
        desired_hash: &str,
        live_rv: Option<String>,
    ) -> bool {
        let mut rejected = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        if rejected.len() > 10_000 {
            rejected.clear();
        }
        rejected
            .insert((key.clone(), desired_hash.to_owned()), live_rv)
            .is_none()
    }

    /// Whether this desired state was already rejected against this very live object (same
    /// resourceVersion): then a `NoChange` object is skipped without another request.
    fn known_rejection(&self, key: &ObjectKey, desired_hash: &str, live: &DynamicObject) -> bool {
        let rejected = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
        rejected
            .get(&(key.clone(), desired_hash.to_owned()))
            .is_some_and(|rv| rv.is_some() && *rv == live.metadata.resource_version)
    }
}

#[async_trait::async_trait]
impl Applier for KubeApplier {
    async fn apply(
        &self,
        rt: &ResourceType,
        desired: &DynamicObject,
        options: ApplyOptions,
    ) -> Result<ApplyResult, ApplyError> {
        let key = rt.key_of(desired);
        if key.name.is_empty() {
            return Err(ApplyError::new(&key, "object has no name", false));
        }
        // (`last-synced` from the input, if any, is ignored by `comparable` and replaced on a write.)
        let mut desired = with_types(desired.clone(), rt);
        let (mut want, mut hash, mut activation) = stamp_desired_hash(&mut desired);
        // A compacted object whose verified desired state is this one: unchanged, without a request.
        if let Some(Some(Held::Compact(Some(verified)))) = self.cached(rt, &key)
            && verified_key(&hash, &activation) == verified
            && !options.dry_run
        {
            return Ok(ApplyResult {
                action: ApplyAction::Unchanged,
                diff: None,
            });
        }
        let (live, created, lists, drill_activation) = self
            .live_entry(rt, &key)
            .await?
            .map_or((None, None, Arc::default(), false), |l| {
                (Some(l.obj), l.created, l.lists, l.drill_activation)
            });
        // Only dr-syncer's own objects are changed (or adopted ones, when asked).
        if let Some(live) = &live
            && !options.adopt
            && rt.kind != "Namespace"
            && annotation(live, annotations::SYNCED_BY).is_none()
        {
            return Ok(ApplyResult {
                action: ApplyAction::Skipped(crate::apply::NOT_MANAGED.into()),
                diff: None,
            });
        }
        if drill_activation
            && let Some(live) = &live
            && left_active(rt, live)
        {
            crate::activation::carry_live_activation(rt, &mut desired, live);
            (want, hash, activation) = stamp_desired_hash(&mut desired);
        }
        let have = live.as_ref().map(comparable);
        if let Some(have) = &have
            && diff::is_subset_in(&want, have, &lists)
        {
            self.mark_verified(rt, &key, verified_key(&hash, &activation));
            return Ok(ApplyResult {
                action: ApplyAction::Unchanged,
                diff: None,
            });
        }
        // Settled immutable differences: a PartialUpdate already applied this desired state except its
        // immutable fields; a NoChange rejection of it stands against this very live object.
        if let (Some(live), Some(have)) = (&live, &have)
            && annotation(live, annotations::DESIRED_HASH) == Some(hash.as_str())
        {
            let handling = options.immutable.handling_for(rt);
            if handling == crate::api::ImmutableHandling::PartialUpdate
                && let Some(fields) = annotation(live, annotations::IMMUTABLE_FIELDS)
            {
                let fields: Vec<String> = fields
                    .split(',')
                    .filter(|f| !f.is_empty())
                    .map(str::to_owned)
                    .collect();
                let mut settled = immutable::keep_immutable(rt, &desired, live, &fields);
                annotate(&mut settled, annotations::IMMUTABLE_FIELDS, fields.join(","));
                if diff::is_subset_in(&comparable(&settled), have, &lists) {
                    return Ok(ApplyResult {
                        action: ApplyAction::Unchanged,
                        diff: None,
                    });
                }
            }
        }
        if let Some(live) = &live
            && options.immutable.handling_for(rt) == crate::api::ImmutableHandling::NoChange
            && self.known_rejection(&key, &hash, live)
        {
            return Ok(ApplyResult {
                action: ApplyAction::Skipped(
                    "immutable field changed, left as it is (immutableResourceConfig NoChange)".into(),
                ),
                diff: None,
            });
        }
        // The field-by-field difference: for plans and updates. (An object a sync creates is all new; its
        // difference would cost a rendering of every field, on the first copy's hot path, and say nothing.)
        let changes = ObjectDiff {
            changes: if options.dry_run || live.is_some() {
                diff::changes_in(have.as_ref(), &want, &lists)
            } else {
                Vec::new()
            },
        };
        let action = if live.is_some() {
            ApplyAction::Updated
        } else {
            ApplyAction::Created
        };
        if options.dry_run {
            return Ok(ApplyResult {
                action,
                diff: Some(changes),
            });
        }
        annotate(&mut desired, annotations::LAST_SYNCED, now_rfc3339());
        let created = parse_created(created);
        let written = match &live {
            None => self.create_or_apply(rt, &key, &desired).await,
            Some(_) => self.update(rt, &key, &desired, created.as_ref()).await,
        };
        match written {
            Ok(_) => Ok(ApplyResult {
                diff: live.is_some().then_some(changes),
                action,
            }),
            Err(e) if immutable::is_immutable_rejection(&e) => {
                self.on_immutable(
                    rt,
                    &key,
                    (desired, created.as_ref()),
                    live,
                    &e,
                    &options,
                    &hash,
                    changes,
                )
                .await
            }
            Err(e) => Err(apply_error(&key, &e)),
        }
    }

    async fn delete(
        &self,
        rt: &ResourceType,
        key: &ObjectKey,
        options: ApplyOptions,
    ) -> Result<bool, ApplyError> {
        let live = self.live(rt, key).await?;
        if options.dry_run {
            return Ok(live.is_some());
        }
        // Delete exactly the object that was looked at: if it changed since (another writer took it
        // over), the server refuses (409) instead of deleting something else.
        let mut params = DeleteParams::background();
        if let Some(live) = &live {
            params.preconditions = Some(kube::api::Preconditions {
                uid: live.metadata.uid.clone(),
                resource_version: live.metadata.resource_version.clone(),
            });
        }
        self.delete_object(rt, key, &params).await
    }

    async fn live(&self, rt: &ResourceType, key: &ObjectKey) -> Result<Option<DynamicObject>, ApplyError> {
        Ok(self.live_entry(rt, key).await?.map(|l| l.obj))
    }

    async fn list_managed<'a>(
        &self,
        rt: &ResourceType,
        namespace: Option<&'a str>,
        synced_by: &str,
    ) -> Result<Vec<DynamicObject>, ApplyError> {
        let ck = Self::cache_key(rt, namespace);
        let cached: Option<Vec<DynamicObject>> = {
            let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
            // (A compacted cache cannot answer: the objects are listed afresh.)
            cache.get(&ck).and_then(|e| {
                e.values()
                    .map(|h| match h {
                        Held::Full(l) => Some(l.obj.clone()),
                        Held::Compact(_) => None,
                    })
                    .collect()
            })
        };
        let all = match cached {
            Some(all) => all,
            None => list_all(&self.client, &self.calls, rt, namespace, None, true)
                .await
                .map_err(|e| {
                    ApplyError::new(format!("{rt} in {namespace:?}"), e.to_string(), is_retryable(&e))
                })?,
        };
        let mut managed: Vec<DynamicObject> = all
            .into_iter()
            .filter(|o| annotation(o, annotations::SYNCED_BY) == Some(synced_by))
            .collect();
        managed.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Ok(managed)
    }

    async fn prepare<'a>(
        &self,
        namespace: Option<&'a str>,
        types: &[ResourceType],
    ) -> Result<(), ApplyError> {
        let lists: Vec<(CacheKey, Vec<DynamicObject>)> = stream::iter(types.iter().cloned())
            .map(|rt| async move {
                let rt = &rt;
                let items = list_all(&self.client, &self.calls, rt, namespace, None, true)
                    .await
                    .map_err(|e| {
                        ApplyError::new(
                            format!("{rt} in {}", namespace.unwrap_or("the cluster")),
                            e.to_string(),
                            is_retryable(&e),
                        )
                    })?;
                Ok::<_, ApplyError>((Self::cache_key(rt, namespace), items))
            })
            .buffered(8)
            .try_collect()
            .await?;
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        for (ck, items) in lists {
            let entries = items
                .into_iter()
                .filter_map(|o| Some((o.metadata.name.clone()?, Held::Full(Box::new(lean(o))))))
                .collect();
            cache.insert(ck, entries);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_stamped_form_is_the_comparable_form_of_the_stamped_object() {
        for meta in [
            json!({"name": "a"}),
            json!({"name": "a", "annotations": {"x": "1", "dr-syncer.io/last-synced": "t"}}),
            json!({"name": "a", "annotations": {"dr-syncer.io/desired-hash": "old"}}),
        ] {
            let mut obj: DynamicObject = serde_json::from_value(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}),
            )
            .unwrap();
            let (want, hash, _) = stamp_desired_hash(&mut obj);
            assert_eq!(want, comparable(&obj));
            assert_eq!(annotation(&obj, annotations::DESIRED_HASH), Some(hash.as_str()));
            // The hash does not depend on an earlier hash or on last-synced. (For an object that came
            // without any annotations it does: the emptied map is hashed as `{}`. The built-in chain
            // always annotates, so that case does not arise in a sync.)
            if meta.get("annotations").is_some() {
                let mut again = obj.clone();
                annotate(&mut again, annotations::LAST_SYNCED, "later");
                assert_eq!(stamp_desired_hash(&mut again).1, hash);
            }
        }
    }

    #[test]
    fn the_activation_fields_left_out_of_the_hash_stay_in_the_stamped_form() {
        let active = json!({"dr-syncer.io/active": "true", "x": "1"});
        for (api_version, kind, spec) in [
            ("apps/v1", "Deployment", json!({"replicas": 3, "paused": null})),
            ("apps/v1", "StatefulSet", json!({"replicas": 0})),
            (
                "batch/v1",
                "CronJob",
                json!({"suspend": true, "schedule": "* * * * *"}),
            ),
            (
                "apps/v1",
                "DaemonSet",
                json!({"template": {"spec": {"nodeSelector": {"pool": "a", "dr-syncer.io/quiet": "true"}}}}),
            ),
            ("apps/v1", "DaemonSet", json!({"template": {}})),
        ] {
            let mut obj: DynamicObject = serde_json::from_value(json!({
                "apiVersion": api_version, "kind": kind,
                "metadata": {"name": "w", "annotations": active}, "spec": spec
            }))
            .unwrap();
            let (want, _, _) = stamp_desired_hash(&mut obj);
            assert_eq!(want, comparable(&obj), "{kind}");
            assert_eq!(want["spec"], spec, "{kind}");
            assert_eq!(
                want["metadata"]["annotations"]["dr-syncer.io/active"], "true",
                "{kind}"
            );
        }
    }

    fn hash_of(v: Value) -> String {
        let mut obj: DynamicObject = serde_json::from_value(v).unwrap();
        stamp_desired_hash(&mut obj).1
    }

    #[test]
    fn the_verified_key_tells_activation_states_apart() {
        let key = |replicas: i64, data: &str| {
            let mut obj: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "w", "annotations": {"a": data}}, "spec": {"replicas": replicas}
            }))
            .unwrap();
            let (_, hash, activation) = stamp_desired_hash(&mut obj);
            (hash, verified_key(&hash_of_key(&obj), &activation), activation)
        };
        let (h3, k3, _) = key(3, "1");
        let (h0, k0, _) = key(0, "1");
        assert_eq!(h3, h0, "the desired hash leaves the replicas out");
        assert_ne!(k3, k0, "the verified key does not");
        assert_eq!(key(3, "1").1, k3);
        assert_ne!(key(3, "2").1, k3);
    }

    fn hash_of_key(obj: &DynamicObject) -> String {
        annotation(obj, annotations::DESIRED_HASH).unwrap().to_owned()
    }

    #[test]
    fn the_hash_ignores_only_the_activation_state_of_workloads() {
        let deploy = |replicas: i64, active: Option<&str>| {
            let mut ann = json!({"a": "1"});
            if let Some(a) = active {
                ann["dr-syncer.io/active"] = json!(a);
            }
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "annotations": ann},
                   "spec": {"replicas": replicas, "template": {"spec": {"nodeSelector": {"pool": "a"}}}}})
        };
        assert_eq!(hash_of(deploy(0, None)), hash_of(deploy(3, None)));
        assert_eq!(hash_of(deploy(0, None)), hash_of(deploy(0, Some("true"))));
        let cron = |suspend: bool| {
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c", "annotations": {}},
                   "spec": {"suspend": suspend, "schedule": "* * * * *"}})
        };
        assert_eq!(hash_of(cron(true)), hash_of(cron(false)));
        let ds = |sel: Value| {
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d", "annotations": {}},
                   "spec": {"template": {"spec": {"nodeSelector": sel}}}})
        };
        assert_eq!(
            hash_of(ds(json!({"pool": "a"}))),
            hash_of(ds(json!({"pool": "a", "dr-syncer.io/quiet": "true"})))
        );
        // Everything else still counts: another node-selector key, replicas of a custom resource.
        assert_ne!(
            hash_of(ds(json!({"pool": "a"}))),
            hash_of(ds(json!({"pool": "b"})))
        );
        let widget = |replicas: i64| {
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "x", "annotations": {}},
                   "spec": {"replicas": replicas}})
        };
        assert_ne!(hash_of(widget(0)), hash_of(widget(3)));
        let mut d = deploy(3, None);
        d["spec"]["template"]["spec"]["nodeSelector"]["pool"] = json!("b");
        assert_ne!(hash_of(deploy(3, None)), hash_of(d));
    }
}
