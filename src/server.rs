//! HTTPS admission listener and plain-HTTP admin listener.
//!
//! The library owns the routers, so tests drive exactly what the binary serves. The TLS loop is
//! hand-rolled on hyper-util so we control what axum::serve does not: per-handshake certificate
//! resolution, a handshake deadline, a connection cap, header-read timeout, HTTP/2 reset-flood
//! limits, and graceful drain.

use crate::admission::{Admission, BadReview, Webhook};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

/// Limits of the admission listener. Every one is a `serve` flag.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub header_read_timeout: Duration,
    pub handshake_timeout: Duration,
    /// Upper bound for one review; the apiserver's `?timeout=` lowers it per request.
    pub request_timeout: Duration,
    pub max_connections: usize,
    pub max_concurrent_streams: u32,
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_concurrent_streams: 256,
            drain_timeout: Duration::from_secs(25),
        }
    }
}

/// Shared state of both listeners.
#[derive(Clone)]
pub struct AppState {
    pub admission: Arc<Admission>,
    /// The TLS listener is bound and the config is valid.
    pub listening: Arc<AtomicBool>,
    pub limits: Arc<Limits>,
}

impl AppState {
    pub fn ready(&self) -> bool {
        self.listening.load(Ordering::Acquire) && self.admission.cluster.synced()
    }
}

/// The admission router: `POST /validate`, `POST /mutate`, and health probes.
pub fn admission_router(state: AppState) -> Router {
    let limit = state.limits.max_body_bytes;
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        // The admission handlers read the body themselves with `limit` (clear 413 message).
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The admin router (plain HTTP): metrics and probes, no admission traffic.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn validate(state: State<AppState>, request: Request) -> Response {
    review(state, request, Webhook::Validate).await
}

async fn mutate(state: State<AppState>, request: Request) -> Response {
    review(state, request, Webhook::Mutate).await
}

/// The apiserver's `?timeout=10s`, if present and parseable.
fn timeout_query(query: Option<&str>) -> Option<Duration> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("timeout="))
        .and_then(|t| humantime::parse_duration(t).ok())
}

async fn review(State(state): State<AppState>, request: Request, webhook: Webhook) -> Response {
    let (parts, body) = request.into_parts();
    let ct = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return problem(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("Content-Type must be application/json, got {ct:?}"),
        );
    }
    // The apiserver tells us how long it will wait: `?timeout=10s`.
    let budget = timeout_query(parts.uri.query()).map_or(state.limits.request_timeout, |t| {
        t.min(state.limits.request_timeout)
    });
    let body = match tokio::time::timeout(
        budget,
        axum::body::to_bytes(body, state.limits.max_body_bytes),
    )
    .await
    {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => {
            let too_big = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if too_big {
                problem(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!(
                        "request body exceeds the {} byte limit (--max-body-bytes)",
                        state.limits.max_body_bytes
                    ),
                )
            } else {
                problem(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read the request body: {e}"),
                )
            };
        }
        Err(_) => {
            return problem(
                StatusCode::REQUEST_TIMEOUT,
                "request body did not arrive within the request timeout",
            )
        }
    };
    match tokio::time::timeout(budget, state.admission.handle(webhook, &body, budget)).await {
        Ok(Ok(out)) => ([(header::CONTENT_TYPE, "application/json")], out).into_response(),
        Ok(Err(e @ BadReview::Encode(_))) => {
            tracing::error!(error = %e, "response encoding failed");
            problem(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "bad admission request");
            problem(StatusCode::BAD_REQUEST, &e.to_string())
        }
        Err(_) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "review did not finish within the request timeout",
        ),
    }
}

fn problem(code: StatusCode, reason: &str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{reason}\n"),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.admission.metrics.render(),
    )
        .into_response()
}

/// A shutdown signal shared by the listeners: flips to `true` once.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn new() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }
    pub async fn wait(mut self) {
        // An error means the sender is gone: treat as shutdown.
        let _ = self.0.wait_for(|v| *v).await;
    }
}

/// Serve the admission router over TLS until `shutdown`, then drain in-flight requests
/// (bounded by `limits.drain_timeout`).
pub async fn serve_tls(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    router: Router,
    limits: Arc<Limits>,
    shutdown: Shutdown,
) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_pending_accept_reset_streams(Some(50))
        .max_local_error_reset_streams(Some(256))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let stop = shutdown.clone().wait();
    tokio::pin!(stop);

    loop {
        let permit = tokio::select! {
            _ = &mut stop => break,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut stop => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        let handshake_timeout = limits.handshake_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = TowerToHyperService::new(router);
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("admission listener closed; draining in-flight requests");
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout reached; closing remaining connections");
    }
}

/// Serve the admin router over plain HTTP until `shutdown`.
pub async fn serve_admin(listener: TcpListener, router: Router, shutdown: Shutdown) {
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.wait())
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "admin listener failed");
    }
}

/// Bind a TCP listener with a clear error.
pub async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for {what}: {e}"))
}
