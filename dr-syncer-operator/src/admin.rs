//! The admin endpoints, as the Go operator serves them: `/healthz` (the process is alive), `/readyz` (its
//! watch caches of the custom resources have synced — on every replica, so a standby is ready too; it is
//! not gated on holding the leader lease) and `/metrics` (Prometheus).

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Request, Response, StatusCode, body::Incoming, header, server::conn::http1, service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::{
    metrics::Metrics,
    secure_metrics::{Decision, MetricsAuth},
};

/// `--metrics-secure`: TLS and token authorization for `/metrics` ([`crate::secure_metrics`]).
#[derive(Clone)]
pub struct Secure {
    /// The TLS configuration.
    pub tls: Arc<rustls::ServerConfig>,
    /// Who may read `/metrics`.
    pub auth: Arc<MetricsAuth>,
}

impl std::fmt::Debug for Secure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secure").finish_non_exhaustive()
    }
}

/// Shared readiness flag.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Mark ready.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Parse a Go-style listen address (`:8080`, `0.0.0.0:8080`, `127.0.0.1:0`).
pub fn parse_addr(addr: &str) -> Result<SocketAddr, String> {
    let full = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_owned()
    };
    full.parse().map_err(|e| format!("invalid address {addr:?}: {e}"))
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

async fn handle(
    req: Request<Incoming>,
    metrics: Option<Arc<Metrics>>,
    ready: Readiness,
    auth: Option<Arc<MetricsAuth>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if let Some(auth) = &auth {
        // The secure endpoint serves /metrics alone, to those the controller cluster allows.
        if req.uri().path() != "/metrics" {
            return Ok(respond(StatusCode::NOT_FOUND, TEXT, "not found\n".into()));
        }
        let header = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match auth.check(header).await {
            Decision::Allowed => {}
            Decision::Unauthenticated => {
                let mut resp = respond(StatusCode::UNAUTHORIZED, TEXT, "Unauthorized\n".into());
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                return Ok(resp);
            }
            Decision::Forbidden(user) => {
                return Ok(respond(
                    StatusCode::FORBIDDEN,
                    TEXT,
                    format!("Forbidden: {user} may not get /metrics\n"),
                ));
            }
        }
    }
    Ok(match req.uri().path() {
        "/healthz" | "/livez" => respond(StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" if ready.is_ready() => respond(StatusCode::OK, TEXT, "ok\n".into()),
        "/readyz" => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            "watch caches not synced yet\n".into(),
        ),
        "/metrics" => match &metrics {
            Some(m) => respond(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                m.render(),
            ),
            None => respond(StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
        },
        _ => respond(StatusCode::NOT_FOUND, TEXT, "not found\n".into()),
    })
}

/// Bind `addr` and serve until `cancel` fires. `metrics: None` serves only the probes; with `secure`,
/// only `/metrics`, over TLS, to authorized clients.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    metrics: Option<Arc<Metrics>>,
    ready: Readiness,
    secure: Option<Secure>,
    cancel: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    info!(address = %local, "serving admin endpoints");
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = cancel.cancelled() => return,
                a = listener.accept() => a,
            };
            let Ok((stream, _)) = accepted else { continue };
            let (metrics, ready, secure) = (metrics.clone(), ready.clone(), secure.clone());
            tokio::spawn(async move {
                let auth = secure.as_ref().map(|s| s.auth.clone());
                let svc = service_fn(move |req| handle(req, metrics.clone(), ready.clone(), auth.clone()));
                let served = match secure {
                    Some(s) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(s.tls);
                        // (A handshake that never completes is dropped after 10 s.)
                        match tokio::time::timeout(
                            std::time::Duration::from_secs(10),
                            acceptor.accept(stream),
                        )
                        .await
                        {
                            Ok(Ok(tls)) => {
                                http1::Builder::new()
                                    .serve_connection(TokioIo::new(tls), svc)
                                    .await
                            }
                            Ok(Err(e)) => {
                                debug!(error = %e, "metrics TLS handshake");
                                return;
                            }
                            Err(_) => return,
                        }
                    }
                    None => {
                        http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await
                    }
                };
                if let Err(e) = served {
                    debug!(error = %e, "admin connection");
                }
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_addresses() {
        assert_eq!(parse_addr(":8080").unwrap().port(), 8080);
        assert_eq!(parse_addr("127.0.0.1:0").unwrap().port(), 0);
        assert!(parse_addr("nonsense").is_err());
    }

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let code = out[9..12].parse().unwrap();
        (code, out)
    }

    #[tokio::test]
    async fn probes_and_metrics() {
        let ready = Readiness::default();
        let cancel = CancellationToken::new();
        let addr = serve(
            "127.0.0.1:0".parse().unwrap(),
            Some(Arc::new(Metrics::new())),
            ready.clone(),
            None,
            cancel.clone(),
        )
        .await
        .unwrap();
        assert_eq!(get(addr, "/healthz").await.0, 200);
        assert_eq!(get(addr, "/readyz").await.0, 503);
        ready.set_ready();
        assert_eq!(get(addr, "/readyz").await.0, 200);
        let (code, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(body.contains("dr_syncer_leader"), "{body}");
        assert_eq!(get(addr, "/nope").await.0, 404);
        cancel.cancel();
    }
}
