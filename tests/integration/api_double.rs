//! An API-server test double: a plain-HTTP server on 127.0.0.1, in this process, that answers
//! the metadata-only list (paginated), watch and get requests kube-rs makes for Namespaces and
//! ServiceAccounts (the pattern of kube-rs's and controller-rs's `ApiServerVerifier`, but
//! serving real HTTP so the real `kube::Client` stack is exercised), and the list and watch of
//! MutatingWebhookConfigurations and of the ConfigMaps of one namespace (the mesh as installed),
//! which it can also refuse (403). Shared by the `cluster_context` and `mesh_context` suites and
//! `benches/cache.rs`.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

pub type Body = BoxBody<Bytes, Infallible>;
pub type Labels = BTreeMap<String, String>;

/// What the test double knows. `listed_*` appear in list responses (and so in the caches);
/// `late_*` exist only for direct GETs, like objects created after the watch's list.
#[derive(Default)]
pub struct State {
    pub listed_namespaces: BTreeMap<String, Labels>,
    pub late_namespaces: BTreeMap<String, Labels>,
    pub listed_accounts: BTreeSet<(String, String)>,
    pub late_accounts: BTreeSet<(String, String)>,
    /// Namespaces (listed or late) that are Terminating: served with a `deletionTimestamp`.
    pub terminating: BTreeSet<String>,
    /// Direct GETs of these names answer 500.
    pub failing: BTreeSet<String>,
    /// Direct GETs of these names answer after this long.
    pub slow: BTreeMap<String, Duration>,
    /// Paths of every direct GET received.
    pub gets: Vec<String>,
    /// MutatingWebhookConfigurations, whole objects (list and watch).
    pub webhook_configurations: Vec<Value>,
    /// ConfigMaps, whole objects, by namespace (list and watch of one namespace).
    pub config_maps: BTreeMap<String, Vec<Value>>,
    /// Answer the mesh kinds (MutatingWebhookConfigurations, ConfigMaps) with 403 Forbidden.
    pub forbid_mesh: bool,
    /// PolicyExceptions (meshguard.io/v1alpha1), whole objects (list and watch); `None`: the
    /// CRD is not installed (404).
    pub policy_exceptions: Option<Vec<Value>>,
    /// Answer watches of Namespaces and ServiceAccounts with 500, and every list of them after
    /// the first with 500 too: the caches sync once, then their watches keep failing (a relist
    /// that succeeded would make the cache authoritative again for a moment, and it does not
    /// hold what only GETs answer).
    pub watch_fails: bool,
    /// The Namespace and ServiceAccount lists answered whole (for `watch_fails`).
    pub listed_once: std::collections::BTreeSet<String>,
}

pub struct ApiServer {
    url: String,
    state: Arc<Mutex<State>>,
    namespace_events: broadcast::Sender<String>,
    account_events: broadcast::Sender<String>,
    mesh_events: MeshEvents,
    task: tokio::task::JoinHandle<()>,
}

/// Watch streams of the mesh kinds.
#[derive(Clone)]
pub struct MeshEvents {
    pub webhooks: broadcast::Sender<String>,
    pub config_maps: broadcast::Sender<String>,
    pub policy_exceptions: broadcast::Sender<String>,
}

/// A typed list (what the API server answers for full objects).
pub fn object_list(api_version: &str, kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": api_version, "kind": format!("{kind}List"),
        "metadata": {"resourceVersion": "1"}, "items": items})
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn meta_object(name: &str, namespace: Option<&str>, labels: &Labels, rv: u64) -> Value {
    let mut metadata = json!({"name": name, "labels": labels, "resourceVersion": rv.to_string(),
        "uid": format!("uid-{name}")});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": metadata})
}

/// A Namespace's metadata, Terminating (`deletionTimestamp` set) when `terminating`.
pub fn namespace_object(name: &str, labels: &Labels, rv: u64, terminating: bool) -> Value {
    let mut o = meta_object(name, None, labels, rv);
    if terminating {
        o["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    o
}

/// A list page; `next` is the offset the `continue` token of the next page encodes.
pub fn meta_list(items: Vec<Value>, next: Option<usize>) -> Value {
    let mut metadata = json!({"resourceVersion": "1"});
    if let Some(n) = next {
        metadata["continue"] = json!(n.to_string());
    }
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
        "metadata": metadata, "items": items})
}

/// `limit` and `continue` of a list request, as (offset, page size); pages like the API server.
pub fn page(query: &str) -> (usize, usize) {
    let mut skip = 0;
    let mut take = usize::MAX;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("limit", v)) => take = v.parse().unwrap_or(usize::MAX),
            Some(("continue", v)) => skip = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    (skip, take)
}

pub fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .unwrap_or_default()
}

pub fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_response(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code.as_u16()}),
    )
}

/// A watch response: one JSON event per line, for as long as the test keeps the sender.
pub fn watch_stream(rx: broadcast::Receiver<String>) -> Response<Body> {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(line) => {
                    return Some((
                        Ok::<_, Infallible>(Frame::data(Bytes::from(line + "\n"))),
                        rx,
                    ))
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_default()
}

pub async fn handle(
    req: Request<hyper::body::Incoming>,
    state: Arc<Mutex<State>>,
    namespace_events: broadcast::Sender<String>,
    account_events: broadcast::Sender<String>,
    mesh_events: MeshEvents,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let watch = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let forbidden = || {
        status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "the test double forbids this kind",
        )
    };
    let (forbid_mesh, watch_fails) = {
        let s = state.lock().expect("state");
        (s.forbid_mesh, s.watch_fails)
    };
    let broken_watch = || {
        status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "the test double fails this watch",
        )
    };
    let resp = match segments.as_slice() {
        ["apis", "admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations"]
            if forbid_mesh =>
        {
            forbidden()
        }
        ["api", "v1", "namespaces", _, "configmaps"] if forbid_mesh => forbidden(),
        ["apis", "admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations"]
            if watch =>
        {
            watch_stream(mesh_events.webhooks.subscribe())
        }
        ["apis", "admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations"] => {
            let items = state.lock().expect("state").webhook_configurations.clone();
            json_response(
                StatusCode::OK,
                &object_list(
                    "admissionregistration.k8s.io/v1",
                    "MutatingWebhookConfiguration",
                    items,
                ),
            )
        }
        ["api", "v1", "namespaces", _, "configmaps"] if watch => {
            watch_stream(mesh_events.config_maps.subscribe())
        }
        ["api", "v1", "namespaces", ns, "configmaps"] => {
            let items = state
                .lock()
                .expect("state")
                .config_maps
                .get(*ns)
                .cloned()
                .unwrap_or_default();
            json_response(StatusCode::OK, &object_list("v1", "ConfigMap", items))
        }
        ["apis", "meshguard.io", "v1alpha1", "policyexceptions"] => {
            match state.lock().expect("state").policy_exceptions.clone() {
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "the server could not find the requested resource",
                ),
                Some(_) if watch => watch_stream(mesh_events.policy_exceptions.subscribe()),
                Some(items) => json_response(
                    StatusCode::OK,
                    &object_list("meshguard.io/v1alpha1", "PolicyException", items),
                ),
            }
        }
        ["api", "v1", "namespaces"] | ["api", "v1", "serviceaccounts"] if watch && watch_fails => {
            broken_watch()
        }
        ["api", "v1", "namespaces"] | ["api", "v1", "serviceaccounts"]
            if watch_fails
                && page(&query).0 == 0
                && !state
                    .lock()
                    .expect("state")
                    .listed_once
                    .insert(path.clone()) =>
        {
            broken_watch()
        }
        ["api", "v1", "namespaces"] if watch => watch_stream(namespace_events.subscribe()),
        ["api", "v1", "serviceaccounts"] if watch => watch_stream(account_events.subscribe()),
        ["api", "v1", "namespaces"] => {
            let s = state.lock().expect("state");
            let (skip, take) = page(&query);
            let items = s
                .listed_namespaces
                .iter()
                .skip(skip)
                .take(take)
                .map(|(n, l)| namespace_object(n, l, 1, s.terminating.contains(n)))
                .collect();
            let more = s.listed_namespaces.len() > skip + take;
            json_response(
                StatusCode::OK,
                &meta_list(items, more.then_some(skip + take)),
            )
        }
        ["api", "v1", "serviceaccounts"] => {
            let s = state.lock().expect("state");
            let (skip, take) = page(&query);
            let items = s
                .listed_accounts
                .iter()
                .skip(skip)
                .take(take)
                .map(|(ns, n)| meta_object(n, Some(ns), &Labels::new(), 1))
                .collect();
            let more = s.listed_accounts.len() > skip + take;
            json_response(
                StatusCode::OK,
                &meta_list(items, more.then_some(skip + take)),
            )
        }
        ["api", "v1", "namespaces", name] => {
            let (delay, fail, found) = {
                let mut s = state.lock().expect("state");
                s.gets.push(path.clone());
                let found = s
                    .listed_namespaces
                    .get(*name)
                    .or_else(|| s.late_namespaces.get(*name))
                    .map(|l| namespace_object(name, l, 1, s.terminating.contains(*name)));
                (s.slow.get(*name).copied(), s.failing.contains(*name), found)
            };
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            match (fail, found) {
                (true, _) => status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "etcdserver: request timed out",
                ),
                (false, Some(object)) => json_response(StatusCode::OK, &object),
                (false, None) => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("namespaces \"{name}\" not found"),
                ),
            }
        }
        ["api", "v1", "namespaces", ns, "serviceaccounts", name] => {
            let key = ((*ns).to_owned(), (*name).to_owned());
            let (fail, found) = {
                let mut s = state.lock().expect("state");
                s.gets.push(path.clone());
                (
                    s.failing.contains(*name),
                    s.listed_accounts.contains(&key) || s.late_accounts.contains(&key),
                )
            };
            match (fail, found) {
                (true, _) => status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "boom"),
                (false, true) => json_response(
                    StatusCode::OK,
                    &meta_object(name, Some(ns), &Labels::new(), 1),
                ),
                (false, false) => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("serviceaccounts \"{name}\" not found"),
                ),
            }
        }
        _ => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the test double does not serve this path",
        ),
    };
    Ok(resp)
}

impl ApiServer {
    pub async fn start(state: State) -> ApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(state));
        let (namespace_events, _) = broadcast::channel(64);
        let (account_events, _) = broadcast::channel(64);
        let mesh_events = MeshEvents {
            webhooks: broadcast::channel(64).0,
            config_maps: broadcast::channel(64).0,
            policy_exceptions: broadcast::channel(64).0,
        };
        let (st, ne, ae, me) = (
            state.clone(),
            namespace_events.clone(),
            account_events.clone(),
            mesh_events.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (st, ne, ae, me) = (st.clone(), ne.clone(), ae.clone(), me.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        handle(req, st.clone(), ne.clone(), ae.clone(), me.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        ApiServer {
            url: format!("http://{addr}"),
            state,
            namespace_events,
            account_events,
            mesh_events,
            task,
        }
    }

    pub fn client(&self) -> kube::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = kube::Config::new(self.url.parse().expect("url"));
        kube::Client::try_from(config).expect("client")
    }

    /// The base URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A kubeconfig file for this server, for `meshguard serve --kubeconfig`.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!("apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster: {{server: \"{}\"}}\ncontexts:\n- name: double\n  context: {{cluster: double, user: nobody}}\ncurrent-context: double\nusers:\n- name: nobody\n  user: {{}}\n", self.url),
        )
        .expect("kubeconfig");
        path
    }

    /// Send one MutatingWebhookConfiguration watch event once the watch is open.
    pub async fn webhook_event(&self, kind: &str, object: Value) {
        Self::send(
            &self.mesh_events.webhooks,
            "MutatingWebhookConfiguration",
            kind,
            object,
        )
        .await;
    }

    /// Send one PolicyException watch event once the watch is open.
    pub async fn policy_exception_event(&self, kind: &str, object: Value) {
        Self::send(
            &self.mesh_events.policy_exceptions,
            "PolicyException",
            kind,
            object,
        )
        .await;
    }

    /// Send one ConfigMap watch event once the watch is open.
    pub async fn config_map_event(&self, kind: &str, object: Value) {
        Self::send(&self.mesh_events.config_maps, "ConfigMap", kind, object).await;
    }

    async fn send(channel: &broadcast::Sender<String>, what: &str, kind: &str, object: Value) {
        let until = Instant::now() + Duration::from_secs(10);
        while channel.receiver_count() == 0 {
            assert!(Instant::now() < until, "kube never opened the {what} watch");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let line = json!({"type": kind, "object": object});
        channel.send(line.to_string()).expect("send");
    }

    pub fn gets(&self) -> Vec<String> {
        self.state.lock().expect("state").gets.clone()
    }

    /// Send one namespace watch event once a watch is open.
    pub async fn namespace_event(&self, kind: &str, name: &str, labels: &Labels, rv: u64) {
        self.namespace_event_of(kind, meta_object(name, None, labels, rv))
            .await;
    }

    /// Send a watch event of a namespace object built by the caller (e.g. `namespace_object`).
    pub async fn namespace_event_of(&self, kind: &str, object: Value) {
        let until = Instant::now() + Duration::from_secs(10);
        while self.namespace_events.receiver_count() == 0 {
            assert!(
                Instant::now() < until,
                "kube never opened the namespace watch"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let line = json!({"type": kind, "object": object});
        self.namespace_events.send(line.to_string()).expect("send");
    }

    pub async fn account_event(&self, kind: &str, ns: &str, name: &str, rv: u64) {
        let until = Instant::now() + Duration::from_secs(10);
        while self.account_events.receiver_count() == 0 {
            assert!(
                Instant::now() < until,
                "kube never opened the ServiceAccount watch"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let line = json!({"type": kind, "object": meta_object(name, Some(ns), &Labels::new(), rv)});
        self.account_events.send(line.to_string()).expect("send");
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
