//! Command line: `meshguard serve | check | audit | certs | rules | simulate | test | report |
//! diff`, and dispatch. Each command's flags live next to the command (`check::CheckArgs`,
//! `audit::AuditArgs`, ...); the flags the batch commands share are groups of
//! [`crate::load`] they flatten (policy, input, cluster, mesh). `serve`'s flags are here and
//! become a plain [`ServeConfig`], so the server never sees clap. Every `serve` flag can also be
//! set by an environment variable `MESHGUARD_<FLAG>`. Every command ends with an [`Exit`].

use crate::exit::Exit;
use crate::lease::LeaseTiming;
use crate::listener::Limits;
use crate::policy_report::ReportApi;
use crate::report_writer::ReportsSetting;
use crate::serve::ServeConfig;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "meshguard",
    version,
    about = "Admission webhook that keeps an Istio service mesh zero-trust"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parse the command line (exit 2 with clap's usage error on bad usage), then refuse
    /// `--kubeconfig`/`--context` without `--cluster` in the commands that read either manifests
    /// or a cluster, in words that say how to fix it.
    pub fn parse_checked() -> Cli {
        use clap::CommandFactory;
        let cli = Cli::parse();
        if let Some((name, flag)) = cli.stray_cluster_flag() {
            let mut cmd = Cli::command();
            let sub = cmd.find_subcommand_mut(name).map(std::mem::take);
            let mut cmd = sub.map_or(cmd, |s| s.bin_name(format!("meshguard {name}")));
            cmd.error(
                clap::error::ErrorKind::MissingRequiredArgument,
                format!(
                    "{flag} chooses the cluster that --cluster reads, and --cluster is not given: \
                     add --cluster to read that cluster, or leave {flag} out to read the manifests"
                ),
            )
            .exit()
        }
        cli
    }

    /// The subcommand's name and the cluster flag it got without `--cluster`.
    fn stray_cluster_flag(&self) -> Option<(&'static str, &'static str)> {
        let (name, live) = match &self.command {
            Command::Simulate(a) => ("simulate", &a.live),
            Command::Test(a) => ("test", &a.live),
            Command::Report(a) => ("report", &a.live),
            _ => return None,
        };
        live.stray_flag().map(|flag| (name, flag))
    }
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum Command {
    /// Run the admission webhook server (HTTPS) and the admin server (metrics, probes).
    Serve(Box<ServeArgs>),
    /// Print the rule catalogue.
    Rules(crate::catalogue::RulesArgs),
    /// Generate a CA and a serving certificate for the webhook Service; prints the caBundle.
    Certs(crate::certs::CertsArgs),
    /// Check manifests (files, directories, `-` for stdin) offline.
    Check(crate::check::CheckArgs),
    /// Audit a live cluster (read-only).
    Audit(crate::audit::AuditArgs),
    /// Would this request be allowed? Istio's authorization decision, explained.
    Simulate(Box<crate::simulate::SimulateArgs>),
    /// Run authorization test files (requests with expected verdicts).
    Test(crate::simulate::TestArgs),
    /// Write the mesh's zero-trust posture as one self-contained HTML page.
    Report(crate::posture::ReportArgs),
    /// Generate Kubernetes objects from the rules (admission-policies: the rules CEL can state,
    /// as ValidatingAdmissionPolicies).
    Generate(crate::admission_policy::GenerateArgs),
    /// Run the cluster audit as its own workload: every --interval, one writer by Lease, with
    /// a back-off after failed or killed runs; metrics and probes on the admin port.
    Auditor(Box<crate::auditor::AuditorArgs>),
    /// What a change opens and closes: reachability, mTLS and findings of BASE vs HEAD.
    Diff(crate::diff::DiffArgs),
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 500ms, 10s, 5m)"))
}

#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTPS admission listener.
    #[arg(long, env = "MESHGUARD_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Serving certificate (PEM chain). Reloaded without restart when the file changes.
    #[arg(long, env = "MESHGUARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of the serving certificate (PEM).
    #[arg(long, env = "MESHGUARD_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// DNS names of the generated certificate (used only without --tls-cert); localhost and
    /// 127.0.0.1 are always included.
    #[arg(
        long = "dns-name",
        env = "MESHGUARD_DNS_NAMES",
        value_delimiter = ',',
        default_value = "meshguard.meshguard.svc"
    )]
    pub(crate) dns_names: Vec<String>,
    /// Where to write the CA bundle (PEM) of the generated certificate.
    #[arg(long, env = "MESHGUARD_CA_BUNDLE_OUT")]
    pub(crate) ca_bundle_out: Option<PathBuf>,
    /// How often to check the certificate files for changes.
    #[arg(long, env = "MESHGUARD_TLS_RELOAD_INTERVAL", default_value = "2s", value_parser = duration)]
    pub(crate) tls_reload_interval: Duration,
    /// Require client certificates signed by this CA bundle (PEM), for apiservers configured
    /// with a webhook client certificate.
    #[arg(long, env = "MESHGUARD_CLIENT_CA")]
    pub(crate) client_ca: Option<PathBuf>,
    /// Address of the plain-HTTP admin listener (/metrics, /healthz, /readyz).
    #[arg(long, env = "MESHGUARD_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// Policy configuration (YAML). Without it the built-in policy is used.
    #[arg(long, env = "MESHGUARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// How often to check the --config file for changes. A changed, valid file replaces the
    /// policy without restart; an invalid one is logged and the current policy kept.
    #[arg(long, env = "MESHGUARD_CONFIG_RELOAD_INTERVAL", default_value = "5s", value_parser = duration)]
    pub(crate) config_reload_interval: Duration,
    /// meshguard's own namespace, always exempt.
    #[arg(long, env = "POD_NAMESPACE")]
    pub own_namespace: Option<String>,
    /// Log format.
    #[arg(long, env = "MESHGUARD_LOG_FORMAT", value_enum, default_value = "text")]
    pub(crate) log_format: crate::logging::LogFormat,
    /// Log filter (tracing EnvFilter syntax); `trace` includes request bodies.
    #[arg(long, env = "MESHGUARD_LOG", default_value = "info")]
    pub log_level: String,
    /// Largest accepted request body (bytes). The default, 7 MiB, is the largest review
    /// kube-apiserver sends: object and oldObject of at most 3 MiB each (its request body
    /// limit) and the envelope.
    #[arg(long, env = "MESHGUARD_MAX_BODY_BYTES", default_value_t = crate::listener::DEFAULT_MAX_BODY_BYTES)]
    pub(crate) max_body_bytes: usize,
    /// Bytes all reviews in flight may hold together (request bodies and the objects decoded
    /// from them); a review that does not fit is answered 429 with Retry-After.
    #[arg(long, env = "MESHGUARD_MAX_INFLIGHT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub(crate) max_inflight_bytes: usize,
    /// Estimated bytes the decoded objects of one review may take; a larger review is denied
    /// as too large to judge.
    #[arg(long, env = "MESHGUARD_MAX_DECODED_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_decoded_bytes: usize,
    /// Time a client has to send a request's body (the request's ?timeout= lowers it).
    #[arg(long, env = "MESHGUARD_BODY_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub(crate) body_timeout: Duration,
    /// Time a client has to send the request headers.
    #[arg(long, env = "MESHGUARD_HEADER_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub(crate) header_timeout: Duration,
    /// Time a client has to complete the TLS handshake.
    #[arg(long, env = "MESHGUARD_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub(crate) handshake_timeout: Duration,
    /// Upper bound for answering one review (the apiserver's ?timeout= lowers it).
    #[arg(long, env = "MESHGUARD_REQUEST_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub(crate) request_timeout: Duration,
    /// Maximum concurrent TLS connections; further connections wait in the accept queue.
    /// Lowered at start to fit the open-file limit.
    #[arg(long, env = "MESHGUARD_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub(crate) max_connections: usize,
    /// Maximum concurrent connections from one peer address; further ones are closed at once.
    #[arg(
        long,
        env = "MESHGUARD_MAX_CONNECTIONS_PER_PEER",
        default_value_t = 1_000
    )]
    pub(crate) max_connections_per_peer: usize,
    /// Maximum concurrent connections to the admin port (a quarter of them per peer).
    #[arg(long, env = "MESHGUARD_ADMIN_MAX_CONNECTIONS", default_value_t = 64)]
    pub(crate) admin_max_connections: usize,
    /// Maximum concurrent HTTP/2 streams per connection.
    #[arg(long, env = "MESHGUARD_MAX_CONCURRENT_STREAMS", default_value_t = 256)]
    pub(crate) max_concurrent_streams: u32,
    /// How long SIGTERM waits for in-flight reviews before closing connections.
    #[arg(long, env = "MESHGUARD_DRAIN_TIMEOUT", default_value = "25s", value_parser = duration)]
    pub drain_timeout: Duration,
    /// Close a connection idle (no bytes either way, no review in flight) for this long.
    /// Before its first request the --header-timeout applies.
    #[arg(long, env = "MESHGUARD_IDLE_TIMEOUT", default_value = "90s", value_parser = duration)]
    pub(crate) idle_timeout: Duration,
    /// Close a connection whose client cancels, or gets refused with a 4xx, more than this many
    /// requests within 10 s (HTTP/2 rapid-reset floods; kube-apiserver sends none of either).
    #[arg(long, env = "MESHGUARD_MAX_CANCELLED_PER_10S", default_value_t = 500)]
    pub(crate) max_cancelled_per_10s: u32,
    /// Deadline of a direct API lookup on a cache miss.
    #[arg(long, env = "MESHGUARD_LOOKUP_TIMEOUT", default_value = "2s", value_parser = duration)]
    pub(crate) lookup_timeout: Duration,
    /// Kubeconfig for the namespace and ServiceAccount watches. Without it: in-cluster
    /// configuration, then the default kubeconfig; with neither, serve runs without a cluster.
    #[arg(long, env = "MESHGUARD_KUBECONFIG", conflicts_with = "no_cluster")]
    pub kubeconfig: Option<PathBuf>,
    /// Do not connect to a cluster: namespace labels and ServiceAccounts are unknown and
    /// onLookupFailure decides for the rules that need them.
    #[arg(long, env = "MESHGUARD_NO_CLUSTER")]
    pub no_cluster: bool,
    /// How often to audit the cluster here (gauges meshguard_audit_*, reports); 0 (the default)
    /// turns it off: run `meshguard auditor` as its own workload instead, so that an audit that
    /// outgrows its memory never takes admission with it.
    #[arg(long, env = "MESHGUARD_AUDIT_INTERVAL", default_value = "0s", value_parser = duration)]
    pub audit_interval: Duration,
    /// The namespace Istio is installed in: its MeshConfig and injector ConfigMaps are watched
    /// there (default: istio-system).
    #[arg(long, env = "MESHGUARD_ISTIO_NAMESPACE")]
    pub istio_namespace: Option<String>,
    /// Write the periodic audit's findings as reports: wgpolicyk8s (PolicyReport
    /// wgpolicyk8s.io/v1alpha2), openreports (Report openreports.io/v1alpha1) or none.
    /// Default: wgpolicyk8s when its CRD is served, else none.
    #[arg(long, env = "MESHGUARD_REPORTS", value_enum, value_name = "API")]
    pub reports: Option<ReportsFlag>,
    /// Run the periodic audit (and write reports) only on the replica that holds the
    /// coordination.k8s.io Lease `meshguard-audit` in --own-namespace (else the kubeconfig's
    /// namespace). false: this process always runs it; run a single replica then.
    #[arg(long, env = "MESHGUARD_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub leader_elect: bool,
    /// How long standbys wait after the Lease last changed before taking it over.
    #[arg(long, env = "MESHGUARD_LEADER_ELECT_LEASE_DURATION", default_value = "15s", value_parser = duration)]
    pub(crate) leader_elect_lease_duration: Duration,
    /// How long the holder keeps writing after its last successful renewal.
    #[arg(long, env = "MESHGUARD_LEADER_ELECT_RENEW_DEADLINE", default_value = "10s", value_parser = duration)]
    pub(crate) leader_elect_renew_deadline: Duration,
    /// Time between attempts to acquire or renew the Lease.
    #[arg(long, env = "MESHGUARD_LEADER_ELECT_RETRY_PERIOD", default_value = "2s", value_parser = duration)]
    pub(crate) leader_elect_retry_period: Duration,
    /// Restart every watch (a fresh list) this often, so that a stalled watch cannot keep a
    /// cache stale for long; 0 never restarts them.
    #[arg(long, env = "MESHGUARD_WATCH_RELIST_INTERVAL", default_value = "10m", value_parser = duration)]
    pub(crate) watch_relist_interval: Duration,
    /// Not ready (/readyz fails) while a watch has not completed a list for this long; 0 turns
    /// the check off.
    #[arg(long, env = "MESHGUARD_WATCH_STALE_AFTER", default_value = "30m", value_parser = duration)]
    pub(crate) watch_stale_after: Duration,
}

pub use crate::report_writer::ReportsFlag;

impl ServeArgs {
    /// The plain configuration `serve` runs with.
    pub fn config(&self) -> ServeConfig {
        ServeConfig {
            listen: self.listen,
            tls_files: self.tls_cert.clone().zip(self.tls_key.clone()),
            dns_names: self.dns_names.clone(),
            ca_bundle_out: self.ca_bundle_out.clone(),
            tls_reload_interval: self.tls_reload_interval,
            client_ca: self.client_ca.clone(),
            admin_listen: self.admin_listen,
            config: self.config.clone(),
            config_reload_interval: self.config_reload_interval,
            own_namespace: self.own_namespace.clone(),
            log_format: self.log_format,
            log_level: self.log_level.clone(),
            limits: Limits {
                max_body_bytes: self.max_body_bytes,
                header_read_timeout: self.header_timeout,
                handshake_timeout: self.handshake_timeout,
                request_timeout: self.request_timeout,
                max_connections: self.max_connections,
                max_concurrent_streams: self.max_concurrent_streams,
                drain_timeout: self.drain_timeout,
                idle_timeout: self.idle_timeout,
                max_cancelled_per_10s: self.max_cancelled_per_10s,
                body_timeout: self.body_timeout,
                max_connections_per_peer: self.max_connections_per_peer,
                max_inflight_bytes: self.max_inflight_bytes,
                max_decoded_bytes: self.max_decoded_bytes,
                admin_max_connections: self.admin_max_connections,
            },
            lookup_timeout: self.lookup_timeout,
            kubeconfig: self.kubeconfig.clone(),
            no_cluster: self.no_cluster,
            audit_interval: self.audit_interval,
            istio_namespace: self.istio_namespace.clone(),
            reports: match self.reports {
                None => ReportsSetting::Auto,
                Some(ReportsFlag::Wgpolicyk8s) => ReportsSetting::Api(ReportApi::Wgpolicyk8s),
                Some(ReportsFlag::Openreports) => ReportsSetting::Api(ReportApi::OpenReports),
                Some(ReportsFlag::None) => ReportsSetting::Off,
            },
            watch_relist_interval: self.watch_relist_interval,
            watch_stale_after: self.watch_stale_after,
            leader_elect: self.leader_elect,
            lease_timing: LeaseTiming {
                lease_duration: self.leader_elect_lease_duration,
                renew_deadline: self.leader_elect_renew_deadline,
                retry_period: self.leader_elect_retry_period,
            },
        }
    }
}

/// Run a parsed command; returns how it ended ([`Exit`]: the process exit code).
pub fn run(cli: Cli) -> Exit {
    match cli.command {
        Command::Serve(args) => crate::serve::run(args.config()),
        Command::Rules(args) => crate::catalogue::run(&args),
        Command::Certs(args) => crate::certs::run(args),
        Command::Check(args) => crate::check::run(args),
        Command::Audit(args) => crate::audit::run(args),
        Command::Simulate(args) => crate::simulate::run(*args),
        Command::Test(args) => crate::simulate::policy_tests::run(args),
        Command::Report(args) => crate::posture::run(args),
        Command::Generate(args) => crate::admission_policy::run(args),
        Command::Auditor(args) => crate::auditor::run(*args),
        Command::Diff(args) => crate::diff::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;
    use std::collections::BTreeMap;

    /// The batch commands' shared flags (`crate::load`'s groups) read the same everywhere: one
    /// help text per flag, and `simulate` and `test` take the mesh flags like `check`.
    #[test]
    fn shared_flags_have_one_help_text() {
        let cli = Cli::command();
        let shared = [
            "config",
            "namespace",
            "kubeconfig",
            "context",
            "cluster",
            "mesh_config",
            "istio_namespace",
        ];
        let mut seen: BTreeMap<&str, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for name in ["check", "audit", "simulate", "test", "report", "diff"] {
            let sub = cli
                .find_subcommand(name)
                .unwrap_or_else(|| panic!("no {name}"));
            for id in shared {
                if let Some(arg) = sub.get_arguments().find(|a| a.get_id() == id) {
                    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                    seen.entry(id)
                        .or_default()
                        .entry(help)
                        .or_default()
                        .push(name.to_owned());
                }
            }
            for id in ["config", "mesh_config", "istio_namespace"] {
                assert!(
                    sub.get_arguments().any(|a| a.get_id() == id),
                    "{name} lacks --{id}"
                );
            }
        }
        for (id, helps) in &seen {
            assert_eq!(helps.len(), 1, "--{id} has several help texts: {helps:#?}");
        }
        assert_eq!(
            seen["mesh_config"].values().next().map(Vec::len),
            Some(6),
            "{seen:#?}"
        );
    }
}
