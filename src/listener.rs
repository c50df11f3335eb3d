//! The accept loop of both listeners, hand-rolled on hyper-util, so we control what
//! `axum::serve` does not: per-handshake certificate resolution and a handshake deadline (the
//! HTTPS admission port), a connection cap and a per-peer cap, header-read timeout, idle and
//! HTTP/2 reset-flood watchdogs per connection, and graceful drain. The admin port (plain HTTP)
//! runs through the same loop with its own, smaller caps. The routes it carries are
//! [`crate::http`]'s.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

/// Limits of the admission listener. Every one is a `serve` flag.
#[derive(Clone, Debug)]
pub struct Limits {
    pub(crate) max_body_bytes: usize,
    pub(crate) header_read_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    /// Upper bound for one review; the apiserver's `?timeout=` lowers it per request.
    pub(crate) request_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_concurrent_streams: u32,
    pub drain_timeout: Duration,
    /// A connection with no byte read or written and no review in flight for this long is
    /// closed. Before its first request the (shorter) header timeout applies instead.
    pub(crate) idle_timeout: Duration,
    /// Requests a client may cancel (HTTP/2 RST_STREAM, an abandoned body) or get refused with
    /// a 4xx on one connection within 10 s before the connection is closed: rapid-reset floods.
    pub(crate) max_cancelled_per_10s: u32,
    /// Time a client has to send a request's whole body (the request's own `?timeout=` lowers
    /// it): a client trickling its body holds a connection and a review slot at most this long.
    pub(crate) body_timeout: Duration,
    /// Connections one peer address may hold at once; further ones are closed on accept, so
    /// one client cannot fill `max_connections` and starve the apiserver's new handshakes.
    pub(crate) max_connections_per_peer: usize,
    /// Bytes the reviews in flight may hold together (bodies and decoded trees); a review that
    /// does not fit is answered 429 with `Retry-After`.
    pub(crate) max_inflight_bytes: usize,
    /// Estimated bytes the decoded objects of one review may take; a larger review is refused
    /// as too large to judge (a denial, never a partial judgement).
    pub max_decoded_bytes: usize,
    /// Connections the admin port (metrics, probes) may hold at once.
    pub(crate) admin_max_connections: usize,
}

/// The largest body kube-apiserver sends: an UPDATE carries `object` and `oldObject`, each at
/// most the apiserver's request body limit of 3 MiB (`MaxRequestBodyBytes` in
/// k8s.io/apiserver/pkg/server/config.go `NewConfig`, twice etcd's default 1.5 MiB
/// `--max-request-bytes`), plus the envelope (userInfo, options): 7 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 7 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            header_read_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_concurrent_streams: 256,
            drain_timeout: Duration::from_secs(25),
            idle_timeout: Duration::from_secs(90),
            max_cancelled_per_10s: 500,
            body_timeout: Duration::from_secs(10),
            max_connections_per_peer: 1000,
            max_inflight_bytes: 64 * 1024 * 1024,
            max_decoded_bytes: 32 * 1024 * 1024,
            admin_max_connections: 64,
        }
    }
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
    let caps = Caps {
        total: limits.max_connections,
        per_peer: limits.max_connections_per_peer,
    };
    serve_loop(
        listener,
        Some(acceptor),
        router,
        limits,
        caps,
        shutdown,
        "admission",
    )
    .await;
}

/// Serve a router over plain HTTP (the admin port) through the same loop: header, idle and
/// reset-flood watchdogs, and `limits.admin_max_connections` connections (a quarter of them per
/// peer, at least 4).
pub(crate) async fn serve_plain(
    listener: TcpListener,
    router: Router,
    limits: Arc<Limits>,
    shutdown: Shutdown,
) {
    let total = limits.admin_max_connections.max(1);
    let caps = Caps {
        total,
        per_peer: (total / 4).max(4).min(total),
    };
    serve_loop(listener, None, router, limits, caps, shutdown, "admin").await;
}

/// Connection caps of one listener.
#[derive(Clone, Copy, Debug)]
struct Caps {
    total: usize,
    per_peer: usize,
}

/// Open connections per peer address.
#[derive(Default)]
struct Peers(std::sync::Mutex<HashMap<IpAddr, usize>>);

/// One peer's connection, counted until dropped.
struct PeerSlot {
    peers: Arc<Peers>,
    ip: IpAddr,
}

impl Peers {
    fn admit(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<PeerSlot> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peers: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut m = self.peers.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

async fn serve_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    router: Router,
    limits: Arc<Limits>,
    caps: Caps,
    shutdown: Shutdown,
    name: &'static str,
) {
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
    let permits = Arc::new(Semaphore::new(caps.total.max(1)));
    let peers = Arc::new(Peers::default());
    let mut refused_peer = 0u64;
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
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // One peer may not hold more than its share: closed at once, the permit freed.
        let Some(slot) = peers.admit(peer.ip(), caps.per_peer) else {
            refused_peer += 1;
            if refused_peer.is_power_of_two() {
                tracing::warn!(listener = name, %peer, limit = caps.per_peer, refused = refused_peer, "peer holds its maximum of connections; closing new ones");
            }
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let router = router.clone();
        let watcher = graceful.watcher();
        let limits = limits.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _slot = slot;
            match acceptor {
                Some(acceptor) => {
                    let tls =
                        match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp))
                            .await
                        {
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
                    serve_connection(tls, peer, router, builder, watcher, limits).await;
                }
                None => serve_connection(tcp, peer, router, builder, watcher, limits).await,
            }
        });
    }
    drop(listener);
    tracing::info!(
        listener = name,
        "listener closed; draining in-flight requests"
    );
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            "drain timeout reached; closing remaining connections"
        );
    }
}

/// Serve one connection with its watchdogs: idle (before the first request: the header
/// timeout) and reset floods.
async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: hyper_util::server::graceful::Watcher,
    limits: Arc<Limits>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let stats = Arc::new(ConnStats::new(limits.max_cancelled_per_10s));
    let io = Tracked {
        inner: io,
        stats: stats.clone(),
    };
    let svc_stats = stats.clone();
    let service = tower::service_fn(move |req: axum::extract::Request<hyper::body::Incoming>| {
        let router = router.clone();
        let guard = InFlight::start(svc_stats.clone());
        let seen = svc_stats.clone();
        let req = req.map(|inner| WatchedBody {
            inner,
            stats: svc_stats.clone(),
        });
        async move {
            let resp = tower::ServiceExt::oneshot(router, req).await;
            // kube-apiserver never sends malformed reviews: a stream of 4xx answers on one
            // connection is abuse (e.g. HTTP/2 rapid reset of empty requests, which hyper
            // answers before the client's RST_STREAM lands). 429 (memory budget full) is not the
            // client's fault and does not count.
            if resp.as_ref().is_ok_and(|r| {
                r.status().is_client_error()
                    && r.status() != axum::http::StatusCode::TOO_MANY_REQUESTS
            }) {
                seen.cancelled_one();
            }
            guard.finish();
            resp
        }
    });
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    let conn = watcher.watch(conn.into_owned());
    tokio::pin!(conn);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = &mut conn => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = stats.flood.notified() => {
                tracing::warn!(%peer, limit = limits.max_cancelled_per_10s, "too many cancelled requests (reset flood): closing the connection");
                break;
            }
            _ = tick.tick() => {
                let limit = if stats.started.load(Ordering::Relaxed) == 0 {
                    limits.header_read_timeout
                } else {
                    limits.idle_timeout
                };
                if stats.in_flight.load(Ordering::Relaxed) == 0 && stats.idle_for() > limit {
                    tracing::debug!(%peer, "closing idle connection");
                    break;
                }
            }
        }
    }
}

/// Per-connection activity, shared by the I/O wrapper, the service wrapper and the watchdog.
struct ConnStats {
    born: std::time::Instant,
    /// Milliseconds since `born` of the last byte read or written.
    last_activity_ms: std::sync::atomic::AtomicU64,
    started: std::sync::atomic::AtomicU32,
    in_flight: std::sync::atomic::AtomicU32,
    /// Cancelled requests in the current 10 s window, and where the window starts (ms).
    cancelled: std::sync::atomic::AtomicU32,
    window_start_ms: std::sync::atomic::AtomicU64,
    max_cancelled: u32,
    flood: tokio::sync::Notify,
}

impl ConnStats {
    fn new(max_cancelled: u32) -> ConnStats {
        ConnStats {
            born: std::time::Instant::now(),
            last_activity_ms: Default::default(),
            started: Default::default(),
            in_flight: Default::default(),
            cancelled: Default::default(),
            window_start_ms: Default::default(),
            max_cancelled,
            flood: tokio::sync::Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.last_activity_ms
            .store(self.now_ms(), Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_activity_ms.load(Ordering::Relaxed)),
        )
    }

    fn cancelled_one(&self) {
        let now = self.now_ms();
        if now.saturating_sub(self.window_start_ms.load(Ordering::Relaxed)) > 10_000 {
            self.window_start_ms.store(now, Ordering::Relaxed);
            self.cancelled.store(0, Ordering::Relaxed);
        }
        if self.cancelled.fetch_add(1, Ordering::Relaxed) + 1 > self.max_cancelled {
            self.flood.notify_one();
        }
    }
}

/// Counts a request from the service call to its response; dropped unfinished = cancelled.
struct InFlight {
    stats: Arc<ConnStats>,
    finished: bool,
}

impl InFlight {
    fn start(stats: Arc<ConnStats>) -> InFlight {
        stats.started.fetch_add(1, Ordering::Relaxed);
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            stats,
            finished: false,
        }
    }
    fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.stats.touch();
        if !self.finished {
            self.stats.cancelled_one();
        }
    }
}

/// A request body that counts the client abandoning it (an HTTP/2 RST_STREAM mid-body, a
/// dropped connection) as a cancelled request: the handler then answers quickly with an error,
/// so the service future alone would look finished.
struct WatchedBody {
    inner: hyper::body::Incoming,
    stats: Arc<ConnStats>,
}

impl hyper::body::Body for WatchedBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, hyper::Error>>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, std::task::Poll::Ready(Some(Err(_)))) {
            self.stats.cancelled_one();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The TLS stream, recording when bytes last moved (for the idle watchdog).
struct Tracked<S> {
    inner: S,
    stats: Arc<ConnStats>,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.stats.touch();
        }
        r
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.stats.touch();
        }
        r
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.stats.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Bind a TCP listener with a clear error.
pub async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for {what}: {e}"))
}
