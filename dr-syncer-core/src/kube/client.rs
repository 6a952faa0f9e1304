//! Connecting to a cluster: [`connect`].

use std::{path::PathBuf, time::Duration};

use kube::{
    Client,
    config::{KubeConfigOptions, Kubeconfig},
};

use super::calls::{Calls, RetryPolicy};
use crate::{Error, Result};

/// Where a cluster's kubeconfig comes from.
#[derive(Debug, Clone)]
pub enum KubeconfigSource {
    /// `KUBECONFIG`, `~/.kube/config`, or the in-cluster service account.
    Infer,
    /// A kubeconfig file.
    File(PathBuf),
    /// Kubeconfig contents, e.g. the `kubeconfig` key of a RemoteCluster's Secret.
    Bytes(Vec<u8>),
}

/// How to reach one cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The kubeconfig.
    pub kubeconfig: KubeconfigSource,
    /// The context to use (default: the kubeconfig's current context).
    pub context: Option<String>,
}

/// Default deadline of one request attempt.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long establishing a connection (TCP and TLS) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Client-side limits for one cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientOptions {
    /// Requests per second on average (`None`: unlimited).
    pub qps: Option<f64>,
    /// Requests allowed in a burst above `qps`.
    pub burst: u32,
    /// Requests in flight at once.
    pub max_in_flight: usize,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// How long one attempt of a request may take before it fails as timed out (`None`: unbounded).
    /// Watches are not bounded by it (they end on the server's `timeoutSeconds` and are restarted).
    pub request_timeout: Option<Duration>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            qps: None,
            burst: 100,
            max_in_flight: 64,
            retry: RetryPolicy::default(),
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
        }
    }
}

impl ClientOptions {
    /// The limiter these options describe.
    pub fn calls(&self) -> Calls {
        Calls::with_timeout(
            self.max_in_flight,
            self.qps,
            self.burst,
            self.retry,
            self.request_timeout,
        )
    }
}

/// A client for `cluster`. kube's own retry layer is switched off: retries happen in [`Calls`], where they
/// are bounded, jittered and cover every transient failure.
///
/// # Errors
/// [`Error::Kubeconfig`] when the kubeconfig cannot be read or parsed, names an unknown context, or
/// yields no usable client configuration.
pub async fn connect(cluster: &ClusterConfig) -> Result<Client> {
    Ok(connect_with_url(cluster).await?.0)
}

/// A client for `cluster` (as [`connect`]) and the API server's URL it talks to.
///
/// # Errors
/// As [`connect`].
pub async fn connect_with_url(cluster: &ClusterConfig) -> Result<(Client, String)> {
    let options = KubeConfigOptions {
        context: cluster.context.clone(),
        ..Default::default()
    };
    let bad = |what: &str, e: &dyn std::fmt::Display| Error::Kubeconfig(format!("{what}: {e}"));
    let mut config = match &cluster.kubeconfig {
        KubeconfigSource::Infer if cluster.context.is_none() => kube::Config::infer()
            .await
            .map_err(|e| bad("no kubeconfig found", &e))?,
        KubeconfigSource::Infer => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| bad("kubeconfig", &e))?,
        KubeconfigSource::File(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| bad(&format!("{}", path.display()), &e))?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| bad(&format!("{}", path.display()), &e))?
        }
        KubeconfigSource::Bytes(bytes) => {
            let text = std::str::from_utf8(bytes).map_err(|e| bad("kubeconfig is not UTF-8", &e))?;
            let kc = Kubeconfig::from_yaml(text).map_err(|e| bad("kubeconfig", &e))?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| bad("kubeconfig", &e))?
        }
    };
    config.default_retry = false;
    // A black-holed address fails in seconds, not after the system's TCP timeout. (No client-wide read
    // timeout: it would cut idle watches; requests have their deadline in `Calls`.)
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    let url = config.cluster_url.to_string();
    Ok((Client::try_from(config).map_err(|e| bad("client", &e))?, url))
}
