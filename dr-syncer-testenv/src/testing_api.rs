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

    /// Writes that change stored state: [`RequestCounts::writes`] without the reviews of
    /// `authorization.k8s.io` and `authentication.k8s.io` (a SelfSubjectAccessReview, SubjectAccessReview or
    /// TokenReview is a `create` that stores nothing).
    pub fn stored_writes(&self) -> u64 {
        let reviews: u64 = self
            .by_resource
            .iter()
            .filter(|(k, _)| {
                k.starts_with("create authorization.k8s.io/")
                    || k.starts_with("create authentication.k8s.io/")
            })
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

/// One write request as the server saw it ([`ControlPlane::writes`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct WriteRecord {
    /// The client identity (certificate CN or token user).
    pub user: String,
    /// The client's `User-Agent` header.
    pub user_agent: String,
    /// create, update, patch, apply, delete or deletecollection.
    pub verb: String,
    /// `<group>/<resource>[/<subresource>]` (core group empty: `/configmaps`).
    pub resource: String,
    /// The object's namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// The object's name (empty for a create without one in the path, a deletecollection).
    pub name: String,
    /// When the server started handling it, in Unix microseconds.
    pub start: i64,
    /// When it had answered, in Unix microseconds.
    pub end: i64,
    /// The HTTP status code of the answer.
    pub code: u16,
}

/// Consecutive writes of one writer into a namespace ([`writer_runs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterRun {
    /// Who wrote, as the `writer` function of [`writer_runs`] named it.
    pub writer: String,
    /// When the run's first write started (Unix µs).
    pub first_start: i64,
    /// When the last of its writes ended (Unix µs).
    pub last_end: i64,
    /// How many writes.
    pub writes: usize,
}

/// The writes into namespace `ns` (its objects and the Namespace object itself), in order of their
/// start, as runs of the same writer. `writer` names the writer from the User-Agent (`None`: the
/// User-Agent itself is used). Two writers that wrote at once show up as alternating runs, or as a run
/// whose `first_start` precedes the previous run's `last_end`.
pub fn writer_runs(
    writes: &[WriteRecord],
    ns: &str,
    writer: impl Fn(&str) -> Option<String>,
) -> Vec<WriterRun> {
    let mut mine: Vec<&WriteRecord> = writes
        .iter()
        .filter(|w| w.namespace == ns || (w.resource == "/namespaces" && w.name == ns))
        .collect();
    mine.sort_by_key(|w| w.start);
    let mut runs: Vec<WriterRun> = Vec::new();
    for w in mine {
        let who = writer(&w.user_agent).unwrap_or_else(|| w.user_agent.clone());
        match runs.last_mut() {
            Some(run) if run.writer == who => {
                run.last_end = run.last_end.max(w.end);
                run.writes += 1;
            }
            _ => runs.push(WriterRun {
                writer: who,
                first_start: w.start,
                last_end: w.end,
                writes: 1,
            }),
        }
    }
    runs
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

/// A fault the control plane injects (see `test-control-plane/faults.go`): matching resource requests
/// are answered with `status`, delayed, or stalled.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    /// The client identity (certificate CN); empty: every client but the admin.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// Verbs (`get`, `list`, `create`, `apply`, `patch`, `delete` …); empty: all but `watch`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verbs: Vec<String>,
    /// Resources (plural, `resource/subresource`); empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Answer 429, 500 or 503 instead (0: answer normally after the delay or stall).
    #[serde(default, skip_serializing_if = "is_zero_u16")]
    pub status: u16,
    /// `Retry-After` of a 429/503, in seconds.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub retry_after_seconds: u32,
    /// Latency added, in milliseconds.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub delay_millis: u32,
    /// Accept and answer nothing until the rule expires or is cleared (or the client gives up).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stall: bool,
    /// The share of matching requests hit (0: all).
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub probability: f64,
    /// At most this many requests hit (0: unlimited).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub count: u32,
    /// The rule lasts this long, in seconds (0: until cleared).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub seconds: u32,
    /// (Read back) how many requests the rule hit.
    #[serde(default, skip_serializing)]
    pub hits: u64,
}

fn is_zero_u16(n: &u16) -> bool {
    *n == 0
}
fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}
fn is_zero_f64(n: &f64) -> bool {
    *n == 0.0
}

impl FaultRule {
    /// Answer `status` to `user`'s requests with `verbs` (empty: all but watch).
    pub fn status(user: &str, verbs: &[&str], status: u16) -> Self {
        FaultRule {
            status,
            ..FaultRule::new_for(user, verbs)
        }
    }

    /// A rule for `user`'s requests with `verbs` (empty: all but watch) that does nothing yet: set what it
    /// does (`status`, `delay_millis`, `stall`) and what it matches further.
    pub fn new_for(user: &str, verbs: &[&str]) -> Self {
        FaultRule {
            user: user.to_owned(),
            verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        }
    }

    /// Stall `user`'s requests (every one but watches) for `seconds`.
    pub fn stall(user: &str, seconds: u32) -> Self {
        FaultRule {
            user: user.to_owned(),
            stall: true,
            seconds,
            ..Default::default()
        }
    }
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

    /// Requests made so far by client identity `user` (the certificate CN, or the user of a bearer token from
    /// [`ControlPlane::mint_token`]; the admin is `admin`).
    pub async fn requests(&self, user: &str) -> Result<RequestCounts> {
        self.testing_get(&format!("/testing/requests?user={user}")).await
    }

    /// GET test hook `path` and decode its JSON answer.
    async fn testing_get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let text = self.testing_call(http::Method::GET, path, vec![]).await?;
        serde_json::from_str(&text).map_err(|e| Error::Decode {
            context: format!("GET {}", path.split('?').next().unwrap_or(path)),
            message: format!("{e}: {text}"),
        })
    }

    /// The write requests of client identity `user` so far, oldest first (the server keeps the last
    /// 100,000 to 200,000).
    pub async fn writes(&self, user: &str) -> Result<Vec<WriteRecord>> {
        #[derive(Deserialize)]
        struct Writes {
            writes: Vec<WriteRecord>,
        }
        let w: Writes = self.testing_get(&format!("/testing/writes?user={user}")).await?;
        Ok(w.writes)
    }

    /// Compact etcd and end every open watch: running watchers receive 410 Gone and must re-list.
    pub async fn expire_watches(&self) -> Result<()> {
        self.testing_call(http::Method::POST, "/testing/expire-watches", b"{}".to_vec())
            .await?;
        Ok(())
    }

    /// The watches client identity `user` has open right now.
    pub async fn open_watches(&self, user: &str) -> Result<u64> {
        #[derive(Deserialize)]
        struct Open {
            open: u64,
        }
        let o: Open = self.testing_get(&format!("/testing/watches?user={user}")).await?;
        Ok(o.open)
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

    /// Inject a fault at run time.
    pub async fn inject(&self, rule: &FaultRule) -> Result<()> {
        let body = serde_json::to_vec(rule).map_err(|e| Error::Decode {
            context: "encoding fault rule".into(),
            message: e.to_string(),
        })?;
        self.testing_call(http::Method::POST, "/testing/faults", body)
            .await?;
        Ok(())
    }

    /// The fault rules, with how many requests each hit.
    pub async fn faults(&self) -> Result<Vec<FaultRule>> {
        #[derive(Deserialize)]
        struct Rules {
            rules: Vec<FaultRule>,
        }
        let r: Rules = self.testing_get("/testing/faults").await?;
        Ok(r.rules)
    }

    /// Remove every fault rule (stalled requests are released).
    pub async fn clear_faults(&self) -> Result<()> {
        self.testing_call(http::Method::DELETE, "/testing/faults", vec![])
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

    #[test]
    fn reviews_are_not_stored_writes() {
        let c: RequestCounts = serde_json::from_str(
            r#"{"total":5,"writes":5,"byResource":{"create /configmaps":2,"create authentication.k8s.io/tokenreviews":1,
                "create authorization.k8s.io/subjectaccessreviews":1,"create authorization.k8s.io/selfsubjectaccessreviews":1}}"#,
        )
        .unwrap();
        assert_eq!(c.stored_writes(), 2);
    }
}
