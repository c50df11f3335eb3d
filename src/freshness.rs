//! Watch freshness: every watch relists on a timer, and readiness degrades when one has not
//! completed a list for too long. A watch can stall without an error (a half-open connection, an
//! apiserver that stopped sending events); a cache fed by it would go on answering with stale
//! labels. Relisting every `relist_every` bounds how stale a healthy cache gets, and a cache that
//! has not relisted within `stale_after` makes `/readyz` fail, so the replica leaves the webhook's
//! Service until it catches up.

use crate::metrics::Metrics;
use futures::stream::BoxStream;
use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When each watched resource last completed a list.
#[derive(Debug, Default)]
pub struct Freshness {
    /// Restart every watch (a fresh list) this often; `None`: never.
    relist_every: Option<Duration>,
    /// Not ready when a watch has not listed for this long; `None`: never.
    stale_after: Option<Duration>,
    listed: Mutex<BTreeMap<&'static str, Instant>>,
    metrics: Option<Metrics>,
}

impl Freshness {
    pub fn new(
        relist_every: Option<Duration>,
        stale_after: Option<Duration>,
        metrics: Option<Metrics>,
    ) -> Freshness {
        Freshness {
            relist_every: relist_every.filter(|d| !d.is_zero()),
            stale_after: stale_after.filter(|d| !d.is_zero()),
            listed: Mutex::new(BTreeMap::new()),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Instant>> {
        self.listed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A watch of `resource` completed a list now.
    pub fn listed(&self, resource: &'static str) {
        self.lock().insert(resource, Instant::now());
        if let Some(m) = &self.metrics {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            m.watch_last_list.with_label_values(&[resource]).set(now);
        }
    }

    /// The resources whose last list is older than `stale_after` at `now`.
    pub(crate) fn stale_at(&self, now: Instant) -> Vec<&'static str> {
        let Some(limit) = self.stale_after else {
            return Vec::new();
        };
        self.lock()
            .iter()
            .filter(|(_, at)| now.saturating_duration_since(**at) > limit)
            .map(|(r, _)| *r)
            .collect()
    }

    /// No watch is stale.
    pub fn fresh(&self) -> bool {
        let stale = self.stale_at(Instant::now());
        if !stale.is_empty() {
            tracing::warn!(resources = ?stale, "watch caches have not relisted in time: not ready");
        }
        stale.is_empty()
    }

    /// The events of a watch on `api`, restarted (a fresh list) every `relist_every`.
    pub fn watch<K>(&self, api: Api<K>) -> BoxStream<'static, Result<Event<K>, watcher::Error>>
    where
        K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    {
        match self.relist_every {
            None => watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed(),
            Some(every) => futures::stream::repeat(())
                .flat_map(move |()| {
                    watcher::watcher(api.clone(), watcher::Config::default())
                        .default_backoff()
                        .take_until(tokio::time::sleep(every))
                })
                .boxed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_that_has_not_listed_for_too_long_is_stale() {
        let f = Freshness::new(None, Some(Duration::from_secs(60)), None);
        f.listed("namespaces");
        let now = Instant::now();
        assert!(f.stale_at(now).is_empty());
        assert_eq!(f.stale_at(now + Duration::from_secs(61)), ["namespaces"]);
        f.listed("namespaces");
        assert!(f.stale_at(Instant::now()).is_empty());
        // Off: never stale.
        let off = Freshness::new(None, Some(Duration::ZERO), None);
        off.listed("x");
        assert!(off
            .stale_at(Instant::now() + Duration::from_secs(1_000_000))
            .is_empty());
    }
}
