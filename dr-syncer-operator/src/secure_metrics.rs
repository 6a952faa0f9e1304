//! `--metrics-secure`: `/metrics` over TLS, for clients whose bearer token the controller cluster
//! authenticates (TokenReview) and authorizes for `get` on the non-resource URL `/metrics`
//! (SubjectAccessReview), as controller-runtime's secure metrics serving does. Without a certificate
//! (`--metrics-cert-file`/`--metrics-key-file`) a self-signed one is made at start. Decisions are cached
//! for [`CACHE_TTL`] per token (by its SHA-256), so a scrape every few seconds costs no API request.
//! The probes (`/healthz`, `/readyz`) stay plain on their own address.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    authentication::v1::{TokenReview, TokenReviewSpec},
    authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
};
use kube::{Api, Client, api::PostParams};
use sha2::{Digest, Sha256};
use tracing::{debug, warn};

/// How long a decision about a token is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(10);

/// What a request to `/metrics` may get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Serve it.
    Allowed,
    /// No token, or one the cluster does not know (401).
    Unauthenticated,
    /// A known identity without `get` on `/metrics` (403), with who it is.
    Forbidden(String),
}

/// Authenticates and authorizes scrapers through the controller cluster.
pub struct MetricsAuth {
    client: Client,
    cache: Mutex<HashMap<[u8; 32], (Instant, Decision)>>,
}

impl std::fmt::Debug for MetricsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsAuth").finish_non_exhaustive()
    }
}

impl MetricsAuth {
    /// Reviews through `client` (the operator's own cluster; it needs `create` on `tokenreviews` and
    /// `subjectaccessreviews`).
    pub fn new(client: Client) -> Self {
        MetricsAuth {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The decision for a request with this `Authorization` header. A review that fails (the cluster
    /// does not answer) refuses, and is not cached.
    pub async fn check(&self, authorization: Option<&str>) -> Decision {
        let Some(token) = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Decision::Unauthenticated;
        };
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, d)) = cache.get(&key)
                && at.elapsed() < CACHE_TTL
            {
                return d.clone();
            }
        }
        let decision = match self.review(token).await {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "metrics request refused: the review failed");
                return Decision::Unauthenticated;
            }
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
        cache.insert(key, (Instant::now(), decision.clone()));
        decision
    }

    async fn review(&self, token: &str) -> Result<Decision, kube::Error> {
        let pp = PostParams::default();
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&pp, &review)
            .await?;
        let Some(user) = reviewed
            .status
            .filter(|s| s.authenticated == Some(true))
            .and_then(|s| s.user)
        else {
            return Ok(Decision::Unauthenticated);
        };
        let name = user.username.clone().unwrap_or_default();
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some("/metrics".into()),
                    verb: Some("get".into()),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answered = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&pp, &access)
            .await?;
        let allowed = answered.status.is_some_and(|s| s.allowed);
        debug!(user = %name, allowed, "metrics access reviewed");
        Ok(if allowed {
            Decision::Allowed
        } else {
            Decision::Forbidden(name)
        })
    }
}

/// The TLS configuration of the metrics endpoint: from PEM files, or a self-signed certificate for
/// `localhost` and the host name made now.
///
/// # Errors
/// A message when the files cannot be read or do not hold a certificate chain and its key.
pub fn tls_config(cert: Option<&Path>, key: Option<&Path>) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let (chain, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) = match (cert, key) {
        (Some(c), Some(k)) => {
            let chain = CertificateDer::pem_file_iter(c)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("--metrics-cert-file {}: {e}", c.display()))?;
            if chain.is_empty() {
                return Err(format!("--metrics-cert-file {}: no certificate", c.display()));
            }
            let key = PrivateKeyDer::from_pem_file(k)
                .map_err(|e| format!("--metrics-key-file {}: {e}", k.display()))?;
            (chain, key)
        }
        (None, None) => {
            let mut names = vec!["localhost".to_owned()];
            if let Ok(h) = std::env::var("HOSTNAME")
                && !h.is_empty()
            {
                names.push(h);
            }
            let made = rcgen::generate_simple_self_signed(names)
                .map_err(|e| format!("making a self-signed certificate: {e}"))?;
            let key = PrivateKeyDer::try_from(made.key_pair.serialize_der())
                .map_err(|e| format!("the self-signed certificate's key: {e}"))?;
            (vec![made.cert.der().clone()], key)
        }
        _ => return Err("--metrics-cert-file and --metrics-key-file go together".into()),
    };
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| format!("the metrics certificate: {e}"))?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_made_and_files_go_together() {
        assert!(tls_config(None, None).is_ok());
        assert!(tls_config(Some(Path::new("/nonexistent")), None).is_err());
        let err = tls_config(Some(Path::new("/nonexistent")), Some(Path::new("/nonexistent"))).unwrap_err();
        assert!(err.contains("--metrics-cert-file"), "{err}");
    }
}
