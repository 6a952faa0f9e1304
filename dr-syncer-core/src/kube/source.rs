//! [`KubeSource`]: list and watch dynamic types on a cluster.

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{
    Client,
    core::DynamicObject,
    runtime::{WatchStreamExt, watcher},
};

use super::{
    calls::{Calls, is_retryable, is_unserved},
    dynamic::{api_for, get_one, list_all, with_types},
};
use crate::{
    resource::ResourceType,
    source::{BoxStream, ResourceSource, SourceError, SourceEvent, SourceObject, SourceScope},
};

/// Reads a cluster through the API server (see [`ResourceSource`] for the guarantees).
#[derive(Clone)]
pub struct KubeSource {
    client: Client,
    calls: Calls,
}

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSource").finish_non_exhaustive()
    }
}

pub(crate) fn source_error(context: String, e: &kube::Error) -> SourceError {
    SourceError::new(context, e.to_string(), is_retryable(e))
        .with_category(super::calls::category_of(e))
        .with_cause(crate::error::kube_api::cause_of(e))
}

impl KubeSource {
    /// A source on `client`, with the limits and retries of `calls`.
    pub fn new(client: Client, calls: Calls) -> Self {
        KubeSource { client, calls }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The names of the namespaces matching `selector` (for `namespaceSelector` mappings), sorted.
    ///
    /// # Errors
    /// When the list fails.
    pub async fn namespaces_matching(&self, selector: &LabelSelector) -> Result<Vec<String>, SourceError> {
        let rt = crate::engine::namespace_type();
        let sel = selector_string(selector);
        let list = list_all(&self.client, &self.calls, &rt, None, Some(&sel), false)
            .await
            .map_err(|e| source_error(format!("list namespaces matching {sel:?}"), &e))?;
        let mut names: Vec<String> = list.into_iter().filter_map(|n| n.metadata.name).collect();
        names.sort();
        Ok(names)
    }
}

/// Whether a watcher error may go away by itself (the watcher keeps retrying either way; a permanent one —
/// forbidden, type not served — is surfaced as such so callers can report it).
fn watch_error_is_transient(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(k)
        | watcher::Error::WatchStartFailed(k)
        | watcher::Error::WatchFailed(k) => is_retryable(k),
        watcher::Error::WatchError(s) => matches!(s.code, 410 | 429 | 500 | 502 | 503 | 504),
        _ => true,
    }
}

/// A watcher error as a [`SourceError`], with the API server's answer as its cause (so a caller can tell
/// a 403 from the rest: see [`SourceError::is_forbidden`]).
fn watch_error(rt: &ResourceType, e: &watcher::Error) -> SourceError {
    let err = SourceError::new(format!("watch {rt}"), e.to_string(), watch_error_is_transient(e));
    match e {
        watcher::Error::InitialListFailed(k)
        | watcher::Error::WatchStartFailed(k)
        | watcher::Error::WatchFailed(k) => err
            .with_category(super::calls::category_of(k))
            .with_cause(crate::error::kube_api::cause_of(k)),
        watcher::Error::WatchError(status) => err.with_cause(std::sync::Arc::new(status.as_ref().clone())),
        _ => err,
    }
}

/// A label selector in the API's query syntax (`app=web,tier in (a,b),!legacy`).
pub fn selector_string(sel: &LabelSelector) -> String {
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key), // DoesNotExist (validated beforehand)
        });
    }
    parts.join(",")
}

#[async_trait::async_trait]
impl ResourceSource for KubeSource {
    async fn list(&self, scope: &SourceScope) -> Result<Vec<SourceObject>, SourceError> {
        let ns = scope.namespace.as_deref();
        let per_type: Vec<Vec<SourceObject>> = stream::iter(scope.types.iter().cloned())
            .map(|rt| async move {
                let rt = &rt;
                let items = list_all(&self.client, &self.calls, rt, ns, None, false)
                    .await
                    .map_err(|e| {
                        let mut err =
                            source_error(format!("list {rt} in {}", ns.unwrap_or("the cluster")), &e);
                        if is_unserved(&e) {
                            err.message = format!("the source cluster does not serve {rt}");
                        }
                        err
                    })?;
                Ok::<_, SourceError>(
                    items
                        .into_iter()
                        .map(|object| SourceObject {
                            resource: rt.clone(),
                            object,
                        })
                        .collect(),
                )
            })
            .buffered(8)
            .try_collect()
            .await?;
        Ok(per_type.into_iter().flatten().collect())
    }

    fn watch(&self, scope: &SourceScope) -> BoxStream<'static, Result<SourceEvent, SourceError>> {
        let streams = scope.types.iter().map(|rt| {
            let api = api_for(&self.client, rt, scope.namespace.as_deref());
            let rt = rt.clone();
            // kube's watcher re-lists after 410 Gone and reconnects after errors; the default backoff
            // (exponential with jitter) spaces the attempts. Errors surface as items and the stream goes on.
            watcher(api, watcher::Config::default())
                .default_backoff()
                .map(move |event| {
                    let rt = rt.clone();
                    let obj = |o: DynamicObject| SourceObject {
                        object: with_types(o, &rt),
                        resource: rt.clone(),
                    };
                    match event {
                        Ok(watcher::Event::Init) => Ok(SourceEvent::Relisting(rt.clone())),
                        Ok(watcher::Event::InitDone) => Ok(SourceEvent::Resynced(rt.clone())),
                        Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                            Ok(SourceEvent::Applied(obj(o)))
                        }
                        Ok(watcher::Event::Delete(o)) => Ok(SourceEvent::Deleted(obj(o))),
                        Err(e) => Err(watch_error(&rt, &e)),
                    }
                })
                .boxed()
        });
        stream::select_all(streams).boxed()
    }

    async fn get<'a>(
        &self,
        resource: &ResourceType,
        namespace: Option<&'a str>,
        name: &str,
    ) -> Result<Option<DynamicObject>, SourceError> {
        get_one(&self.client, &self.calls, resource, namespace, name, false)
            .await
            .map_err(|e| source_error(format!("get {resource} {name}"), &e))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn selectors_render_in_query_syntax() {
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"dr": "yes"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "team", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        assert_eq!(
            selector_string(&sel),
            "dr=yes,tier in (a,b),env notin (dev),team,!legacy"
        );
    }
}
