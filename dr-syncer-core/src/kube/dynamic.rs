//! The dynamic-API helpers every Kubernetes implementation here shares: the `Api` of a
//! [`ResourceType`], paged lists and gets through a cluster's [`Calls`] (limits and retries), with the
//! objects' `apiVersion`/`kind` filled in (lists leave them out).

use kube::{
    Api, Client,
    api::ListParams,
    core::{DynamicObject, TypeMeta},
};

use super::calls::{Calls, is_not_found, is_unserved};
use crate::resource::ResourceType;

/// Page size of list requests.
const PAGE: u32 = 500;

/// Set `apiVersion`/`kind`, which list responses leave out of their items.
pub(crate) fn with_types(mut obj: DynamicObject, rt: &ResourceType) -> DynamicObject {
    obj.types = Some(TypeMeta {
        api_version: rt.api_version(),
        kind: rt.kind.clone(),
    });
    obj
}

pub(crate) fn api_for(client: &Client, rt: &ResourceType, namespace: Option<&str>) -> Api<DynamicObject> {
    let ar = rt.api_resource();
    match namespace {
        Some(ns) if rt.namespaced => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    }
}

/// List every object of `rt` in `namespace`, page by page (a consistent snapshot: the continue token pins
/// the resourceVersion of the first page). With `unserved_is_empty`, a type the server does not serve
/// lists as empty (destination side only, see [`is_unserved`]); otherwise that is an error.
pub(crate) async fn list_all(
    client: &Client,
    calls: &Calls,
    rt: &ResourceType,
    namespace: Option<&str>,
    label_selector: Option<&str>,
    unserved_is_empty: bool,
) -> Result<Vec<DynamicObject>, kube::Error> {
    let api = api_for(client, rt, namespace);
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(PAGE);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        if let Some(sel) = label_selector {
            lp = lp.labels(sel);
        }
        let what = format!("list {rt}");
        let page = match calls.run(&what, || api.list(&lp)).await {
            Ok(p) => p,
            Err(e) if unserved_is_empty && is_unserved(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        out.extend(page.items.into_iter().map(|o| with_types(o, rt)));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(next) => token = Some(next),
            None => return Ok(out),
        }
    }
}

/// Get one object of `rt` (`namespace` `None` for cluster-scoped types), with `apiVersion`/`kind` set;
/// `Ok(None)` when it does not exist. With `unserved_is_none`, a type the server does not serve also
/// reads as `None` (destination side only, as for [`list_all`]).
pub(crate) async fn get_one(
    client: &Client,
    calls: &Calls,
    rt: &ResourceType,
    namespace: Option<&str>,
    name: &str,
    unserved_is_none: bool,
) -> Result<Option<DynamicObject>, kube::Error> {
    let api = api_for(client, rt, namespace);
    match calls.run(&format!("get {rt} {name}"), || api.get_opt(name)).await {
        Ok(o) => Ok(o.map(|o| with_types(o, rt))),
        Err(e) if is_not_found(&e) || (unserved_is_none && is_unserved(&e)) => Ok(None),
        Err(e) => Err(e),
    }
}
