//! Applying YAML manifests the way `kubectl apply --server-side` does.

use kube::{
    Api, Client, ResourceExt,
    api::{DynamicObject, GroupVersionKind, Patch, PatchParams},
    discovery::{self, Scope},
};

use crate::{Error, Result};

/// Field manager used by the harness for its own writes.
pub const FIELD_MANAGER: &str = "dr-syncer-testenv";

/// Parse a multi-document YAML string into objects (empty documents are skipped).
pub fn parse_yaml_documents(yaml: &str) -> Result<Vec<DynamicObject>> {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_str_multiple(yaml).map_err(|e| Error::Decode {
        context: "parsing YAML".into(),
        message: e.to_string(),
    })?;
    docs.into_iter()
        .filter(|d| !d.is_null())
        .map(|d| {
            serde_json::from_value::<DynamicObject>(d).map_err(|e| Error::Decode {
                context: "YAML document".into(),
                message: e.to_string(),
            })
        })
        .collect()
}

/// Server-side apply every document of `yaml` (forcing ownership), resolving kinds through discovery.
///
/// Namespaced objects without `metadata.namespace` go to `namespace` (or `default`). Returns the objects as
/// the server stored them.
pub async fn apply_yaml(client: &Client, namespace: Option<&str>, yaml: &str) -> Result<Vec<DynamicObject>> {
    let mut applied = Vec::new();
    for obj in parse_yaml_documents(yaml)? {
        let types = obj.types.clone().ok_or_else(|| Error::Decode {
            context: "YAML document".into(),
            message: "apiVersion and kind are required".into(),
        })?;
        let gvk = GroupVersionKind::try_from(&types).map_err(|e| Error::Decode {
            context: "apiVersion".into(),
            message: e.to_string(),
        })?;
        let (ar, caps) = discovery::pinned_kind(client, &gvk).await?;
        let name = obj.name_any();
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => {
                let ns = obj
                    .namespace()
                    .or(namespace.map(str::to_owned))
                    .unwrap_or_else(|| "default".into());
                Api::namespaced_with(client.clone(), &ns, &ar)
            }
            Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        let params = PatchParams::apply(FIELD_MANAGER).force();
        applied.push(api.patch(&name, &params, &Patch::Apply(&obj)).await?);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multi_documents() {
        let objs = parse_yaml_documents(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: b\n",
        )
        .unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1].types.as_ref().unwrap().kind, "Deployment");
        assert!(parse_yaml_documents("kind: [").is_err());
    }
}
