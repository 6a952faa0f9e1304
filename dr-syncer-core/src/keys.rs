//! SSH keys of the PVC data path: generation, OpenSSH formats, fingerprints, host key pinning, the Secrets
//! that carry them, and rotation.
//!
//! Two identities exist per pair of clusters, and neither is ever shared with another RemoteCluster:
//! - the **host key** of the reader agents of a (source) RemoteCluster: the agents present it, the movers
//!   pin it ([`HostKeyPins`]) and refuse any other before authenticating;
//! - the **client key** of the movers of a (DR) RemoteCluster: the movers authenticate with it, the agents
//!   that may be read by that cluster list its public half in their authorized keys
//!   ([`AuthorizedClientKeys`]).
//!
//! [`KeySecrets`] names the Secrets of one RemoteCluster and builds their data maps; the operator creates
//! them. A ClusterMapping's `sshKeySecretRef` or a NamespaceMapping's `tempPodKeySecretRef` replaces the
//! generated client key pair by a user-managed one, read and checked by [`UserKeyPair::from_secret_data`].
//!
//! Keys are generated in Rust with the RustCrypto `ssh-key` crate (ed25519 through `ed25519-dalek`, the
//! operating system's random source through `getrandom`): it reads and writes exactly the OpenSSH formats
//! that sshd and libssh2 use (`-----BEGIN OPENSSH PRIVATE KEY-----`, `ssh-ed25519 AAAA… comment`), computes
//! fingerprints as `ssh-keygen -l` prints them, and needs no `ssh-keygen` binary in the operator's image.

use std::{collections::BTreeMap, time::SystemTime};

use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, rand_core::OsRng};

/// Errors of key handling.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key could not be parsed.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// Which key (e.g. "private key `id_rsa`").
        what: String,
        /// What is wrong with it.
        message: String,
    },
    /// A required entry is missing from a Secret's data.
    #[error("secret has no key {0:?}")]
    Missing(String),
    /// The private and public keys of a pair do not belong together.
    #[error("the public key {public} does not belong to the private key {private}")]
    Mismatch {
        /// Fingerprint of the public key given.
        public: String,
        /// Fingerprint of the private key's public half.
        private: String,
    },
    /// The key is of a kind the data path does not accept.
    #[error("unsupported key: {0}")]
    Unsupported(String),
    /// Generating or encoding a key failed.
    #[error("key encoding: {0}")]
    Encoding(String),
}

impl KeyError {
    /// A short, stable name of the error's category.
    pub fn kind(&self) -> &'static str {
        match self {
            KeyError::Invalid { .. } => "InvalidKey",
            KeyError::Missing(_) => "MissingKey",
            KeyError::Mismatch { .. } => "KeyMismatch",
            KeyError::Unsupported(_) => "UnsupportedKey",
            KeyError::Encoding(_) => "KeyEncoding",
        }
    }
}

fn invalid(what: impl Into<String>) -> impl FnOnce(ssh_key::Error) -> KeyError {
    let what = what.into();
    move |e| KeyError::Invalid {
        what,
        message: e.to_string(),
    }
}

// === impl PublicKey ===

/// An SSH public key (`ssh-ed25519 AAAA… comment`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(ssh_key::PublicKey);

impl PublicKey {
    /// Parse one OpenSSH public key line (`type base64 [comment]`).
    ///
    /// # Errors
    /// [`KeyError::Invalid`] when the line is not a public key.
    pub fn parse(line: &str) -> Result<Self, KeyError> {
        ssh_key::PublicKey::from_openssh(line.trim())
            .map(PublicKey)
            .map_err(invalid("public key"))
    }

    /// The key in OpenSSH format, with its comment.
    pub fn to_openssh(&self) -> String {
        // Encoding a parsed or generated key cannot fail.
        self.0.to_openssh().unwrap_or_default()
    }

    /// The algorithm name (`ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256` …).
    pub fn algorithm(&self) -> String {
        self.0.algorithm().as_str().to_string()
    }

    /// The SHA-256 fingerprint as `ssh-keygen -l` prints it (`SHA256:…`).
    pub fn fingerprint(&self) -> String {
        self.0.fingerprint(HashAlg::Sha256).to_string()
    }

    /// The key's wire encoding (the blob an SSH server presents as its host key).
    pub fn blob(&self) -> Vec<u8> {
        self.0.to_bytes().unwrap_or_default()
    }

    /// The comment.
    pub fn comment(&self) -> &str {
        self.0.comment()
    }

    fn check_supported(&self, what: &str) -> Result<(), KeyError> {
        match self.0.key_data() {
            ssh_key::public::KeyData::Ed25519(_) | ssh_key::public::KeyData::Ecdsa(_) => Ok(()),
            ssh_key::public::KeyData::Rsa(rsa) => {
                let bits = rsa.n.as_positive_bytes().map(|b| b.len() * 8).unwrap_or(0);
                if bits >= 2048 {
                    Ok(())
                } else {
                    Err(KeyError::Unsupported(format!(
                        "{what} is an RSA key of {bits} bits (at least 2048 are required)"
                    )))
                }
            }
            _ => Err(KeyError::Unsupported(format!(
                "{what} is a {} key; use ed25519, ECDSA or RSA",
                self.algorithm()
            ))),
        }
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_openssh())
    }
}

// === impl KeyPair ===

/// A private key with its public half.
#[derive(Clone)]
pub struct KeyPair(PrivateKey);

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("KeyPair")
            .field("public", &self.public_key().to_openssh())
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A new ed25519 key pair from the operating system's random source.
    ///
    /// # Errors
    /// [`KeyError::Encoding`] when no randomness is available.
    pub fn generate_ed25519(comment: &str) -> Result<Self, KeyError> {
        let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
            .map_err(|e| KeyError::Encoding(e.to_string()))?;
        key.set_comment(comment);
        Ok(KeyPair(key))
    }

    /// Parse an unencrypted private key: OpenSSH format (any algorithm [`PublicKey`] accepts) or a
    /// PKCS#1 PEM RSA key (`-----BEGIN RSA PRIVATE KEY-----`, as the Go project generated).
    ///
    /// # Errors
    /// [`KeyError::Invalid`], or [`KeyError::Unsupported`] for an encrypted or too weak key.
    pub fn parse(pem: &str) -> Result<Self, KeyError> {
        let pem = pem.trim();
        let key = if pem.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            let rsa = rsa::RsaPrivateKey::from_pkcs1_pem(pem).map_err(|e| KeyError::Invalid {
                what: "RSA private key".into(),
                message: e.to_string(),
            })?;
            let pair = ssh_key::private::RsaKeypair::try_from(rsa).map_err(invalid("RSA private key"))?;
            PrivateKey::from(pair)
        } else {
            PrivateKey::from_openssh(pem).map_err(invalid("private key"))?
        };
        if key.is_encrypted() {
            return Err(KeyError::Unsupported(
                "the private key is encrypted with a passphrase; the data path needs an unencrypted key"
                    .into(),
            ));
        }
        let pair = KeyPair(key);
        pair.public_key().check_supported("the private key")?;
        Ok(pair)
    }

    /// The private key in OpenSSH format (`-----BEGIN OPENSSH PRIVATE KEY-----`).
    pub fn private_key_openssh(&self) -> String {
        self.0
            .to_openssh(LineEnding::LF)
            .map(|s| s.to_string())
            .unwrap_or_default()
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.public_key().clone())
    }

    /// The SHA-256 fingerprint of the public half (`SHA256:…`).
    pub fn fingerprint(&self) -> String {
        self.public_key().fingerprint()
    }
}

// === impl UserKeyPair ===

/// A user-managed client key pair read from a Secret (ClusterMapping `sshKeySecretRef`, NamespaceMapping
/// `tempPodKeySecretRef`).
#[derive(Debug, Clone)]
pub struct UserKeyPair {
    /// The pair (private key in OpenSSH format through [`KeyPair::private_key_openssh`]).
    pub pair: KeyPair,
    /// The public key as given in the Secret.
    pub public: PublicKey,
}

impl UserKeyPair {
    /// Read a key pair from a Secret's data, under the given keys (the Go schema's defaults are `id_rsa`
    /// and `id_rsa.pub`), and check it: both present, the private key unencrypted and of a supported
    /// kind (ed25519, ECDSA, RSA ≥ 2048 bits), and the public key its own.
    ///
    /// # Errors
    /// [`KeyError::Missing`], [`KeyError::Invalid`], [`KeyError::Unsupported`], [`KeyError::Mismatch`].
    pub fn from_secret_data(
        data: &BTreeMap<String, Vec<u8>>,
        private_key_key: &str,
        public_key_key: &str,
    ) -> Result<Self, KeyError> {
        let text = |key: &str| -> Result<&str, KeyError> {
            let bytes = data.get(key).ok_or_else(|| KeyError::Missing(key.to_string()))?;
            std::str::from_utf8(bytes).map_err(|_| KeyError::Invalid {
                what: format!("secret entry {key:?}"),
                message: "not UTF-8 text".into(),
            })
        };
        let pair = KeyPair::parse(text(private_key_key)?).map_err(|e| match e {
            KeyError::Invalid { message, .. } => KeyError::Invalid {
                what: format!("private key {private_key_key:?}"),
                message,
            },
            other => other,
        })?;
        let public_text = text(public_key_key)?;
        let line = public_text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or("");
        let public = PublicKey::parse(line).map_err(|e| match e {
            KeyError::Invalid { message, .. } => KeyError::Invalid {
                what: format!("public key {public_key_key:?}"),
                message,
            },
            other => other,
        })?;
        if public.blob() != pair.public_key().blob() {
            return Err(KeyError::Mismatch {
                public: public.fingerprint(),
                private: pair.fingerprint(),
            });
        }
        Ok(UserKeyPair { pair, public })
    }
}

// === impl HostKeyPins ===

/// The host keys a mover accepts from a reader: one OpenSSH public key per line (blank lines and `#`
/// comments ignored). More than one key pins a host key rotation: the old and the new key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKeyPins(Vec<PublicKey>);

impl HostKeyPins {
    /// Parse pinned keys.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] for a line that is not a public key, or when there is no key at all.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let keys = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(PublicKey::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(keys)
    }

    /// Pins from keys.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] when `keys` is empty.
    pub fn new(keys: Vec<PublicKey>) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Invalid {
                what: "pinned host keys".into(),
                message: "no key".into(),
            });
        }
        Ok(HostKeyPins(keys))
    }

    /// The pinned keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.0
    }

    /// The pinned key whose wire encoding is `blob`, if any.
    pub fn find(&self, blob: &[u8]) -> Option<&PublicKey> {
        self.0.iter().find(|k| k.blob() == blob)
    }

    /// The host key algorithms to negotiate (so that the server must present a pinned kind of key).
    pub fn algorithms(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for key in &self.0 {
            let algs: &[&'static str] = match key.0.algorithm() {
                Algorithm::Ed25519 => &["ssh-ed25519"],
                Algorithm::Rsa { .. } => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
                Algorithm::Ecdsa { curve } => match curve {
                    ssh_key::EcdsaCurve::NistP256 => &["ecdsa-sha2-nistp256"],
                    ssh_key::EcdsaCurve::NistP384 => &["ecdsa-sha2-nistp384"],
                    ssh_key::EcdsaCurve::NistP521 => &["ecdsa-sha2-nistp521"],
                },
                _ => &[],
            };
            for a in algs {
                if !out.contains(a) {
                    out.push(*a);
                }
            }
        }
        out
    }

    /// One key per line.
    pub fn to_text(&self) -> String {
        self.0.iter().map(|k| format!("{}\n", k.to_openssh())).collect()
    }
}

// === impl AuthorizedClientKeys ===

/// One client key a reader accepts, possibly only until a time (the grace window of a rotation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedClientKey {
    /// The key.
    pub key: PublicKey,
    /// After this time sshd refuses the key (`expiry-time` in authorized_keys).
    pub expires: Option<SystemTime>,
}

/// The client keys a reader accepts, rendered as an `authorized_keys` file for the agent's
/// authorized-keys Secret. The agent adds its own restrictions (`restrict`, the forced command) to every
/// line and keeps only the `expiry-time` option written here.
///
/// Rotation that does not break a running transfer: [`AuthorizedClientKeys::rotate`] adds the new key and
/// gives the current ones an expiry (the grace window); sshd checks keys at login only, so a transfer
/// that logged in with the old key continues, while new logins with it are refused once it expires (or
/// once [`AuthorizedClientKeys::prune`] drops it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizedClientKeys(Vec<AuthorizedClientKey>);

impl AuthorizedClientKeys {
    /// Accept exactly these keys, without expiry.
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        AuthorizedClientKeys(
            keys.into_iter()
                .map(|key| AuthorizedClientKey { key, expires: None })
                .collect(),
        )
    }

    /// Exactly these entries.
    pub fn from_entries(entries: Vec<AuthorizedClientKey>) -> Self {
        AuthorizedClientKeys(entries)
    }

    /// The entries.
    pub fn entries(&self) -> &[AuthorizedClientKey] {
        &self.0
    }

    /// Add `new` and let every other key expire at `retire_at` (keys that expire earlier keep their time).
    pub fn rotate(&mut self, new: PublicKey, retire_at: SystemTime) {
        for entry in &mut self.0 {
            entry.expires = Some(entry.expires.map_or(retire_at, |e| e.min(retire_at)));
        }
        self.0.retain(|e| e.key.blob() != new.blob());
        self.0.push(AuthorizedClientKey {
            key: new,
            expires: None,
        });
    }

    /// Drop keys that expired at `now`.
    pub fn prune(&mut self, now: SystemTime) {
        self.0.retain(|e| e.expires.is_none_or(|t| t > now));
    }

    /// The `authorized_keys` text: `[expiry-time="YYYYMMDDHHMMSSZ" ]type base64 comment` per line.
    pub fn to_authorized_keys(&self) -> String {
        let mut out = String::new();
        for entry in &self.0 {
            if let Some(t) = entry.expires {
                out.push_str(&format!("expiry-time=\"{}\" ", expiry_time(t)));
            }
            out.push_str(&entry.key.to_openssh());
            out.push('\n');
        }
        out
    }

    /// Parse an `authorized_keys` text as written by [`Self::to_authorized_keys`]; also accepts plain key
    /// lines. Options other than `expiry-time` are refused.
    ///
    /// # Errors
    /// [`KeyError::Invalid`] for a line that is not a key or has other options.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let mut out = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (expires, rest) = split_expiry(line)?;
            out.push(AuthorizedClientKey {
                key: PublicKey::parse(rest)?,
                expires,
            });
        }
        Ok(AuthorizedClientKeys(out))
    }
}

/// Format a time as OpenSSH's UTC `expiry-time` (`YYYYMMDDHHMMSSZ`).
pub fn expiry_time(t: SystemTime) -> String {
    // (A time out of range fails closed: long expired.)
    format_utc(t, "%Y%m%d%H%M%SZ", "19700101000000Z")
}

/// Format a time (whole seconds, UTC) with a `strftime` pattern; `fallback` for a time out of range.
pub(crate) fn format_utc(t: SystemTime, pattern: &str, fallback: &str) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(|ts| ts.strftime(pattern).to_string())
        .unwrap_or_else(|_| fallback.into())
}

/// Split a leading `expiry-time="…"` option off an authorized_keys line.
fn split_expiry(line: &str) -> Result<(Option<SystemTime>, &str), KeyError> {
    let Some(rest) = line.strip_prefix("expiry-time=\"") else {
        return Ok((None, line));
    };
    let bad = |message: &str| KeyError::Invalid {
        what: "authorized key option".into(),
        message: message.into(),
    };
    let (stamp, rest) = rest
        .split_once('"')
        .ok_or_else(|| bad("unterminated expiry-time"))?;
    let rest = rest.trim_start();
    let digits = stamp
        .strip_suffix('Z')
        .ok_or_else(|| bad("expiry-time must be UTC (…Z)"))?;
    if digits.len() != 14 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("expiry-time must be YYYYMMDDHHMMSSZ"));
    }
    let iso = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &digits[0..4],
        &digits[4..6],
        &digits[6..8],
        &digits[8..10],
        &digits[10..12],
        &digits[12..14]
    );
    let ts: k8s_openapi::jiff::Timestamp = iso.parse().map_err(|_| bad("invalid expiry-time"))?;
    let secs = u64::try_from(ts.as_second()).map_err(|_| bad("expiry-time before 1970"))?;
    Ok((
        Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs)),
        rest,
    ))
}

// === impl KeySecrets ===

/// Data key of a host private key in the host-keys Secret (the public half adds `.pub`).
pub const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";
/// Data key of the client private key in the client-key Secret (the public half adds `.pub`).
pub const CLIENT_KEY_FILE: &str = "id_ed25519";
/// Data key of the authorized client keys in the authorized-keys Secret.
pub const AUTHORIZED_KEYS_FILE: &str = "authorized_keys";
/// Data key of the pinned reader host keys next to the client key.
pub const PINNED_HOST_KEYS_FILE: &str = "known_host_keys";

/// Names and contents of the key Secrets of one RemoteCluster. Every RemoteCluster has its own
/// Secrets and its own keys: none is ever shared with another cluster.
///
/// | Secret | data | mounted by |
/// |---|---|---|
/// | [`KeySecrets::host_keys`] | `ssh_host_ed25519_key`, `ssh_host_ed25519_key.pub` | the cluster's agents (reader) |
/// | [`KeySecrets::authorized_keys`] | `authorized_keys` (client keys of the DR clusters that read it) | the cluster's agents |
/// | [`KeySecrets::client_key`] | `id_ed25519`, `id_ed25519.pub`, `known_host_keys` (pinned host keys of the sources) | the cluster's movers (writer) |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySecrets {
    remote_cluster: String,
}

impl KeySecrets {
    /// The Secrets of a RemoteCluster.
    pub fn for_remote_cluster(name: &str) -> Self {
        KeySecrets {
            remote_cluster: name.to_string(),
        }
    }

    fn name(&self, role: &str) -> String {
        // Secret names are DNS subdomains of at most 253 characters.
        let mut name = format!("dr-syncer-{role}-{}", self.remote_cluster);
        if name.len() > 253 {
            use sha2::Digest;
            let hash = sha2::Sha256::digest(self.remote_cluster.as_bytes());
            let suffix: String = hash[..5].iter().map(|b| format!("{b:02x}")).collect();
            name.truncate(253 - 11);
            name = format!("{}-{suffix}", name.trim_end_matches(['-', '.']));
        }
        name
    }

    /// Name of the Secret with the agents' host key pair.
    pub fn host_keys(&self) -> String {
        self.name("agent-host-keys")
    }

    /// Name of the Secret with the client keys the agents accept.
    pub fn authorized_keys(&self) -> String {
        self.name("agent-authorized-keys")
    }

    /// Name of the Secret with the movers' client key pair and the pinned host keys.
    pub fn client_key(&self) -> String {
        self.name("mover-key")
    }

    /// Data of the host-keys Secret.
    pub fn host_keys_data(&self, host: &KeyPair) -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([
            (HOST_KEY_FILE.to_string(), host.private_key_openssh().into_bytes()),
            (
                format!("{HOST_KEY_FILE}.pub"),
                format!("{}\n", host.public_key()).into_bytes(),
            ),
        ])
    }

    /// Data of the authorized-keys Secret.
    pub fn authorized_keys_data(&self, keys: &AuthorizedClientKeys) -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([(
            AUTHORIZED_KEYS_FILE.to_string(),
            keys.to_authorized_keys().into_bytes(),
        )])
    }

    /// Data of the client-key Secret: the pair and the host keys the mover pins.
    pub fn client_key_data(&self, client: &KeyPair, pins: &HostKeyPins) -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([
            (
                CLIENT_KEY_FILE.to_string(),
                client.private_key_openssh().into_bytes(),
            ),
            (
                format!("{CLIENT_KEY_FILE}.pub"),
                format!("{}\n", client.public_key()).into_bytes(),
            ),
            (PINNED_HOST_KEYS_FILE.to_string(), pins.to_text().into_bytes()),
        ])
    }

    /// A new client key pair for this RemoteCluster (comment `dr-syncer-mover@<cluster>`).
    ///
    /// # Errors
    /// [`KeyError::Encoding`] when no randomness is available.
    pub fn generate_client_key(&self) -> Result<KeyPair, KeyError> {
        KeyPair::generate_ed25519(&format!("dr-syncer-mover@{}", self.remote_cluster))
    }

    /// A new host key pair for this RemoteCluster's agents (comment `dr-syncer-agent@<cluster>`).
    ///
    /// # Errors
    /// [`KeyError::Encoding`] when no randomness is available.
    pub fn generate_host_key(&self) -> Result<KeyPair, KeyError> {
        KeyPair::generate_ed25519(&format!("dr-syncer-agent@{}", self.remote_cluster))
    }
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
