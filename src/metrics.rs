//! Prometheus metrics, on meshguard's own registry, held in app state.
//! Labels are bounded: webhook, kind, operation, outcome, rule, action, mutation, resource.
//! Never object names.

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    pub(crate) admission_requests: IntCounterVec,
    pub(crate) admission_duration: HistogramVec,
    pub violations: IntCounterVec,
    pub mutations: IntCounterVec,
    pub(crate) tls_expiry: Gauge,
    pub(crate) tls_reloads: IntCounterVec,
    pub(crate) config_reloads: IntCounterVec,
    pub build_info: IntGaugeVec,
    pub(crate) cache_synced: IntGaugeVec,
    pub audit_violations: GaugeVec,
    pub audit_last_run: Gauge,
    pub(crate) audit_duration: Gauge,
    /// Log lines dropped by the non-blocking writer (sink slower than the reviews).
    pub(crate) log_dropped: prometheus::IntCounter,
    /// Report writes by API and result (created, updated, unchanged, deleted, failed).
    pub(crate) report_writes: IntCounterVec,
    /// 1 while this replica holds the audit Lease (runs the periodic audit, writes reports).
    pub leader: IntGauge,
    /// Audit runs by result (success, failure, interrupted).
    pub(crate) audit_runs: IntCounterVec,
    /// How long the auditor waits before its next run after failures (0: no back-off).
    pub(crate) audit_backoff: Gauge,
    /// The policy in force: one series, 1, labelled with its mode, a digest of its text and what
    /// its last reload weakened (`none`, or a comma-separated list: mode, action, exemption,
    /// lookup, existing-violations).
    pub(crate) policy_info: IntGaugeVec,
    /// When each watch last completed a full list (a relist), as a Unix timestamp.
    pub(crate) watch_last_list: GaugeVec,
    /// Policy operations (`config::exceptions`): findings excepted at admission, by the last
    /// periodic audit, and the exceptions known by source and status.
    pub excepted: IntCounterVec,
    pub(crate) audit_excepted: GaugeVec,
    pub exceptions: IntGaugeVec,
    /// Admitted AuthorizationPolicy and PeerAuthentication changes that open access (the
    /// policy's `impact` setting), by kind.
    pub impact: IntCounterVec,
}

/// Histogram buckets from 50 µs to 10 s.
pub(crate) const DURATION_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let admission_requests = IntCounterVec::new(
            Opts::new(
                "meshguard_admission_requests_total",
                "Admission reviews answered, by webhook, kind, operation and outcome",
            ),
            &["webhook", "kind", "operation", "outcome"],
        )?;
        let admission_duration = HistogramVec::new(
            HistogramOpts::new(
                "meshguard_admission_duration_seconds",
                "Time from request body received to response encoded",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["webhook"],
        )?;
        let violations = IntCounterVec::new(
            Opts::new(
                "meshguard_violations_total",
                "Rule violations found at admission, by rule, resolved action and kind",
            ),
            &["rule", "action", "kind"],
        )?;
        let mutations = IntCounterVec::new(
            Opts::new(
                "meshguard_mutations_total",
                "Mutations applied, by mutation and kind",
            ),
            &["mutation", "kind"],
        )?;
        let tls_expiry = Gauge::new(
            "meshguard_tls_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate, as a Unix timestamp",
        )?;
        let tls_reloads = IntCounterVec::new(
            Opts::new(
                "meshguard_tls_reloads_total",
                "Serving certificate reload attempts, by result",
            ),
            &["result"],
        )?;
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "meshguard_config_reloads_total",
                "Policy configuration reload attempts after the file changed, by result",
            ),
            &["result"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("meshguard_build_info", "Build information; always 1"),
            &["version"],
        )?;
        let cache_synced = IntGaugeVec::new(
            Opts::new(
                "meshguard_cache_synced",
                "1 when the watch cache for a resource has synced",
            ),
            &["resource"],
        )?;
        let audit_violations = GaugeVec::new(
            Opts::new(
                "meshguard_audit_violations",
                "Violations found by the last periodic audit, by rule and namespace",
            ),
            &["rule", "namespace"],
        )?;
        let audit_last_run = Gauge::new(
            "meshguard_audit_last_run_timestamp_seconds",
            "When the last periodic audit finished, as a Unix timestamp",
        )?;
        let audit_duration = Gauge::new(
            "meshguard_audit_duration_seconds",
            "How long the last periodic audit took",
        )?;
        let report_writes = IntCounterVec::new(
            Opts::new(
                "meshguard_report_writes_total",
                "PolicyReport writes by API (wgpolicyk8s, openreports) and result (created, updated, unchanged, deleted, failed)",
            ),
            &["api", "result"],
        )?;
        let leader = IntGauge::new(
            "meshguard_leader",
            "1 while this replica holds the audit Lease: it runs the periodic audit and writes the reports",
        )?;
        registry.register(Box::new(admission_requests.clone()))?;
        registry.register(Box::new(admission_duration.clone()))?;
        registry.register(Box::new(violations.clone()))?;
        registry.register(Box::new(mutations.clone()))?;
        registry.register(Box::new(tls_expiry.clone()))?;
        registry.register(Box::new(tls_reloads.clone()))?;
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(build_info.clone()))?;
        registry.register(Box::new(cache_synced.clone()))?;
        registry.register(Box::new(audit_violations.clone()))?;
        registry.register(Box::new(audit_last_run.clone()))?;
        registry.register(Box::new(audit_duration.clone()))?;
        let log_dropped = prometheus::IntCounter::new(
            "meshguard_log_lines_dropped_total",
            "Log lines dropped because the log sink was slower than the reviews",
        )?;
        registry.register(Box::new(log_dropped.clone()))?;
        registry.register(Box::new(report_writes.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        let audit_runs = IntCounterVec::new(
            Opts::new(
                "meshguard_audit_runs_total",
                "Audit runs by result (success, failure, interrupted)",
            ),
            &["result"],
        )?;
        let audit_backoff = Gauge::new(
            "meshguard_audit_backoff_seconds",
            "How long the auditor waits before its next run because earlier runs failed or were killed (0: none)",
        )?;
        let policy_info = IntGaugeVec::new(
            Opts::new(
                "meshguard_policy_info",
                "The policy in force (always 1): its mode, a digest of its text, and what its last reload weakened (none, or mode, action, exemption, lookup, existing-violations)",
            ),
            &["mode", "digest", "weakened"],
        )?;
        let watch_last_list = GaugeVec::new(
            Opts::new(
                "meshguard_watch_last_list_timestamp_seconds",
                "When the watch of a resource last completed a full list, as a Unix timestamp",
            ),
            &["resource"],
        )?;
        registry.register(Box::new(audit_runs.clone()))?;
        registry.register(Box::new(audit_backoff.clone()))?;
        registry.register(Box::new(policy_info.clone()))?;
        registry.register(Box::new(watch_last_list.clone()))?;
        let excepted = IntCounterVec::new(
            Opts::new(
                "meshguard_excepted_total",
                "Findings an exception covered at admission (allowed, reported), by rule and kind",
            ),
            &["rule", "kind"],
        )?;
        let audit_excepted = GaugeVec::new(
            Opts::new(
                "meshguard_audit_excepted",
                "Findings an exception covered in the last periodic audit, by rule and namespace",
            ),
            &["rule", "namespace"],
        )?;
        let exceptions = IntGaugeVec::new(
            Opts::new(
                "meshguard_exceptions",
                "Exceptions known to the engine, by source (policy, resource) and status (active, expired, refused)",
            ),
            &["source", "status"],
        )?;
        registry.register(Box::new(excepted.clone()))?;
        registry.register(Box::new(audit_excepted.clone()))?;
        registry.register(Box::new(exceptions.clone()))?;
        let impact = IntCounterVec::new(
            Opts::new(
                "meshguard_impact_total",
                "Admitted AuthorizationPolicy and PeerAuthentication changes that open access (impact: warn or audit), by kind",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(impact.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Ok(Metrics {
            registry,
            admission_requests,
            admission_duration,
            violations,
            mutations,
            tls_expiry,
            tls_reloads,
            config_reloads,
            build_info,
            cache_synced,
            audit_violations,
            audit_last_run,
            audit_duration,
            log_dropped,
            report_writes,
            leader,
            audit_runs,
            audit_backoff,
            policy_info,
            watch_last_list,
            excepted,
            audit_excepted,
            exceptions,
            impact,
        })
    }

    /// Text exposition format for `/metrics`.
    pub fn render(&self) -> String {
        let dropped = crate::logging::dropped_lines();
        self.log_dropped
            .inc_by(dropped.saturating_sub(self.log_dropped.get()));
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}
