//! The SSH keys of each RemoteCluster, kept in Secrets of the controller cluster, and their rotation.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use dr_syncer_core::{
    api::RemoteCluster,
    keys::{KeyPair, KeySecrets, PublicKey},
};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{Api, Client, ResourceExt, api::PostParams};

use crate::{
    context::Context,
    error::{Error, Result},
};

/// Annotation on a RemoteCluster: a new value rotates its SSH keys.
pub const ROTATE_ANNOTATION: &str = "dr-syncer.io/rotate-ssh-key";
/// Annotation on a stored key Secret: the rotation value it was made for.
pub(super) const ROTATION_TOKEN: &str = "dr-syncer.io/rotation-token";
/// How long the previous key stays accepted (client) or pinned (host) after a rotation.
pub const ROTATION_GRACE: Duration = Duration::from_secs(15 * 60);

pub(super) const KEY: &str = "key";
pub(super) const KEY_PUB: &str = "key.pub";
pub(super) const PREVIOUS_PUB: &str = "previous.pub";
pub(super) const PREVIOUS_EXPIRES: &str = "previous-expires";

/// A key kept in the controller cluster, with the previous one during a rotation's grace window.
#[derive(Debug, Clone)]
pub struct StoredKey {
    /// The current pair.
    pub current: KeyPair,
    /// The previous public key and when it stops being accepted.
    pub previous: Option<(PublicKey, SystemTime)>,
    /// Whether this call rotated the key.
    pub rotated: bool,
}

impl StoredKey {
    pub(super) fn previous_valid(&self) -> Option<&(PublicKey, SystemTime)> {
        self.previous.as_ref().filter(|(_, t)| *t > SystemTime::now())
    }
}

pub(super) fn data_of(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

pub(super) fn invalid(what: String) -> impl FnOnce(dr_syncer_core::keys::KeyError) -> Error {
    move |e| Error::Core(dr_syncer_core::Error::InvalidConfig(format!("{what}: {e}")))
}

/// The key stored in Secret `namespace/name` (generated when missing; rotated when `rotation` differs
/// from the value it was made for).
pub(super) async fn stored_key(
    client: &Client,
    namespace: &str,
    name: &str,
    comment: &str,
    rotation: Option<&str>,
) -> Result<StoredKey> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let existing = api
        .get_opt(name)
        .await
        .map_err(|e| Error::kube(format!("reading key Secret {namespace}/{name}"), e))?;
    let token = |s: &Secret| s.annotations().get(ROTATION_TOKEN).cloned();
    let generate = || KeyPair::generate_ed25519(comment).map_err(invalid("generating a key".into()));
    if let Some(secret) = &existing {
        let data = data_of(secret);
        let pem = String::from_utf8_lossy(data.get(KEY).map(Vec::as_slice).unwrap_or_default()).into_owned();
        let current = KeyPair::parse(&pem).map_err(invalid(format!("key Secret {namespace}/{name}")))?;
        let previous = match (data.get(PREVIOUS_PUB), data.get(PREVIOUS_EXPIRES)) {
            (Some(p), Some(t)) => {
                let key = PublicKey::parse(String::from_utf8_lossy(p).trim()).ok();
                let secs: u64 = String::from_utf8_lossy(t).trim().parse().unwrap_or(0);
                key.map(|k| (k, SystemTime::UNIX_EPOCH + Duration::from_secs(secs)))
            }
            _ => None,
        };
        let wanted = rotation.map(str::to_string);
        if wanted.is_none() || wanted == token(secret) {
            return Ok(StoredKey {
                current,
                previous,
                rotated: false,
            });
        }
        // Rotate: the new key, the old one kept for the grace window.
        let new = generate()?;
        let expires = SystemTime::now() + ROTATION_GRACE;
        let mut updated = key_secret(
            namespace,
            name,
            &new,
            Some((&current.public_key(), expires)),
            rotation,
        );
        updated.metadata.resource_version = secret.metadata.resource_version.clone();
        api.replace(name, &PostParams::default(), &updated)
            .await
            .map_err(|e| Error::kube(format!("rotating key Secret {namespace}/{name}"), e))?;
        return Ok(StoredKey {
            current: new,
            previous: Some((current.public_key(), expires)),
            rotated: true,
        });
    }
    let new = generate()?;
    let secret = key_secret(namespace, name, &new, None, rotation);
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(StoredKey {
            current: new,
            previous: None,
            rotated: false,
        }),
        // Created meanwhile by another reconcile: use that one.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            Box::pin(stored_key(client, namespace, name, comment, None)).await
        }
        Err(e) => Err(Error::kube(format!("creating key Secret {namespace}/{name}"), e)),
    }
}

pub(super) fn key_secret(
    namespace: &str,
    name: &str,
    key: &KeyPair,
    previous: Option<(&PublicKey, SystemTime)>,
    rotation: Option<&str>,
) -> Secret {
    let mut data = BTreeMap::from([
        (
            KEY.to_string(),
            ByteString(key.private_key_openssh().into_bytes()),
        ),
        (
            KEY_PUB.to_string(),
            ByteString(format!("{}\n", key.public_key()).into_bytes()),
        ),
    ]);
    if let Some((p, t)) = previous {
        data.insert(PREVIOUS_PUB.into(), ByteString(format!("{p}\n").into_bytes()));
        let secs = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        data.insert(PREVIOUS_EXPIRES.into(), ByteString(secs.to_string().into_bytes()));
    }
    let mut s = Secret {
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Secret::default()
    };
    s.metadata.name = Some(name.into());
    s.metadata.namespace = Some(namespace.into());
    s.metadata.labels = Some(BTreeMap::from([(
        "app.kubernetes.io/managed-by".to_string(),
        "dr-syncer".to_string(),
    )]));
    if let Some(r) = rotation {
        s.metadata.annotations = Some(BTreeMap::from([(ROTATION_TOKEN.to_string(), r.to_string())]));
    }
    s
}

pub(super) fn rotation_of(rc: &RemoteCluster) -> Option<&str> {
    rc.annotations().get(ROTATE_ANNOTATION).map(String::as_str)
}

/// The key of `rc` in one of its two roles (stored, generated or rotated as [`stored_key`] does).
pub(super) async fn role_key(ctx: &Context, rc: &RemoteCluster, host: bool) -> Result<StoredKey> {
    let name = rc.name_any();
    let secrets = KeySecrets::for_remote_cluster(&name);
    let (secret, comment) = if host {
        (secrets.host_keys(), format!("dr-syncer-agent@{name}"))
    } else {
        (secrets.client_key(), format!("dr-syncer-mover@{name}"))
    };
    stored_key(
        &ctx.client,
        &rc.namespace().unwrap_or_default(),
        &secret,
        &comment,
        rotation_of(rc),
    )
    .await
}

/// The host key of `rc`'s agents.
pub async fn host_key(ctx: &Context, rc: &RemoteCluster) -> Result<StoredKey> {
    role_key(ctx, rc, true).await
}

/// The client key of movers writing into `rc`.
pub async fn client_key(ctx: &Context, rc: &RemoteCluster) -> Result<StoredKey> {
    role_key(ctx, rc, false).await
}
