//! The control plane's test hooks: request accounting, forced watch expiry and the deny list.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{ControlPlane, Error, Result};

/// Requests one client identity made, as counted by the server (monotonic; take deltas).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RequestCounts {
    /// All requests.
    pub total: u64,
    /// create, update, patch (including server-side apply), delete and deletecollection.
    pub writes: u64,
    /// get, list and watch.
    pub reads: u64,
    /// Per verb (`apply` is counted under its own name here).
    pub by_verb: BTreeMap<String, u64>,
    /// Per `"<verb> <group>/<resource>[/<subresource>]"`.
    pub by_resource: BTreeMap<String, u64>,
}

impl RequestCounts {
    /// The count of one verb.
    pub fn verb(&self, verb: &str) -> u64 {
        self.by_verb.get(verb).copied().unwrap_or(0)
    }

    /// Writes that change stored state: [`RequestCounts::writes`] without access reviews (a
    /// SelfSubjectAccessReview is a `create` that stores nothing).
    pub fn stored_writes(&self) -> u64 {
        let reviews: u64 = self
            .by_resource
            .iter()
            .filter(|(k, _)| k.starts_with("create ") && k.ends_with("accessreviews"))
            .map(|(_, v)| v)
            .sum();
        self.writes.saturating_sub(reviews)
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        let diff = |now: &BTreeMap<String, u64>, then: &BTreeMap<String, u64>| {
            now.iter()
                .map(|(k, v)| (k.clone(), v.saturating_sub(then.get(k).copied().unwrap_or(0))))
                .filter(|(_, v)| *v > 0)
                .collect()
        };
        RequestCounts {
            total: self.total.saturating_sub(earlier.total),
            writes: self.writes.saturating_sub(earlier.writes),
            reads: self.reads.saturating_sub(earlier.reads),
            by_verb: diff(&self.by_verb, &earlier.by_verb),
            by_resource: diff(&self.by_resource, &earlier.by_resource),
        }
    }
}

/// A rule of the control plane's deny list: `user` may not use `verbs` on `resources`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenyRule {
    /// The client certificate CN.
    pub user: String,
    /// Verbs such as `create`, `patch`, `list`; empty = all.
    #[serde(default)]
    pub verbs: Vec<String>,
    /// `resource` (core group) or `resource.group`, subresources as `pods/eviction`; empty = all.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Namespaces the rule applies to; empty = all.
    #[serde(default)]
    pub namespaces: Vec<String>,
}

impl DenyRule {
    /// A rule for `user`, `verbs` and `resources` in every namespace.
    pub fn new(user: &str, verbs: &[&str], resources: &[&str]) -> Self {
        DenyRule {
            user: user.to_owned(),
            verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
            resources: resources.iter().map(|s| (*s).to_owned()).collect(),
            namespaces: Vec::new(),
        }
    }
}

impl ControlPlane {
    async fn testing_call(&self, method: http::Method, path: &str, body: Vec<u8>) -> Result<String> {
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(|e| Error::Decode {
                context: format!("building request {path}"),
                message: e.to_string(),
            })?;
        Ok(self.client().request_text(req).await?)
    }

    /// Requests made so far by client identity `user` (the certificate CN; the admin is `admin`).
    pub async fn requests(&self, user: &str) -> Result<RequestCounts> {
        let text = self
            .testing_call(
                http::Method::GET,
                &format!("/testing/requests?user={user}"),
                vec![],
            )
            .await?;
        serde_json::from_str(&text).map_err(|e| Error::Decode {
            context: "GET /testing/requests".into(),
            message: format!("{e}: {text}"),
        })
    }

    /// Compact etcd and end every open watch: running watchers receive 410 Gone and must re-list.
    pub async fn expire_watches(&self) -> Result<()> {
        self.testing_call(http::Method::POST, "/testing/expire-watches", b"{}".to_vec())
            .await?;
        Ok(())
    }

    /// The watches client identity `user` has open right now.
    pub async fn open_watches(&self, user: &str) -> Result<u64> {
        let text = self
            .testing_call(
                http::Method::GET,
                &format!("/testing/watches?user={user}"),
                vec![],
            )
            .await?;
        #[derive(Deserialize)]
        struct Open {
            open: u64,
        }
        serde_json::from_str::<Open>(&text)
            .map(|o| o.open)
            .map_err(|e| Error::Decode {
                context: "GET /testing/watches".into(),
                message: format!("{e}: {text}"),
            })
    }

    /// Add a deny rule at run time.
    pub async fn deny(&self, rule: &DenyRule) -> Result<()> {
        let body = serde_json::to_vec(rule).map_err(|e| Error::Decode {
            context: "encoding deny rule".into(),
            message: e.to_string(),
        })?;
        self.testing_call(http::Method::POST, "/testing/deny", body)
            .await?;
        Ok(())
    }

    /// Remove every deny rule.
    pub async fn clear_denies(&self) -> Result<()> {
        self.testing_call(http::Method::DELETE, "/testing/deny", vec![])
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse_and_subtract() {
        let a: RequestCounts = serde_json::from_str(
            r#"{"total":5,"writes":2,"reads":3,"byVerb":{"create":2,"get":3},"byResource":{"create /configmaps":2}}"#,
        )
        .unwrap();
        let b: RequestCounts = serde_json::from_str(
            r#"{"total":9,"writes":3,"reads":6,"byVerb":{"create":2,"get":5,"patch":1},"byResource":{"create /configmaps":2,"patch apps/deployments":1}}"#,
        )
        .unwrap();
        let d = b.since(&a);
        assert_eq!((d.total, d.writes, d.reads), (4, 1, 3));
        assert_eq!(d.verb("create"), 0);
        assert_eq!(d.verb("patch"), 1);
        assert_eq!(d.by_resource.len(), 1);
        assert_eq!(RequestCounts::default().verb("get"), 0);
    }
}
