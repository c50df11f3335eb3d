//! `meshguard auditor`: the cluster audit as its own workload, apart from the webhook. It audits
//! every `--interval` (streamed, [`crate::audit_stream`]), exports the audit gauges, writes the
//! reports, and serves `/metrics`, `/healthz` and `/readyz` on its admin port.
//!
//! * **One writer**: only the holder of the Lease `meshguard-audit` audits (the same Lease as
//!   `serve --audit-interval`, so the two never write at once).
//! * **Backs off after a failed or killed run**: each run is recorded on a second Lease,
//!   `meshguard-audit-run` (annotations: when it started, when it finished, how, and how many runs
//!   in a row failed). A run that started and never finished was killed (out of memory, evicted):
//!   it counts as a failure. After `n` failures in a row the next run waits
//!   `--backoff × 2^(n-1)` (at most `--max-backoff`) from the last start, whichever replica and
//!   process takes over; a success resets it.
//! * **Reads the policy file before every run**: an invalid file keeps the last good policy.

use crate::config::Policy;
use crate::engine::Engine;
use crate::lease::{Leadership, LeaseConfig, LeaseTiming};
use crate::metrics::Metrics;
use crate::policy_report::Timestamp;
use crate::report_writer::{ReportWriter, ReportsSetting, RoundApi};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The Lease that records the audit's runs (not an election: its annotations are the record).
pub(crate) const RUN_RECORD: &str = "meshguard-audit-run";
const STARTED: &str = "meshguard.io/audit-started";
const FINISHED: &str = "meshguard.io/audit-finished";
const RESULT: &str = "meshguard.io/audit-result";
const FAILURES: &str = "meshguard.io/audit-consecutive-failures";

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30s, 10m, 1h)"))
}

/// Flags of `meshguard auditor`.
#[derive(Clone, Debug, clap::Args)]
pub struct AuditorArgs {
    /// Time between audits.
    #[arg(long, env = "MESHGUARD_AUDIT_INTERVAL", default_value = "10m", value_parser = duration)]
    pub interval: Duration,
    /// Run one audit now and exit (0 when it succeeded, non-zero when it failed or timed out): for a
    /// CronJob or a measurement. No Lease election, no run record and no admin listener; reports
    /// are written as --reports says. Do not run it beside an auditor Deployment.
    #[arg(long)]
    pub once: bool,
    /// Kubeconfig (default: in-cluster configuration, then the default kubeconfig).
    #[arg(long, env = "MESHGUARD_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Policy file (YAML), read before every audit; without it the built-in policy.
    #[arg(long, env = "MESHGUARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// meshguard's own namespace (exempt; where the Leases live).
    #[arg(long, env = "POD_NAMESPACE")]
    pub own_namespace: Option<String>,
    /// The namespace Istio is installed in (its MeshConfig and injector ConfigMaps are read there).
    #[arg(long, env = "MESHGUARD_ISTIO_NAMESPACE")]
    pub istio_namespace: Option<String>,
    /// Reports to write: wgpolicyk8s, openreports or none (default: wgpolicyk8s when served).
    #[arg(long, env = "MESHGUARD_REPORTS", value_enum, value_name = "API")]
    pub reports: Option<crate::report_writer::ReportsFlag>,
    /// Address of the plain-HTTP admin listener (/metrics, /healthz, /readyz).
    #[arg(long, env = "MESHGUARD_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// Objects per list page.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: u32,
    /// Objects judged at once (a batch of namespaces).
    #[arg(long, default_value_t = 2000)]
    pub(crate) batch_objects: usize,
    /// Wait after one failed or killed run; doubled for each further failure in a row.
    #[arg(long, default_value = "1m", value_parser = duration)]
    pub backoff: Duration,
    /// The longest wait after failures.
    #[arg(long, default_value = "1h", value_parser = duration)]
    pub(crate) max_backoff: Duration,
    /// Give up a run that takes longer (a failure).
    #[arg(long, default_value = "30m", value_parser = duration)]
    pub(crate) run_timeout: Duration,
    /// Elect one auditor by the Lease meshguard-audit (false: a single replica, no Lease).
    #[arg(long, env = "MESHGUARD_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub leader_elect: bool,
    #[arg(long, default_value = "15s", value_parser = duration)]
    pub(crate) leader_elect_lease_duration: Duration,
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub(crate) leader_elect_renew_deadline: Duration,
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub(crate) leader_elect_retry_period: Duration,
    /// Log format.
    #[arg(long, env = "MESHGUARD_LOG_FORMAT", value_enum, default_value = "text")]
    pub(crate) log_format: crate::logging::LogFormat,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "MESHGUARD_LOG", default_value = "info")]
    pub log_level: String,
}

/// What the run record says about the last run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RunRecord {
    /// Unix seconds.
    pub(crate) started: Option<i64>,
    pub(crate) finished: Option<i64>,
    /// success, failure or interrupted.
    pub(crate) result: Option<String>,
    pub(crate) failures: u32,
}

impl RunRecord {
    fn from_annotations(a: &BTreeMap<String, String>) -> RunRecord {
        let num = |k: &str| a.get(k).and_then(|v| v.parse::<i64>().ok());
        RunRecord {
            started: num(STARTED),
            finished: num(FINISHED),
            result: a.get(RESULT).cloned(),
            failures: a.get(FAILURES).and_then(|v| v.parse().ok()).unwrap_or(0),
        }
    }

    fn write_annotations(&self, a: &mut BTreeMap<String, String>) {
        let mut set = |k: &str, v: Option<String>| match v {
            Some(v) => {
                a.insert(k.to_owned(), v);
            }
            None => {
                a.remove(k);
            }
        };
        set(STARTED, self.started.map(|t| t.to_string()));
        set(FINISHED, self.finished.map(|t| t.to_string()));
        set(RESULT, self.result.clone());
        set(FAILURES, Some(self.failures.to_string()));
    }

    /// The last run started and never finished: it was killed (or its process died).
    pub fn unfinished(&self) -> bool {
        match (self.started, self.finished) {
            (Some(s), Some(f)) => s > f,
            (Some(_), None) => true,
            _ => false,
        }
    }

    /// Failures in a row, the unfinished run counted.
    pub(crate) fn failures_in_a_row(&self) -> u32 {
        self.failures + u32::from(self.unfinished())
    }

    /// When (Unix seconds) the next run may start: after `interval` from the last success, or
    /// after the back-off from the last start when runs failed.
    pub(crate) fn next_start(
        &self,
        interval: Duration,
        backoff: Duration,
        max_backoff: Duration,
    ) -> i64 {
        let failures = self.failures_in_a_row();
        if failures == 0 {
            return match self.finished {
                Some(f) if self.result.as_deref() == Some("success") => {
                    f + interval.as_secs() as i64
                }
                _ => 0,
            };
        }
        let wait = backoff_after(failures, backoff, max_backoff);
        self.started.unwrap_or(0) + wait.as_secs() as i64
    }
}

/// The wait after `failures` failures in a row: `backoff × 2^(failures-1)`, at most `max`.
pub(crate) fn backoff_after(failures: u32, backoff: Duration, max: Duration) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
    backoff.saturating_mul(factor).min(max)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The run record, on its Lease (created on first use).
struct Record {
    api: Api<Lease>,
}

impl Record {
    async fn read(&self) -> Result<(RunRecord, Option<Lease>), kube::Error> {
        let lease = self.api.get_opt(RUN_RECORD).await?;
        let record = lease
            .as_ref()
            .and_then(|l| l.metadata.annotations.as_ref())
            .map(RunRecord::from_annotations)
            .unwrap_or_default();
        Ok((record, lease))
    }

    /// Write `record` (conditional on the Lease read; retried after a conflict).
    async fn write(&self, update: impl Fn(&mut RunRecord)) -> Result<RunRecord, kube::Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (mut record, lease) = self.read().await?;
            update(&mut record);
            let result = match lease {
                Some(mut l) => {
                    record.write_annotations(
                        l.metadata.annotations.get_or_insert_with(BTreeMap::new),
                    );
                    self.api
                        .replace(RUN_RECORD, &PostParams::default(), &l)
                        .await
                }
                None => {
                    let mut a = BTreeMap::new();
                    record.write_annotations(&mut a);
                    let l = Lease {
                        metadata: ObjectMeta {
                            name: Some(RUN_RECORD.to_owned()),
                            annotations: Some(a),
                            ..ObjectMeta::default()
                        },
                        spec: None,
                    };
                    self.api.create(&PostParams::default(), &l).await
                }
            };
            match result {
                Ok(_) => return Ok(record),
                Err(kube::Error::Api(s)) if s.code == 409 && attempt < 3 => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Read the policy file, keeping `last` when it is invalid.
fn load_policy(path: Option<&PathBuf>, last: &Policy, metrics: &Metrics) -> Policy {
    let Some(path) = path else {
        return Policy::builtin();
    };
    match crate::catalogue::load_policy(path) {
        Ok(p) => {
            if p != *last {
                crate::policy_change::publish(
                    metrics,
                    Some(last),
                    &p,
                    &std::fs::read(path).unwrap_or_default(),
                );
            }
            p
        }
        Err(e) => {
            metrics.config_reloads.with_label_values(&["failure"]).inc();
            tracing::error!(error = %e, "policy file rejected; auditing with the last good policy");
            last.clone()
        }
    }
}

/// One audit: read the mesh, list and judge the cluster, publish the gauges, write the reports.
async fn audit_once(
    client: &Client,
    args: &AuditorArgs,
    policy: &Policy,
    metrics: &Metrics,
    reports: &mut RoundApi,
    leadership: &Option<Leadership>,
) -> anyhow::Result<usize> {
    let start = std::time::Instant::now();
    let mesh = crate::mesh_watch::read(client, args.istio_namespace.as_deref()).await?;
    let (exceptions, note) = crate::exception_watch::list(client).await?;
    let engine = Engine::new(
        policy.clone(),
        Arc::new(mesh.builder.build()),
        args.own_namespace.as_deref(),
    )
    .with_exception_resources(exceptions);
    crate::exception_watch::publish(metrics, &engine);
    let mut notes = mesh.notes;
    notes.extend(note);
    let limits = crate::audit_stream::Limits {
        page_size: args.page_size,
        batch_objects: args.batch_objects.max(1),
    };
    let report = crate::audit::audit_streamed(client, &engine, limits, notes, false, None).await?;
    crate::audit::publish(metrics, &report, start.elapsed());
    let findings = report.findings.len();
    if let Some(api) = reports.resolve(client).await {
        let may_write = || leadership.as_ref().is_none_or(Leadership::is_leader);
        let mut writer = ReportWriter::new(client.clone(), api, Some(metrics.clone()));
        writer.excepted = report.excepted.clone();
        let counts = writer
            .write(&report.findings, Timestamp::now(), &may_write)
            .await?;
        tracing::info!(api = %api.api_version(), "reports: {counts}");
    }
    Ok(findings)
}

/// Serve `/metrics`, `/healthz` and `/readyz` until `stop`.
async fn admin(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use axum::routing::get;
    let router = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        m.render(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }));
    let shutdown = async move {
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                return;
            }
        }
    };
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "admin listener failed");
    }
}

/// Run `meshguard auditor`; returns the exit code.
pub fn run(args: AuditorArgs) -> crate::exit::Exit {
    let _logging = crate::logging::init(args.log_format, &args.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshguard auditor: cannot start the async runtime: {e}");
            return crate::exit::Exit::Error;
        }
    };
    match runtime.block_on(auditor(args)) {
        Ok(()) => crate::exit::Exit::Ok,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("meshguard auditor: {e:#}");
            crate::exit::Exit::Error
        }
    }
}

async fn auditor(args: AuditorArgs) -> anyhow::Result<()> {
    let timing = LeaseTiming {
        lease_duration: args.leader_elect_lease_duration,
        renew_deadline: args.leader_elect_renew_deadline,
        retry_period: args.leader_elect_retry_period,
    };
    if args.leader_elect {
        timing.validate().map_err(anyhow::Error::msg)?;
    }
    if args.backoff.is_zero() || args.max_backoff < args.backoff {
        anyhow::bail!("--backoff must be more than 0 and at most --max-backoff");
    }
    let metrics = Metrics::new()?;
    let mut policy = match &args.config {
        Some(p) => crate::catalogue::load_policy(p)?,
        None => Policy::builtin(),
    };
    crate::policy_change::publish(
        &metrics,
        None,
        &policy,
        &args
            .config
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .unwrap_or_default(),
    );
    let Some(client) = crate::cluster::connect(args.kubeconfig.as_deref()).await? else {
        anyhow::bail!("no cluster to audit: no in-cluster configuration and no kubeconfig");
    };
    let namespace = args
        .own_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    let reports_setting = || match args.reports {
        None => ReportsSetting::Auto,
        Some(crate::report_writer::ReportsFlag::Wgpolicyk8s) => {
            ReportsSetting::Api(crate::policy_report::ReportApi::Wgpolicyk8s)
        }
        Some(crate::report_writer::ReportsFlag::Openreports) => {
            ReportsSetting::Api(crate::policy_report::ReportApi::OpenReports)
        }
        Some(crate::report_writer::ReportsFlag::None) => ReportsSetting::Off,
    };
    if args.once {
        metrics.leader.set(1);
        let mut reports = RoundApi::new(reports_setting());
        let started = std::time::Instant::now();
        let run = tokio::time::timeout(
            args.run_timeout,
            audit_once(&client, &args, &policy, &metrics, &mut reports, &None),
        )
        .await;
        return match run {
            Ok(Ok(findings)) => {
                tracing::info!(findings, took = ?started.elapsed(), "audit finished (--once)");
                Ok(())
            }
            Ok(Err(e)) => Err(e.context("the audit failed")),
            Err(_) => Err(anyhow::anyhow!(
                "the audit took longer than --run-timeout {:?}",
                args.run_timeout
            )),
        };
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let listener = crate::listener::bind(args.admin_listen, "admin (HTTP)").await?;
    let admin_addr = listener.local_addr()?;
    let admin_task = tokio::spawn(admin(listener, metrics.clone(), stopped.clone()));
    let (leadership, lease_task) = if args.leader_elect {
        let leadership = Leadership::new();
        let config = LeaseConfig {
            namespace: namespace.clone(),
            name: crate::lease::LEASE_NAME.to_owned(),
            identity: crate::lease::default_identity(),
            timing,
        };
        let task = tokio::spawn(crate::lease::run(
            client.clone(),
            config,
            leadership.clone(),
            Some(metrics.clone()),
            stopped.clone(),
        ));
        (Some(leadership), Some(task))
    } else {
        metrics.leader.set(1);
        (None, None)
    };
    tracing::info!(admin = %admin_addr, interval = ?args.interval, namespace = %namespace, "meshguard auditor running");
    let record = Record {
        api: Api::namespaced(client.clone(), &namespace),
    };
    let mut reports = RoundApi::new(reports_setting());
    let mut signals = Box::pin(shutdown_signal());
    loop {
        // Leading, and the run record allows a run now?
        let leading = leadership.as_ref().is_none_or(Leadership::is_leader);
        let mut wait = Duration::from_secs(1);
        if leading {
            match record.read().await {
                Ok((r, _)) => {
                    let failures = r.failures_in_a_row();
                    let backoff = backoff_after(failures, args.backoff, args.max_backoff);
                    metrics.audit_backoff.set(backoff.as_secs_f64());
                    let next = r.next_start(args.interval, args.backoff, args.max_backoff);
                    let at = now();
                    if at >= next {
                        if r.unfinished() {
                            tracing::warn!(started = ?r.started, "the last audit never finished (killed, or its process died): counted as a failure");
                            metrics.audit_runs.with_label_values(&["failure"]).inc();
                        }
                        policy = load_policy(args.config.as_ref(), &policy, &metrics);
                        let started = at;
                        if let Err(e) = record
                            .write(|r| {
                                r.failures = r.failures_in_a_row();
                                r.started = Some(started);
                            })
                            .await
                        {
                            tracing::warn!(error = %e, "cannot write the audit run record; trying again");
                        } else {
                            let run = tokio::time::timeout(
                                args.run_timeout,
                                audit_once(
                                    &client,
                                    &args,
                                    &policy,
                                    &metrics,
                                    &mut reports,
                                    &leadership,
                                ),
                            );
                            let outcome = tokio::select! {
                                r = run => Some(r),
                                _ = &mut signals => None,
                            };
                            let (result, failed) = match outcome {
                                None => ("interrupted", false),
                                Some(Ok(Ok(findings))) => {
                                    tracing::info!(findings, took = ?std::time::Duration::from_secs((now() - started).max(0) as u64), "audit finished");
                                    ("success", false)
                                }
                                Some(Ok(Err(e))) => {
                                    tracing::warn!(error = %format!("{e:#}"), "audit failed; backing off");
                                    ("failure", true)
                                }
                                Some(Err(_)) => {
                                    tracing::warn!(timeout = ?args.run_timeout, "audit took too long; backing off");
                                    ("failure", true)
                                }
                            };
                            metrics.audit_runs.with_label_values(&[result]).inc();
                            let finished = now().max(started);
                            let written = record
                                .write(|r| {
                                    r.finished = Some(finished);
                                    r.result = Some(result.to_owned());
                                    r.failures = if failed {
                                        r.failures + 1
                                    } else if result == "success" {
                                        0
                                    } else {
                                        r.failures
                                    };
                                })
                                .await;
                            if let Err(e) = written {
                                tracing::warn!(error = %e, "cannot write the audit run record");
                            }
                            if outcome_interrupted(result) {
                                break;
                            }
                            continue;
                        }
                    } else {
                        wait = Duration::from_secs((next - at).clamp(1, 5) as u64);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the audit run record");
                    wait = Duration::from_secs(5);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut signals => break,
        }
    }
    tracing::info!("shutting down");
    let _ = stop.send(true);
    if let Some(t) = lease_task {
        let _ = t.await;
    }
    let _ = admin_task.await;
    Ok(())
}

fn outcome_interrupted(result: &str) -> bool {
    result == "interrupted"
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let (b, max) = (Duration::from_secs(60), Duration::from_secs(3600));
        let waits: Vec<u64> = (0..9).map(|n| backoff_after(n, b, max).as_secs()).collect();
        assert_eq!(waits, [0, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(backoff_after(u32::MAX, b, max), max);
    }

    #[test]
    fn a_run_that_never_finished_counts_as_a_failure() {
        let (i, b, max) = (
            Duration::from_secs(600),
            Duration::from_secs(60),
            Duration::from_secs(3600),
        );
        // Never ran: at once.
        assert_eq!(RunRecord::default().next_start(i, b, max), 0);
        // Succeeded: after the interval.
        let ok = RunRecord {
            started: Some(1000),
            finished: Some(1100),
            result: Some("success".into()),
            failures: 0,
        };
        assert_eq!(ok.next_start(i, b, max), 1700);
        // Killed mid-run (started after the last finish): one failure, a minute after it started.
        let killed = RunRecord {
            started: Some(2000),
            ..ok.clone()
        };
        assert!(killed.unfinished());
        assert_eq!(killed.failures_in_a_row(), 1);
        assert_eq!(killed.next_start(i, b, max), 2060);
        // Killed again after two recorded failures: four minutes.
        let again = RunRecord {
            started: Some(5000),
            finished: Some(4000),
            result: Some("failure".into()),
            failures: 2,
        };
        assert_eq!(again.failures_in_a_row(), 3);
        assert_eq!(again.next_start(i, b, max), 5240);
        // The annotations round-trip.
        let mut a = BTreeMap::new();
        again.write_annotations(&mut a);
        assert_eq!(RunRecord::from_annotations(&a), again);
    }
}
