//! Writing the reports of [`crate::policy_report`] to the cluster, for serve's periodic audit
//! and `meshguard audit --write-reports`:
//!
//! 1. one label-selected LIST per report kind finds meshguard's own reports
//!    (`app.kubernetes.io/managed-by=meshguard`, named `meshguard`); nothing else is read or
//!    written, so other producers' reports (Kyverno, Kubewarden, Trivy...) stay untouched;
//! 2. each report meshguard wants is built with the first-seen timestamps of the one in the
//!    cluster and compared with it: equal → no request at all (a steady cluster causes no etcd
//!    writes), different → an update conditional on the resourceVersion listed, absent → a
//!    create (which fails, and is logged, when another producer already has a report of that
//!    name);
//! 3. meshguard's report in a scope with no findings left is deleted (preconditions: the uid
//!    and resourceVersion listed).
//!
//! Every report of a round first asks `may_write` (the Lease, for serve): a replica that loses
//! the Lease stops in the middle of a round, before its next request. Results go to `meshguard_report_writes_total{api,result}`.

use crate::finding::ObjectFinding;
use crate::metrics::Metrics;
use crate::policy_report::{
    self, Built, ReportApi, ReportScope, Timestamp, MANAGED_BY, MANAGED_BY_LABEL, REPORT_NAME,
    RESULTS_BUDGET_BYTES,
};
use futures::StreamExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams, Preconditions,
};
use kube::core::TypeMeta;
use kube::Client;
use serde_json::Value;
use std::collections::BTreeMap;

/// Field manager of meshguard's writes (shown in managedFields).
pub(crate) const FIELD_MANAGER: &str = "meshguard";
/// Requests in flight at once during a round.
const CONCURRENCY: usize = 4;

/// What one round did, per result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteCounts {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub deleted: usize,
    pub failed: usize,
    /// Reports written truncated (also counted as created or updated).
    pub truncated: usize,
    /// The round stopped early because `may_write` said no.
    pub(crate) interrupted: bool,
}

impl std::fmt::Display for WriteCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} created, {} updated, {} unchanged, {} deleted, {} failed",
            self.created, self.updated, self.unchanged, self.deleted, self.failed
        )?;
        if self.truncated > 0 {
            write!(f, " ({} truncated)", self.truncated)?;
        }
        if self.interrupted {
            f.write_str("; stopped early: no longer the writer")?;
        }
        Ok(())
    }
}

/// Why a round could not start.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{api} reports are not served by this cluster (is the CRD installed?)")]
    NotServed { api: String },
    #[error("cannot list meshguard's {what}: {source}")]
    List {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot discover {api}: {source}")]
    Discovery {
        api: String,
        #[source]
        source: kube::Error,
    },
}

/// The outcome of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Created,
    Updated,
    Unchanged,
    Deleted,
    Failed,
    Skipped,
}

impl Outcome {
    fn label(self) -> Option<&'static str> {
        match self {
            Outcome::Created => Some("created"),
            Outcome::Updated => Some("updated"),
            Outcome::Unchanged => Some("unchanged"),
            Outcome::Deleted => Some("deleted"),
            Outcome::Failed => Some("failed"),
            Outcome::Skipped => None,
        }
    }
}

fn resource(api: ReportApi, cluster: bool) -> ApiResource {
    ApiResource {
        group: api.group().to_owned(),
        version: api.version().to_owned(),
        api_version: api.api_version(),
        kind: api.kind(cluster).to_owned(),
        plural: api.plural(cluster).to_owned(),
    }
}

/// Whether the cluster serves both report kinds of `api` (discovery of its group version).
pub async fn served(client: &Client, api: ReportApi) -> Result<bool, WriteError> {
    match client.list_api_group_resources(&api.api_version()).await {
        Ok(list) => Ok([false, true].iter().all(|cluster| {
            list.resources
                .iter()
                .any(|r| r.name == api.plural(*cluster))
        })),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(source) => Err(WriteError::Discovery {
            api: api.api_version(),
            source,
        }),
    }
}

/// Writes meshguard's reports of one API.
#[derive(Clone)]
pub struct ReportWriter {
    client: Client,
    api: ReportApi,
    metrics: Option<Metrics>,
    /// Room for one report's results (a parameter for tests).
    pub budget: usize,
    /// Findings exceptions cover: written as `skip` results beside the findings.
    pub excepted: Vec<crate::config::exceptions::ObjectExcepted>,
}

impl ReportWriter {
    pub fn new(client: Client, api: ReportApi, metrics: Option<Metrics>) -> ReportWriter {
        ReportWriter {
            client,
            api,
            metrics,
            budget: RESULTS_BUDGET_BYTES,
            excepted: Vec::new(),
        }
    }

    pub fn api(&self) -> ReportApi {
        self.api
    }

    fn dyn_api(&self, scope: &ReportScope) -> Api<DynamicObject> {
        let ar = resource(self.api, scope.is_cluster());
        match scope.namespace() {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        }
    }

    /// meshguard's reports in the cluster, by scope, as JSON.
    async fn existing(&self) -> Result<BTreeMap<ReportScope, Value>, WriteError> {
        let mut out = BTreeMap::new();
        for cluster in [false, true] {
            let ar = resource(self.api, cluster);
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
            let mut token: Option<String> = None;
            loop {
                let mut lp = ListParams::default()
                    .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"))
                    // Reports can be large (up to ~1.3 MB each): small pages.
                    .limit(25);
                if let Some(t) = &token {
                    lp = lp.continue_token(t);
                }
                let list = api.list(&lp).await.map_err(|source| WriteError::List {
                    what: format!("{}.{}", ar.plural, ar.group),
                    source,
                })?;
                for mut obj in list.items {
                    if obj.metadata.name.as_deref() != Some(REPORT_NAME) {
                        continue;
                    }
                    // Compare like with like: list items may come without their type.
                    if obj.types.is_none() {
                        obj.types = Some(TypeMeta {
                            api_version: ar.api_version.clone(),
                            kind: ar.kind.clone(),
                        });
                    }
                    let scope = match (cluster, obj.metadata.namespace.clone()) {
                        (false, Some(ns)) => ReportScope::Namespace(ns),
                        (true, _) => ReportScope::Cluster,
                        (false, None) => continue,
                    };
                    if let Ok(v) = serde_json::to_value(&obj) {
                        out.insert(scope, v);
                    }
                }
                token = list.metadata.continue_.filter(|t| !t.is_empty());
                if token.is_none() {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Bring meshguard's reports in line with `findings`. `may_write` is asked before every
    /// request; when it says no, the round stops (`interrupted`).
    pub async fn write(
        &self,
        findings: &[ObjectFinding],
        now: Timestamp,
        may_write: &(dyn Fn() -> bool + Sync),
    ) -> Result<WriteCounts, WriteError> {
        if !served(&self.client, self.api).await? {
            return Err(WriteError::NotServed {
                api: self.api.api_version(),
            });
        }
        let existing = self.existing().await?;
        let wanted = policy_report::build_all_with_excepted(
            findings,
            &self.excepted,
            now,
            &|scope| existing.get(scope).cloned(),
            self.budget,
        );
        let mut jobs: Vec<(ReportScope, Option<Built>, Option<Value>)> = Vec::new();
        let mut wanted_scopes = std::collections::BTreeSet::new();
        for b in wanted {
            wanted_scopes.insert(b.scope.clone());
            let current = existing.get(&b.scope).cloned();
            jobs.push((b.scope.clone(), Some(b), current));
        }
        for (scope, current) in &existing {
            if !wanted_scopes.contains(scope) {
                jobs.push((scope.clone(), None, Some(current.clone())));
            }
        }
        let outcomes: Vec<(Outcome, bool)> = futures::stream::iter(jobs)
            .map(|(scope, built, current)| async move {
                let truncated = built.as_ref().is_some_and(Built::truncated);
                let outcome = self
                    .reconcile(&scope, built.as_ref(), current.as_ref(), may_write)
                    .await;
                // Counted as each request completes, not at the end of the round.
                if let (Some(m), Some(label)) = (&self.metrics, outcome.label()) {
                    m.report_writes
                        .with_label_values(&[self.api.name(), label])
                        .inc();
                }
                (outcome, truncated)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut counts = WriteCounts::default();
        for (outcome, truncated) in outcomes {
            match outcome {
                Outcome::Created => counts.created += 1,
                Outcome::Updated => counts.updated += 1,
                Outcome::Unchanged => counts.unchanged += 1,
                Outcome::Deleted => counts.deleted += 1,
                Outcome::Failed => counts.failed += 1,
                Outcome::Skipped => counts.interrupted = true,
            }
            if truncated && matches!(outcome, Outcome::Created | Outcome::Updated) {
                counts.truncated += 1;
            }
        }
        Ok(counts)
    }

    /// One scope: create, update, leave alone or delete.
    async fn reconcile(
        &self,
        scope: &ReportScope,
        built: Option<&Built>,
        current: Option<&Value>,
        may_write: &(dyn Fn() -> bool + Sync),
    ) -> Outcome {
        let kind = self.api.kind(scope.is_cluster());
        let api = self.dyn_api(scope);
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        // No longer the writer: this round records nothing more, not even "unchanged".
        if !may_write() {
            return Outcome::Skipped;
        }
        match (built, current) {
            (Some(b), Some(cur)) if b.matches(self.api, cur) => Outcome::Unchanged,
            (Some(b), cur) => {
                if let Some(note) = b.truncation_note() {
                    tracing::warn!(%scope, kind, total = b.total, kept = b.results.len(), "report truncated: {note}");
                }
                let update = cur.is_some();
                let value = match cur {
                    Some(cur) => b.apply_to(self.api, cur),
                    None => b.object(self.api),
                };
                let obj: DynamicObject = match serde_json::from_value(value) {
                    Ok(o) => o,
                    Err(e) => {
                        tracing::error!(%scope, kind, error = %e, "cannot encode the report");
                        return Outcome::Failed;
                    }
                };
                let result = if update {
                    api.replace(REPORT_NAME, &pp, &obj).await
                } else {
                    api.create(&pp, &obj).await
                };
                match result {
                    Ok(_) if update => Outcome::Updated,
                    Ok(_) => Outcome::Created,
                    Err(kube::Error::Api(s)) if s.code == 409 && !update => {
                        tracing::warn!(%scope, kind, name = REPORT_NAME, "a {kind} named {REPORT_NAME} without the label {MANAGED_BY_LABEL}={MANAGED_BY} exists: it belongs to another producer and is left untouched; meshguard's findings here are not reported");
                        Outcome::Failed
                    }
                    Err(e) => {
                        tracing::warn!(%scope, kind, error = %e, "cannot write the report; the next audit tries again");
                        Outcome::Failed
                    }
                }
            }
            (None, Some(cur)) => {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: cur["metadata"]["uid"].as_str().map(str::to_owned),
                        resource_version: cur["metadata"]["resourceVersion"]
                            .as_str()
                            .map(str::to_owned),
                    }),
                    ..DeleteParams::default()
                };
                match api.delete(REPORT_NAME, &dp).await {
                    Ok(_) => Outcome::Deleted,
                    // Already gone (the namespace was deleted with it): nothing to do.
                    Err(kube::Error::Api(s)) if s.code == 404 => Outcome::Unchanged,
                    Err(e) => {
                        tracing::warn!(%scope, kind, error = %e, "cannot delete the report; the next audit tries again");
                        Outcome::Failed
                    }
                }
            }
            (None, None) => Outcome::Unchanged,
        }
    }
}

/// Which reports `serve` writes: `--reports`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportsSetting {
    /// `wgpolicyk8s` when its CRD is served, else none (checked before every round; logged
    /// when it changes).
    Auto,
    /// This API (while its CRDs are not served nothing is written; a warning says so when
    /// that changes).
    Api(ReportApi),
    /// No reports.
    Off,
}

/// What a round resolves `--reports` to: the API to write, if its CRDs are served.
pub async fn resolve(
    client: &Client,
    setting: ReportsSetting,
) -> Result<Option<ReportApi>, WriteError> {
    let api = match setting {
        ReportsSetting::Off => return Ok(None),
        ReportsSetting::Api(api) => api,
        ReportsSetting::Auto => ReportApi::Wgpolicyk8s,
    };
    Ok(served(client, api).await?.then_some(api))
}

/// `--reports` resolved before every round of the periodic audit, logged when the answer
/// changes (so a missing CRD is one log line, not one per round).
#[derive(Debug)]
pub(crate) struct RoundApi {
    setting: ReportsSetting,
    last: Option<Option<ReportApi>>,
}

impl RoundApi {
    pub fn new(setting: ReportsSetting) -> RoundApi {
        RoundApi {
            setting,
            last: None,
        }
    }

    /// The API to write this round, if any.
    pub async fn resolve(&mut self, client: &Client) -> Option<ReportApi> {
        let resolved = match resolve(client, self.setting).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell which report API is served; no reports this round");
                return None;
            }
        };
        if self.last != Some(resolved) {
            match (self.setting, resolved) {
                (ReportsSetting::Off, _) => tracing::info!("reports off (--reports none)"),
                (ReportsSetting::Auto, None) => tracing::info!(
                    "wgpolicyk8s.io/v1alpha2 PolicyReports are not served (CRD absent): not writing reports (--reports)"
                ),
                (_, Some(api)) => tracing::info!(api = %api.api_version(), "writing the periodic audit's findings as reports"),
                (ReportsSetting::Api(api), None) => tracing::warn!(
                    api = %api.api_version(),
                    "--reports {}: the report CRDs are not served; no reports until they are installed",
                    api.name()
                ),
            }
            self.last = Some(resolved);
        }
        resolved
    }
}

/// Values of `serve --reports` and `auditor --reports` (here, below both front ends).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportsFlag {
    /// PolicyReport / ClusterPolicyReport, wgpolicyk8s.io/v1alpha2.
    #[value(name = "wgpolicyk8s")]
    Wgpolicyk8s,
    /// Report / ClusterReport, openreports.io/v1alpha1.
    #[value(name = "openreports")]
    Openreports,
    /// No reports.
    None,
}
