//! Connecting to a cluster: [`connect`].

use std::{path::PathBuf, time::Duration};

use kube::{
    Client,
    config::{KubeConfigOptions, Kubeconfig},
};

use super::{
    calls::{Calls, RetryPolicy},
    kubeconfig::{self, KubeconfigTrust},
};
use crate::{Error, Result};

/// Where a cluster's kubeconfig comes from.
#[derive(Debug, Clone, Default)]
pub enum KubeconfigSource {
    /// `KUBECONFIG`, `~/.kube/config`, or the in-cluster service account.
    #[default]
    Infer,
    /// A kubeconfig file.
    File(PathBuf),
    /// Kubeconfig contents read as data, e.g. the `kubeconfig` key of a RemoteCluster's Secret: exec
    /// plugins, auth providers and file references are refused, and errors never quote the bytes
    /// ([`super::kubeconfig`]).
    Bytes(Vec<u8>),
    /// Kubeconfig contents that may run exec plugins and auth providers and name files (the operator's
    /// `--allow-kubeconfig-exec`); errors still never quote the bytes.
    BytesAllowingExec(Vec<u8>),
}

/// How to reach one cluster (`..Default::default()` for the fields a caller does not set).
#[derive(Debug, Clone, Default)]
pub struct ClusterConfig {
    /// The kubeconfig.
    pub kubeconfig: KubeconfigSource,
    /// The context to use (default: the kubeconfig's current context).
    pub context: Option<String>,
    /// Accept any server certificate (insecure: a machine in the middle can read and change everything,
    /// credentials included). For the Go operator's `IGNORE_CERT`; a kubeconfig's own
    /// `insecure-skip-tls-verify: true` is honoured without it.
    pub insecure_skip_tls_verify: bool,
    /// The `User-Agent` of every request (default: [`default_user_agent`]). API servers record it in
    /// their audit logs: a name per operator replica tells apart replicas that share one kubeconfig.
    pub user_agent: Option<String>,
}

/// `dr-syncer/<version>`: the `User-Agent` of a client whose [`ClusterConfig`] names none.
pub fn default_user_agent() -> String {
    format!("dr-syncer/{}", env!("CARGO_PKG_VERSION"))
}

/// Default deadline of one request attempt.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The bound on every request of a client made by [`connect`], as a backstop for calls made outside
/// [`Calls`] (which has its own, shorter, configurable deadline per attempt): no answer (the response's
/// head) within it fails the request. Watches and followed logs are not bounded (they end on the
/// server's `timeoutSeconds`, or when the caller stops reading).
pub const REQUEST_BACKSTOP: Duration = Duration::from_secs(120);
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
    connect_bounded(cluster, REQUEST_BACKSTOP).await
}

/// A client for `cluster` (as [`connect`]) whose every request but streams fails when no answer comes
/// within `limit` (e.g. the operator's client of its own cluster, whose calls do not go through
/// [`Calls`]), and the API server's URL it talks to.
///
/// # Errors
/// As [`connect`].
pub async fn connect_bounded(cluster: &ClusterConfig, limit: Duration) -> Result<(Client, String)> {
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
        KubeconfigSource::Bytes(bytes) | KubeconfigSource::BytesAllowingExec(bytes) => {
            let trust = match &cluster.kubeconfig {
                KubeconfigSource::BytesAllowingExec(_) => KubeconfigTrust::AllowExec,
                _ => KubeconfigTrust::DataOnly,
            };
            let kc = kubeconfig::parse(bytes, trust).map_err(Error::Kubeconfig)?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| Error::Kubeconfig(kubeconfig::describe(&e, cluster.context.as_deref())))?
        }
    };
    let data = matches!(
        cluster.kubeconfig,
        KubeconfigSource::Bytes(_) | KubeconfigSource::BytesAllowingExec(_)
    );
    config.default_retry = false;
    if cluster.insecure_skip_tls_verify {
        config.accept_invalid_certs = true;
    }
    // A black-holed address fails in seconds, not after the system's TCP timeout. (No client-wide read
    // timeout: it would cut idle watches; requests have their deadline in `Calls`.)
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    let agent = cluster.user_agent.clone().unwrap_or_else(default_user_agent);
    let agent = http::HeaderValue::from_str(&agent).map_err(|_| {
        Error::InvalidConfig(format!(
            "user agent {agent:?}: not a valid header value (no line breaks or control characters)"
        ))
    })?;
    config
        .headers
        .retain(|(name, _)| name != http::header::USER_AGENT);
    config.headers.push((http::header::USER_AGENT, agent));
    let url = config.cluster_url.to_string();
    let client = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| {
            if data {
                Error::Kubeconfig("its TLS settings (certificates, keys) could not be used".into())
            } else {
                bad("client", &e)
            }
        })?
        .with_layer(&Backstop(limit))
        .build();
    Ok((client, url))
}

/// A deadline on every request but streams ([`REQUEST_BACKSTOP`]).
#[derive(Debug, Clone, Copy)]
struct Backstop(Duration);

impl<S> tower_layer::Layer<S> for Backstop {
    type Service = BackstopService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BackstopService { inner, limit: self.0 }
    }
}

#[derive(Debug, Clone)]
struct BackstopService<S> {
    inner: S,
    limit: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Whether a request streams until the caller stops (a watch, a followed log).
fn is_stream(uri: &http::Uri) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&')
            .any(|kv| matches!(kv, "watch=true" | "watch=1" | "follow=true" | "follow=1"))
    })
}

impl<S, B> tower_service::Service<http::Request<B>> for BackstopService<S>
where
    S: tower_service::Service<http::Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = std::result::Result<S::Response, BoxError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let stream = is_stream(req.uri());
        let limit = self.limit;
        let response = self.inner.call(req);
        Box::pin(async move {
            if stream {
                return response.await.map_err(Into::into);
            }
            match tokio::time::timeout(limit, response).await {
                Ok(r) => r.map_err(Into::into),
                Err(_) => Err(format!("no answer within {} s (request timed out)", limit.as_secs()).into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_watches_and_followed_logs_are_streams() {
        let uri = |s: &str| s.parse::<http::Uri>().unwrap();
        assert!(is_stream(&uri("/api/v1/pods?watch=true&resourceVersion=1")));
        assert!(is_stream(&uri(
            "/api/v1/namespaces/a/pods/p/log?container=c&follow=true"
        )));
        assert!(!is_stream(&uri("/api/v1/namespaces/a/pods/p/log?container=c")));
        assert!(!is_stream(&uri(
            "/api/v1/configmaps?limit=500&labelSelector=watch%3Dtrue"
        )));
        assert!(!is_stream(&uri("/api/v1/namespaces")));
    }

    /// A server that accepts and never answers: a plain request fails at the backstop, a watch is left
    /// alone (paused time: no real waiting).
    #[tokio::test(start_paused = true)]
    async fn the_backstop_bounds_requests_but_not_streams() {
        use tower_layer::Layer;
        use tower_service::Service;

        #[derive(Clone)]
        struct Never;
        impl tower_service::Service<http::Request<()>> for Never {
            type Response = ();
            type Error = BoxError;
            type Future = std::future::Pending<std::result::Result<(), BoxError>>;
            fn poll_ready(
                &mut self,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::result::Result<(), BoxError>> {
                std::task::Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: http::Request<()>) -> Self::Future {
                std::future::pending()
            }
        }
        let mut svc = Backstop(Duration::from_secs(120)).layer(Never);
        let get = http::Request::get("/api/v1/namespaces/kube-system")
            .body(())
            .unwrap();
        let err = svc.call(get).await.unwrap_err();
        assert!(err.to_string().contains("no answer within 120 s"), "{err}");
        let watch = http::Request::get("/api/v1/pods?watch=true").body(()).unwrap();
        let waited = tokio::time::timeout(Duration::from_secs(3600), svc.call(watch)).await;
        assert!(waited.is_err(), "a watch is not cut by the backstop");
    }

    /// A User-Agent that is not a valid header value is a configuration error, not a panic.
    #[tokio::test]
    async fn a_user_agent_with_a_line_break_is_refused() {
        let kubeconfig = b"apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n\
users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n";
        let config = |agent: &str| ClusterConfig {
            kubeconfig: KubeconfigSource::Bytes(kubeconfig.to_vec()),
            user_agent: Some(agent.to_owned()),
            ..Default::default()
        };
        assert!(
            connect(&config("dr-syncer-operator/0.1.0 (replica-a)"))
                .await
                .is_ok()
        );
        let Err(err) = connect(&config("evil\r\nX-Injected: 1")).await else {
            panic!("a header with a line break was accepted");
        };
        assert_eq!(err.kind(), "InvalidConfig", "{err}");
    }
}
