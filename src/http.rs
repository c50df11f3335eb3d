//! The HTTP side of both listeners: the admission routes (`POST /validate`, `POST /mutate`)
//! and probes, the admin routes (`/metrics` and probes), and how a request that cannot be
//! answered with an AdmissionReview is refused ([`Rejection`], which owns its status code).
//! The library owns the routers, so tests drive exactly what the binary serves; the TLS accept
//! loop that carries them is [`crate::listener`].

use crate::admission::{Admission, BadReview, Webhook};
use crate::listener::{Limits, Shutdown};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

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
pub(crate) fn admission_router(state: AppState) -> Router {
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
pub(crate) fn admin_router(state: AppState) -> Router {
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

/// Why a review request was answered without an AdmissionReview. The status code each
/// deserves lives here, on the type.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Rejection {
    #[error("Content-Type must be application/json, got {0:?}")]
    ContentType(String),
    #[error("request body exceeds the {0} byte limit (--max-body-bytes)")]
    TooLarge(usize),
    #[error("cannot read the request body: {0}")]
    Body(String),
    #[error(
        "request body did not arrive within {0:?} (--body-timeout, or the request's own timeout)"
    )]
    BodyTimeout(Duration),
    #[error("too many large reviews in flight: the memory budget is full (--max-inflight-bytes); retry shortly")]
    Busy,
    #[error(transparent)]
    Review(#[from] BadReview),
    #[error("review did not finish within the request timeout")]
    ReviewTimeout,
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::ContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Rejection::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::Body(_) => StatusCode::BAD_REQUEST,
            Rejection::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Rejection::Busy => StatusCode::TOO_MANY_REQUESTS,
            Rejection::Review(e) => e.status(),
            Rejection::ReviewTimeout => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "review failed");
        } else {
            tracing::debug!(error = %self, "bad admission request");
        }
        // Error texts can quote what the client sent (serde names the value it could not
        // read): bounded like every other answer.
        let text = self.to_string();
        let mut resp = (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", crate::finding::clip(&text, MAX_ERROR_BYTES)),
        )
            .into_response();
        if status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        resp
    }
}

/// Longest error text sent back for a refused request.
pub(crate) const MAX_ERROR_BYTES: usize = 1024;

impl BadReview {
    /// 500 when meshguard failed to encode its own answer, 429 when the memory budget is full,
    /// 400 for what the client sent.
    pub fn status(&self) -> StatusCode {
        match self {
            BadReview::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
            BadReview::Busy => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for BadReview {
    fn into_response(self) -> Response {
        Rejection::Review(self).into_response()
    }
}

async fn review(State(state): State<AppState>, request: Request, webhook: Webhook) -> Response {
    match answer(&state, request, webhook).await {
        Ok(out) => ([(header::CONTENT_TYPE, "application/json")], out).into_response(),
        Err(rejection) => rejection.into_response(),
    }
}

/// Read the body within the budget and let the admission front end answer it.
async fn answer(
    state: &AppState,
    request: Request,
    webhook: Webhook,
) -> Result<Vec<u8>, Rejection> {
    let (parts, body) = request.into_parts();
    let ct = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(Rejection::ContentType(ct.to_owned()));
    }
    // The apiserver tells us how long it will wait: `?timeout=10s`.
    let budget = timeout_query(parts.uri.query()).map_or(state.limits.request_timeout, |t| {
        t.min(state.limits.request_timeout)
    });
    let limit = state.limits.max_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // The body's bytes are held on the shared memory budget until the answer is sent.
    let mut held = match &state.admission.memory {
        Some(b) => b.reserve(),
        None => crate::budget::Reservation::unbounded(),
    };
    let within = budget.min(state.limits.body_timeout);
    let body = match tokio::time::timeout(within, read_body(body, limit, declared, &mut held)).await
    {
        Ok(b) => b?,
        Err(_) => return Err(Rejection::BodyTimeout(within)),
    };
    let admission = state.admission.clone();
    // Boxed: the review's future is large, and `timeout` would otherwise move it by value
    // (a memcpy of several KB per review, in the profile).
    let answer = Box::pin(admission.handle_owned(webhook, body, budget));
    let out = match tokio::time::timeout(budget, answer).await {
        Ok(answer) => answer?,
        Err(_) => return Err(Rejection::ReviewTimeout),
    };
    drop(held);
    Ok(out)
}

/// Read and discard the rest of a body the memory budget has no room for (at most `limit`
/// bytes, within the caller's body timeout), so the client reads the 429 instead of a reset
/// connection while it is still sending; nothing of it is kept.
async fn drain(mut body: axum::body::Body, limit: usize) -> Rejection {
    use http_body_util::BodyExt;
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen > limit {
                break;
            }
        }
    }
    Rejection::Busy
}

/// Read a request body of at most `limit` bytes, holding its bytes on `held`'s budget: a
/// declared `Content-Length` over the limit is refused before anything is read, and one the
/// budget has no room for is refused with 429 (`Busy`) at once.
async fn read_body(
    body: axum::body::Body,
    limit: usize,
    declared: Option<u64>,
    held: &mut crate::budget::Reservation,
) -> Result<bytes::Bytes, Rejection> {
    use http_body_util::BodyExt;
    if let Some(len) = declared {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > limit {
            return Err(Rejection::TooLarge(limit));
        }
        // No room now: wait a little for reviews in flight to finish (queueing a burst rather
        // than refusing it), then 429.
        let until = tokio::time::Instant::now() + BUDGET_WAIT;
        while !held.grow(len) {
            if tokio::time::Instant::now() >= until {
                return Err(drain(body, limit).await);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let mut body = body;
    // A body that arrives in one frame (a small review, the usual case) is kept as it came,
    // without a copy; from the second frame on, the frames are gathered into one buffer of the
    // declared size (no second copy of a large body either).
    let mut first: Option<bytes::Bytes> = None;
    let mut all = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let too_big = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_big {
                Rejection::TooLarge(limit)
            } else {
                Rejection::Body(e.to_string())
            }
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len();
        if total > limit {
            return Err(Rejection::TooLarge(limit));
        }
        if total > held.bytes() && !held.grow(total - held.bytes()) {
            drop((first, all));
            return Err(drain(body, limit - total).await);
        }
        if all.is_empty() {
            match first.take() {
                None => {
                    first = Some(data);
                    continue;
                }
                Some(earlier) => {
                    all.reserve(held.bytes().max(total));
                    all.extend_from_slice(&earlier);
                }
            }
        }
        all.extend_from_slice(&data);
    }
    Ok(match first {
        Some(only) => only,
        None => all.freeze(),
    })
}

/// How long a body waits for room in the memory budget before it is refused with 429.
const BUDGET_WAIT: Duration = Duration::from_secs(2);

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

/// Serve the admin router over plain HTTP until `shutdown`, through the same hardened accept
/// loop as the admission port (header and idle timeouts, its own connection caps).
pub(crate) async fn serve_admin(
    listener: TcpListener,
    router: Router,
    limits: Arc<Limits>,
    shutdown: Shutdown,
) {
    crate::listener::serve_plain(listener, router, limits, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rejection_carries_its_status() {
        let cases = [
            (Rejection::ContentType("text/plain".into()), 415),
            (Rejection::TooLarge(10), 413),
            (Rejection::Body("reset".into()), 400),
            (Rejection::BodyTimeout(Duration::from_secs(1)), 408),
            (Rejection::Busy, 429),
            (Rejection::Review(BadReview::Busy), 429),
            (Rejection::Review(BadReview::NoRequest), 400),
            (Rejection::Review(BadReview::Encode("x".into())), 500),
            (Rejection::ReviewTimeout, 503),
        ];
        for (rejection, code) in cases {
            let text = rejection.to_string();
            let resp = rejection.into_response();
            assert_eq!(resp.status().as_u16(), code, "{text}");
        }
        assert_eq!(
            timeout_query(Some("timeout=10s")),
            Some(Duration::from_secs(10))
        );
        assert_eq!(timeout_query(Some("a=b")), None);
    }
}
