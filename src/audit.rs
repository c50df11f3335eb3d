//! `meshguard audit`: read every supported kind from a live cluster (read-only, paginated),
//! evaluate it with the same engine and cross-resource checks as `check`, and report.
//! `serve --audit-interval` runs the same code path periodically and exports the results as
//! Prometheus gauges; both can write the findings as PolicyReports ([`crate::report_writer`]).
//! In `serve`, only the replica holding the audit Lease ([`crate::lease`]) runs it.

use crate::analysis::analyze;
use crate::audit_stream::{identity_metadata, slim_metadata};
use crate::engine::{Engine, EngineHandle};
use crate::exit::Exit;
use crate::inventory::{Inventory, Object};
use crate::lease::Leadership;
use crate::load::{ClusterArgs, Installed, Loaded, Loader, MeshArgs, PolicyArgs};
use crate::metrics::Metrics;
use crate::policy_report::{ReportApi, Timestamp};
use crate::report::{Format, Report};
use crate::report_writer::{ReportWriter, ReportsSetting};
use crate::resource::Kind;
use clap::Args;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::core::TypeMeta;
use kube::Client;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Print the effective mTLS of every workload and port.
    #[arg(long)]
    pub mtls: bool,
    /// Objects per list page.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: u32,
    /// Objects judged at once: namespaces are gathered, in order, until a batch holds this many
    /// (the audit keeps one batch and each kind's current page in memory, besides the findings).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(usize))]
    pub(crate) batch_objects: usize,
    /// meshguard's own namespace, exempt like in `serve`.
    #[arg(long, env = "POD_NAMESPACE")]
    pub own_namespace: Option<String>,
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// Also write the findings to the cluster as reports of this API (one per namespace with
    /// findings, one cluster report for Namespaces), as serve's periodic audit does.
    #[arg(long, value_enum, value_name = "API")]
    pub write_reports: Option<ReportApi>,
}

/// Errors reading the cluster.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot connect to the cluster: {0}")]
    Connect(String),
    #[error("cannot list {what}: {source}")]
    List {
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// What a listing produced.
#[derive(Debug, Default)]
pub struct Collected {
    pub objects: Vec<Object>,
    /// Kinds skipped because their CRD is absent, and similar remarks.
    pub notes: Vec<String>,
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// List every object of one API resource across namespaces, page by page, keeping what the
/// checks read: with `metadata_only` (kinds judged by their metadata alone) the API server sends
/// `PartialObjectMetadata` and the objects carry no body; otherwise each object loses its
/// `status` (but a Gateway keeps it: readiness). Every object loses `managedFields` and the `last-applied-configuration`
/// annotation, as in the webhook. A page at a time is whole in memory, never the full listing.
async fn list_all(
    client: &Client,
    ar: &ApiResource,
    page_size: u32,
    metadata_only: bool,
    keep_status: bool,
) -> Result<Vec<DynamicObject>, kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(page_size);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let continue_ = if metadata_only {
            let list = api.list_metadata(&lp).await?;
            out.extend(list.items.into_iter().map(|o| DynamicObject {
                types: o.types,
                metadata: identity_metadata(o.metadata),
                data: serde_json::Value::Object(Default::default()),
            }));
            list.metadata.continue_
        } else {
            let list = api.list(&lp).await?;
            out.extend(list.items.into_iter().map(|mut o| {
                o.metadata = slim_metadata(o.metadata);
                if let Some(data) = o.data.as_object_mut().filter(|_| !keep_status) {
                    data.remove("status");
                }
                o
            }));
            list.metadata.continue_
        };
        token = continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    Ok(out)
}

/// Read every supported kind. Istio kinds whose CRD is absent (no served version) are skipped
/// with a note; any other error fails the audit (a partial inventory would give wrong
/// cross-resource findings).
pub async fn collect(
    client: &Client,
    page_size: u32,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<Collected, AuditError> {
    let mut c = Collected::default();
    for facts in crate::resource::KIND_FACTS {
        let (kind, group, versions, plural) =
            (facts.kind, facts.group, facts.versions, facts.plural);
        if let Some(pb) = progress {
            pb.set_message(kind.as_str());
        }
        let mut found = false;
        for version in versions {
            let gvk = GroupVersionKind::gvk(group, version, kind.as_str());
            let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
            let (metadata_only, keep_status) = (facts.judged_by_metadata(), facts.keeps_status());
            match list_all(client, &ar, page_size, metadata_only, keep_status).await {
                Ok(items) => {
                    for mut obj in items {
                        if obj.types.is_none() {
                            obj.types = Some(TypeMeta {
                                api_version: ar.api_version.clone(),
                                kind: ar.kind.clone(),
                            });
                        }
                        c.objects
                            .push(Object::new(kind, (*version).to_owned(), obj, None, None));
                    }
                    found = true;
                    break;
                }
                Err(e) if is_not_found(&e) => continue,
                Err(e) => {
                    return Err(AuditError::List {
                        what: if group.is_empty() {
                            format!("{plural} ({version})")
                        } else {
                            format!("{plural}.{group} ({version})")
                        },
                        source: e,
                    })
                }
            }
        }
        if !found {
            c.notes.push(format!(
                "{} skipped: {group} {} not served (CRD absent)",
                kind.as_str(),
                versions.join("/")
            ));
        }
        if let Some(pb) = progress {
            pb.inc(1);
        }
    }
    Ok(c)
}

/// Evaluate a cluster listing. The listing is complete: what it lacks does not exist.
pub fn evaluate(engine: &Engine, collected: Collected, show_mtls: bool) -> Report {
    let inventory = Inventory::complete(collected.objects);
    evaluate_inventory(engine, &inventory, collected.notes, show_mtls)
}

/// Evaluate a cluster listing already made into an inventory (the posture page keeps it).
pub(crate) fn evaluate_inventory(
    engine: &Engine,
    inventory: &Inventory,
    notes: Vec<String>,
    show_mtls: bool,
) -> Report {
    let analysis = analyze(engine, inventory);
    Report {
        command: "audit",
        findings: analysis.findings,
        errors: Vec::new(),
        objects: analysis.evaluated,
        skipped: BTreeMap::new(),
        notes,
        mtls: analysis.mtls,
        show_mtls,
        mesh: Some(engine.mesh().clone()),
        policy_warnings: crate::catalogue::policy_warnings(engine.policy()),
        excepted: analysis.excepted,
    }
}

/// Audit a live cluster a batch of namespaces at a time ([`crate::audit_stream`]); from one
/// whole listing when kube-apiserver does not return lists in namespace order.
pub(crate) async fn audit_streamed(
    client: &Client,
    engine: &Engine,
    limits: crate::audit_stream::Limits,
    notes: Vec<String>,
    show_mtls: bool,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<Report, AuditError> {
    use crate::audit_stream::StreamError;
    let (analysis, more) = match crate::audit_stream::audit(
        client, engine, limits, show_mtls, progress,
    )
    .await
    {
        Ok(done) => done,
        Err(StreamError::List { what, source }) => return Err(AuditError::List { what, source }),
        Err(StreamError::OutOfOrder(what)) => {
            tracing::warn!(resource = what, "kube-apiserver listed objects out of namespace order; auditing from one whole listing");
            let collected = collect(client, limits.page_size, progress).await?;
            let inventory = Inventory::complete(collected.objects);
            (analyze(engine, &inventory), collected.notes)
        }
    };
    let mut notes = notes;
    notes.extend(more);
    Ok(Report {
        command: "audit",
        findings: analysis.findings,
        errors: Vec::new(),
        objects: analysis.evaluated,
        skipped: BTreeMap::new(),
        notes,
        mtls: analysis.mtls,
        show_mtls,
        mesh: Some(engine.mesh().clone()),
        excepted: analysis.excepted,
        policy_warnings: crate::catalogue::policy_warnings(engine.policy()),
    })
}

/// A kube client from `--kubeconfig`/`--context`, or the default chain (KUBECONFIG,
/// ~/.kube/config, in-cluster).
pub async fn client(
    kubeconfig: Option<&PathBuf>,
    context: Option<&str>,
) -> Result<Client, AuditError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| AuditError::Connect(format!("{}: {e}", path.display())))?;
            let opts = kube::config::KubeConfigOptions {
                context: context.map(str::to_owned),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| AuditError::Connect(e.to_string()))?
        }
        None if context.is_some() => {
            let opts = kube::config::KubeConfigOptions {
                context: context.map(str::to_owned),
                ..Default::default()
            };
            kube::Config::from_kubeconfig(&opts)
                .await
                .map_err(|e| AuditError::Connect(e.to_string()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| AuditError::Connect(e.to_string()))?,
    };
    Client::try_from(config).map_err(|e| AuditError::Connect(e.to_string()))
}

/// The cluster half of [`Loader`] (the manifest half is in [`crate::check`]).
impl Loader {
    /// Connect to a cluster and read the mesh as installed there (injector webhooks, Istio's
    /// ConfigMaps, ztunnel and istio-cni) with the mesh flags, and, with `exceptions`, its
    /// PolicyExceptions. Kinds that are forbidden or absent become notes.
    pub async fn installed(
        &self,
        cluster: &ClusterArgs,
        exceptions: bool,
    ) -> Result<Installed, AuditError> {
        let client =
            crate::audit::client(cluster.kubeconfig.as_ref(), cluster.context.as_deref()).await?;
        let read = crate::mesh_watch::read(&client, self.istio_namespace.as_deref())
            .await
            .map_err(|source| AuditError::List {
                what: "the mesh's injector webhooks and ConfigMaps".to_owned(),
                source,
            })?;
        let mut builder = read.builder;
        self.apply_flags(&mut builder);
        let mut notes = read.notes;
        let mut listed = Vec::new();
        if exceptions {
            let (found, note) = crate::exception_watch::list(&client)
                .await
                .map_err(|source| AuditError::List {
                    what: "PolicyExceptions".to_owned(),
                    source,
                })?;
            listed = found;
            notes.extend(note);
        }
        Ok(Installed {
            client,
            mesh: builder.build(),
            exceptions: listed,
            notes,
        })
    }

    /// Read a whole cluster (read-only): [`Loader::installed`], then every supported kind. The
    /// listing is complete: what it lacks does not exist. Notes: the mesh's first, then the
    /// kinds not served.
    pub fn cluster(&self, cluster: &ClusterArgs, exceptions: bool) -> Result<Loaded, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        runtime
            .block_on(async {
                let installed = self.installed(cluster, exceptions).await?;
                let collected = crate::audit::collect(&installed.client, 500, None).await?;
                let mut notes = collected.notes;
                notes.extend(installed.notes);
                Ok::<_, AuditError>(Loaded {
                    inventory: Inventory::complete(collected.objects),
                    mesh: installed.mesh,
                    exceptions: installed.exceptions,
                    notes,
                })
            })
            .map_err(|e| e.to_string())
    }
}

pub fn run(args: AuditArgs) -> Exit {
    let loader = match Loader::new(&args.policy, &args.mesh) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("meshguard audit: {e}");
            return Exit::Error;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshguard audit: cannot start the async runtime: {e}");
            return Exit::Error;
        }
    };
    let progress = std::io::stderr().is_terminal().then(|| {
        let pb = indicatif::ProgressBar::with_draw_target(
            Some(Kind::ALL.len() as u64),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} kinds  listing {msg}")
        {
            pb.set_style(style);
        }
        pb
    });
    let limits = crate::audit_stream::Limits {
        page_size: args.page_size,
        batch_objects: args.batch_objects.max(1),
    };
    let audited = runtime.block_on(async {
        // The mesh as installed is an input of every verdict, like the policy.
        let installed = loader.installed(&args.cluster, true).await?;
        let engine = loader.engine(
            installed.mesh,
            installed.exceptions,
            args.own_namespace.as_deref(),
        );
        let report = audit_streamed(
            &installed.client,
            &engine,
            limits,
            installed.notes,
            args.mtls,
            progress.as_ref(),
        )
        .await?;
        Ok::<_, AuditError>((installed.client, report))
    });
    if let Some(pb) = &progress {
        pb.finish_and_clear();
    }
    let (client, report) = match audited {
        Ok(c) => c,
        Err(e) => {
            eprintln!("meshguard audit: {e}");
            return Exit::Error;
        }
    };
    print!("{}", report.render(args.format));
    if let Some(api) = args.write_reports {
        // Say why a write failed or a report was truncated (the writer logs it).
        let _logging = crate::logging::init(crate::logging::LogFormat::Text, "meshguard=warn");
        let mut writer = ReportWriter::new(client, api, None);
        writer.excepted = report.excepted.clone();
        match runtime.block_on(writer.write(&report.findings, Timestamp::now(), &|| true)) {
            Ok(counts) => {
                eprintln!("meshguard audit: {} reports: {counts}", api.api_version());
                if counts.failed > 0 {
                    return Exit::Error;
                }
            }
            Err(e) => {
                eprintln!("meshguard audit: cannot write reports: {e}");
                return Exit::Error;
            }
        }
    }
    report.exit()
}

/// Export a report as the audit gauges: reset, then one `{rule, namespace}` series per pair
/// (bounded by rules × namespaces), in sorted order.
pub(crate) fn publish(metrics: &Metrics, report: &Report, took: Duration) {
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for i in &report.findings {
        *counts
            .entry((i.finding.rule, i.subject.namespace.as_str()))
            .or_default() += 1;
    }
    metrics.audit_violations.reset();
    for ((rule, ns), n) in counts {
        metrics
            .audit_violations
            .with_label_values(&[rule, ns])
            .set(n as f64);
    }
    let mut excepted: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for i in &report.excepted {
        *excepted
            .entry((i.finding.rule, i.subject.namespace.as_str()))
            .or_default() += 1;
    }
    metrics.audit_excepted.reset();
    for ((rule, ns), n) in excepted {
        metrics
            .audit_excepted
            .with_label_values(&[rule, ns])
            .set(n as f64);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    metrics.audit_last_run.set(now);
    metrics.audit_duration.set(took.as_secs_f64());
}

/// What serve's periodic audit does besides the gauges, and who may do it.
#[derive(Clone, Debug)]
pub(crate) struct Periodic {
    /// Zero turns the periodic audit off.
    pub(crate) interval: Duration,
    /// `--reports`.
    pub(crate) reports: ReportsSetting,
    /// Run only while this replica holds the audit Lease; `None`: always (`--leader-elect=false`).
    pub(crate) leadership: Option<Leadership>,
}

/// Objects per batch of `serve`'s periodic audit: a quarter of `auditor`'s default. The webhook's
/// memory is what admission runs in, and a batch's decoded objects are most of an audit's peak
/// (about 10 KB each at the peak): at 3,000 namespaces and 20,000 workloads, 500 instead of 2,000
/// lowers the peak by about 17 MiB for 10–20 % more time (docs/auditor.md).
pub(crate) const PERIODIC_BATCH_OBJECTS: usize = 500;

/// One periodic run: list, evaluate with the engine in force now (off the async threads),
/// publish, and write the reports when `reports` names an API. On error the previous gauges
/// stay.
pub async fn run_periodic_once(
    client: &Client,
    engine: &EngineHandle,
    metrics: &Metrics,
    page_size: u32,
) -> Result<usize, AuditError> {
    Ok(run_periodic_report(client, engine, metrics, page_size)
        .await?
        .findings
        .len())
}

async fn run_periodic_report(
    client: &Client,
    engine: &EngineHandle,
    metrics: &Metrics,
    page_size: u32,
) -> Result<Report, AuditError> {
    let start = Instant::now();
    let engine = engine.current();
    crate::exception_watch::publish(metrics, &engine);
    let limits = crate::audit_stream::Limits {
        page_size,
        batch_objects: PERIODIC_BATCH_OBJECTS,
    };
    let report = audit_streamed(client, &engine, limits, Vec::new(), false, None).await?;
    publish(metrics, &report, start.elapsed());
    Ok(report)
}

/// Start the periodic audit of `serve` (no-op when the interval is zero or no cluster is
/// configured). With a `leadership`, it runs only while this replica holds the Lease, at once
/// when it acquires it, and stops writing reports as soon as it loses it.
pub(crate) fn spawn_periodic(
    client: Option<kube::Client>,
    engine: EngineHandle,
    metrics: Metrics,
    periodic: Periodic,
) {
    let interval = periodic.interval;
    if interval.is_zero() {
        tracing::info!("periodic audit off (--audit-interval 0)");
        return;
    }
    let Some(client) = client else {
        tracing::info!("no cluster connection: periodic audit off");
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut changes = periodic.leadership.as_ref().map(Leadership::subscribe);
        let mut reports = crate::report_writer::RoundApi::new(periodic.reports);
        loop {
            match changes.as_mut() {
                None => {
                    tick.tick().await;
                }
                Some(rx) => {
                    tokio::select! {
                        _ = tick.tick() => {}
                        // Became leader: audit now rather than at the next tick.
                        changed = rx.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            if !*rx.borrow_and_update() {
                                // A standby's gauges would be stale copies of the writer's.
                                metrics.audit_violations.reset();
                                continue;
                            }
                            tick.reset();
                        }
                    }
                }
            }
            let may_write = || {
                periodic
                    .leadership
                    .as_ref()
                    .is_none_or(Leadership::is_leader)
            };
            if !may_write() {
                tracing::debug!("periodic audit skipped: another replica holds the audit Lease");
                continue;
            }
            let report = match run_periodic_report(&client, &engine, &metrics, 100).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "periodic audit failed; keeping the previous results");
                    continue;
                }
            };
            tracing::info!(findings = report.findings.len(), "periodic audit finished");
            let Some(api) = reports.resolve(&client).await else {
                continue;
            };
            let mut writer = ReportWriter::new(client.clone(), api, Some(metrics.clone()));
            writer.excepted = report.excepted.clone();
            match writer
                .write(&report.findings, Timestamp::now(), &may_write)
                .await
            {
                Ok(counts) => tracing::info!(api = %api.api_version(), "reports: {counts}"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot write reports; the next audit tries again")
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed() -> kube::core::ObjectMeta {
        serde_json::from_value(serde_json::json!({
            "name": "app", "namespace": "prod", "uid": "u-1", "resourceVersion": "42",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": "web"},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"big\": true}",
                "team": "a",
            },
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {}}}],
            "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "u-0"}],
        }))
        .expect("metadata")
    }

    #[test]
    fn listed_objects_lose_what_no_check_reads() {
        let m = slim_metadata(listed());
        assert!(m.managed_fields.is_none());
        let annotations = m.annotations.expect("annotations kept");
        assert_eq!(
            annotations.len(),
            1,
            "last-applied dropped: {annotations:?}"
        );
        assert_eq!(annotations.get("team").map(String::as_str), Some("a"));
        // Everything a check may read stays.
        assert_eq!(m.owner_references.map(|o| o.len()), Some(1));
        assert_eq!(
            m.labels.and_then(|l| l.get("app").cloned()).as_deref(),
            Some("web")
        );
    }

    #[test]
    fn metadata_only_kinds_keep_their_identity_labels_and_deletion() {
        let mut listed = listed();
        listed.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-01-02T00:00:00Z".parse().expect("time"),
        ));
        let m = identity_metadata(listed);
        assert_eq!(
            (m.name.as_deref(), m.namespace.as_deref(), m.uid.as_deref()),
            (Some("app"), Some("prod"), Some("u-1"))
        );
        assert!(m.deletion_timestamp.is_some());
        assert_eq!(m.labels.map(|l| l.len()), Some(1));
        assert_eq!(m.annotations.map(|a| a.len()), Some(1));
        assert!(m.managed_fields.is_none() && m.resource_version.is_none());
        assert!(m.owner_references.is_none());
        // Only Namespaces and ServiceAccounts are listed this way.
        let judged: Vec<Kind> = crate::resource::KIND_FACTS
            .iter()
            .filter(|f| f.judged_by_metadata())
            .map(|f| f.kind)
            .collect();
        assert_eq!(judged, [Kind::Namespace, Kind::ServiceAccount]);
    }
}
