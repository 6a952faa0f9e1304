//! Unique names and temporary namespaces.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};

use crate::Result;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A DNS-1123 name `<prefix>-<suffix>` that is unique within this process and very likely across
/// processes running at the same time.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mix = (u64::from(std::process::id()) << 20) ^ u64::from(nanos) ^ (n << 40);
    let suffix = format!("{:x}", mix % 0xff_ffff);
    let prefix: String = prefix.chars().take(40).collect();
    format!("{prefix}-{n}{suffix}")
}

/// Create a namespace with a unique name starting with `prefix` and return its name.
///
/// Each test normally owns its control plane, so the namespace is not deleted afterwards: it goes with the
/// server when the [`crate::ControlPlane`] drops.
pub async fn create_namespace(client: &Client, prefix: &str) -> Result<String> {
    let name = unique_name(prefix);
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &ns).await?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_valid() {
        let a = unique_name("demo");
        let b = unique_name("demo");
        assert_ne!(a, b);
        for n in [a, b] {
            assert!(n.len() <= 63, "{n}");
            assert!(
                n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{n}"
            );
            assert!(n.starts_with("demo-"));
        }
    }
}
