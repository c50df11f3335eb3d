//! PolicyException resources (`meshguard.io/v1alpha1`, `config::exceptions`) read from the API
//! server:
//!
//! * [`list`]: one listing (`meshguard audit`);
//! * [`spawn`]: `meshguard serve`'s watch. After the initial list and after every change
//!   (debounced), the callback gets every PolicyException: `serve` rebuilds the engine with them
//!   and swaps it in, so a new, changed or deleted exception reaches the webhook and the periodic
//!   audit without a restart. (Expiry needs no event: the engine compares with its clock at
//!   every evaluation.)
//!
//! An absent CRD or missing RBAC is a note (logged once) and no resources, and the watch keeps
//! retrying with backoff, so installing the CRD later is picked up. Readiness does not wait for
//! it: until it has synced only the policy file's exceptions apply (a stricter answer, never a
//! weaker one).

use crate::config::exceptions::{self, Exception, Source, Status};
use crate::engine::Engine;
use crate::metrics::Metrics;
use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long the watch waits for more changes before it hands them over.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// The PolicyException resource.
pub fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(exceptions::GROUP, exceptions::VERSION, exceptions::KIND),
        exceptions::PLURAL,
    )
}

fn is_forbidden_or_absent(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403 || s.code == 404)
}

/// Every PolicyException in the cluster, once; `Ok((_, Some(note)))` when they cannot be read
/// (CRD absent, forbidden).
pub async fn list(client: &Client) -> Result<(Vec<Exception>, Option<String>), kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource());
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(500);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        match api.list(&lp).await {
            Ok(list) => {
                out.extend(list.items.iter().map(Exception::from_resource));
                token = list.metadata.continue_.filter(|t| !t.is_empty());
                if token.is_none() {
                    return Ok((out, None));
                }
            }
            Err(e) if is_forbidden_or_absent(&e) => {
                return Ok((
                    Vec::new(),
                    Some(format!(
                        "PolicyExceptions ({}.{}) not read ({e}): only the policy file's exceptions apply",
                        exceptions::PLURAL,
                        exceptions::GROUP
                    )),
                ))
            }
            Err(e) => return Err(e),
        }
    }
}

/// Watch every PolicyException; `on_change` gets all of them after the initial list and after
/// each change. Must be called inside a tokio runtime; abort the handle to stop.
pub fn spawn(
    client: Client,
    on_change: impl Fn(Vec<Exception>) + Send + Sync + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<DynamicObject> = Api::all_with(client, &resource());
        let mut events = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut store: BTreeMap<(String, String), Exception> = BTreeMap::new();
        let mut buffer: Option<BTreeMap<(String, String), Exception>> = None;
        let mut noted = false;
        let key = |o: &DynamicObject| {
            (
                o.metadata.namespace.clone().unwrap_or_default(),
                o.metadata.name.clone().unwrap_or_default(),
            )
        };
        loop {
            // Take every event that is ready, then hand the result over once.
            let Some(first) = events.next().await else {
                return;
            };
            let mut changed = false;
            let mut pending = vec![first];
            let deadline = tokio::time::sleep(DEBOUNCE);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => break,
                    next = events.next() => match next {
                        Some(e) => pending.push(e),
                        None => break,
                    },
                }
            }
            for event in pending {
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        let refused = match &e {
                            watcher::Error::InitialListFailed(err)
                            | watcher::Error::WatchStartFailed(err) => is_forbidden_or_absent(err),
                            _ => false,
                        };
                        if refused && !noted {
                            noted = true;
                            tracing::warn!(error = %e, "cannot watch PolicyExceptions (CRD not installed, or no RBAC): only the policy file's exceptions apply; retrying with backoff");
                        } else if !refused {
                            tracing::warn!(error = %e, "PolicyException watch failed; retrying with backoff");
                        }
                        continue;
                    }
                };
                match event {
                    Event::Init => buffer = Some(BTreeMap::new()),
                    Event::InitApply(o) => {
                        buffer
                            .get_or_insert_with(BTreeMap::new)
                            .insert(key(&o), Exception::from_resource(&o));
                    }
                    Event::InitDone => {
                        let fresh = buffer.take().unwrap_or_default();
                        if noted {
                            tracing::info!("PolicyException watch synced");
                            noted = false;
                        }
                        store = fresh;
                        changed = true;
                    }
                    Event::Apply(o) => {
                        let e = Exception::from_resource(&o);
                        if store.get(&key(&o)) != Some(&e) {
                            store.insert(key(&o), e);
                            changed = true;
                        }
                    }
                    Event::Delete(o) => changed |= store.remove(&key(&o)).is_some(),
                }
            }
            if changed {
                tracing::info!(count = store.len(), "PolicyExceptions changed");
                on_change(store.values().cloned().collect());
            }
        }
    })
}

/// `meshguard_exceptions{source,status}`: the engine's exceptions now.
pub(crate) fn publish(metrics: &Metrics, engine: &Engine) {
    let now = engine.now();
    let mut counts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for source in ["policy", "resource"] {
        for status in ["active", "expired", "refused"] {
            counts.insert((source, status), 0);
        }
    }
    for e in engine.exceptions().items() {
        let source = match e.source {
            Source::Policy { .. } => "policy",
            Source::Resource { .. } => "resource",
        };
        let status = match e.status(engine.policy(), now) {
            Status::Active => "active",
            Status::Expired => "expired",
            Status::Refused(_) => "refused",
        };
        *counts.entry((source, status)).or_default() += 1;
    }
    for ((source, status), n) in counts {
        metrics
            .exceptions
            .with_label_values(&[source, status])
            .set(n);
    }
}
