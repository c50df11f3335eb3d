//! `meshguard serve`: wire config, certificates, metrics, cluster context and both listeners,
//! then run until SIGTERM/SIGINT and drain. A second signal exits at once.

use crate::admission::Admission;
use crate::config::Policy;
use crate::context::{ClusterSource, NoCluster};
use crate::engine::{Engine, EngineHandle};
use crate::http::{self, AppState};
use crate::lease::{Leadership, LeaseConfig, LeaseTiming};
use crate::listener::{self, Limits, Shutdown};
use crate::logging::LogFormat;
use crate::metrics::Metrics;
use crate::report_writer::ReportsSetting;
use crate::tls::{self, CertSource, CertStore};
use base64::Engine as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Exit code for configuration and start-up errors.
pub const EXIT_CONFIG: i32 = 2;

/// Everything `serve` needs, as plain values (the command line builds it from its flags).
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Address of the HTTPS admission listener.
    pub listen: SocketAddr,
    /// Serving certificate chain and key (PEM files, reloaded when they change); `None`
    /// generates a self-signed CA and certificate for `dns_names`.
    pub tls_files: Option<(PathBuf, PathBuf)>,
    /// DNS names of a generated certificate (besides localhost and 127.0.0.1).
    pub dns_names: Vec<String>,
    /// Where to write the CA bundle of a generated certificate.
    pub ca_bundle_out: Option<PathBuf>,
    pub tls_reload_interval: Duration,
    /// Require client certificates signed by this CA bundle (PEM file).
    pub client_ca: Option<PathBuf>,
    /// Address of the plain-HTTP admin listener.
    pub admin_listen: SocketAddr,
    /// Policy file; `None` uses the built-in policy.
    pub config: Option<PathBuf>,
    pub config_reload_interval: Duration,
    /// meshguard's own namespace, always exempt.
    pub own_namespace: Option<String>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub limits: Limits,
    /// Deadline of a direct API lookup on a cache miss.
    pub lookup_timeout: Duration,
    /// Kubeconfig for the watches; `None`: in-cluster or the default kubeconfig.
    pub kubeconfig: Option<PathBuf>,
    /// Run without a cluster connection.
    pub no_cluster: bool,
    /// Period of the background audit; zero turns it off.
    pub audit_interval: Duration,
    /// Which reports the periodic audit writes.
    pub reports: ReportsSetting,
    /// Run the periodic audit only while holding the audit Lease (several replicas); false:
    /// always (one replica).
    pub leader_elect: bool,
    pub lease_timing: LeaseTiming,
}

pub fn run(args: ServeConfig) -> i32 {
    let _logging = crate::logging::init(args.log_format, &args.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshguard: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("meshguard: {e:#}");
            EXIT_CONFIG
        }
    }
}

/// Load the policy named by `--config`, or the built-in one.
pub fn load_policy(args: &ServeConfig) -> anyhow::Result<Policy> {
    Ok(match &args.config {
        Some(path) => crate::catalogue::load_policy(path)?,
        None => Policy::builtin(),
    })
}

/// The certificate source: the given files, or a CA + certificate generated now.
pub fn cert_source(args: &ServeConfig) -> anyhow::Result<CertSource> {
    if let Some((cert, key)) = &args.tls_files {
        return Ok(CertSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    names.extend(args.dns_names.iter().filter(|n| !n.is_empty()).cloned());
    let generated = tls::generate(&names, 365)?;
    if let Some(path) = &args.ca_bundle_out {
        std::fs::write(path, &generated.ca_cert_pem).map_err(|e| {
            anyhow::anyhow!("cannot write the CA bundle to {}: {e}", path.display())
        })?;
        tracing::info!(path = %path.display(), "wrote the CA bundle");
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(&generated.ca_cert_pem);
    tracing::info!(names = ?names, ca_bundle = %b64, "no --tls-cert given: generated a self-signed CA and serving certificate; use ca_bundle as the webhook caBundle");
    Ok(CertSource::Memory {
        cert_pem: generated.cert_pem,
        key_pem: generated.key_pem,
    })
}

/// A running server: both listeners bound and serving.
pub struct Started {
    /// Bound address of the HTTPS admission listener.
    pub addr: SocketAddr,
    /// Bound address of the admin listener.
    pub admin_addr: SocketAddr,
    pub state: AppState,
    stop: watch::Sender<bool>,
    tls_task: JoinHandle<()>,
    admin_task: JoinHandle<()>,
    /// The audit Lease loop: releases the Lease once the listeners have stopped.
    lease_task: Option<JoinHandle<()>>,
}

impl Started {
    /// Stop accepting and drain in-flight reviews (as SIGTERM does); resolves when drained.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.wait().await;
    }

    /// Trigger the drain without waiting for it.
    pub fn begin_shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Resolve when both listeners have stopped.
    pub async fn wait(self) {
        let _ = self.tls_task.await;
        self.state.listening.store(false, Ordering::Release);
        let _ = self.admin_task.await;
        if let Some(t) = self.lease_task {
            let _ = t.await;
        }
    }
}

/// Load everything, bind both listeners and start serving. Every configuration error surfaces
/// here, before a listener opens. Tests use this to run exactly what the binary runs.
pub async fn start(args: &ServeConfig) -> anyhow::Result<Started> {
    if args.leader_elect {
        args.lease_timing.validate().map_err(anyhow::Error::msg)?;
    }
    let policy = load_policy(args)?;
    let metrics = Metrics::new()?;
    let store = CertStore::new(cert_source(args)?, Some(metrics.clone()))?;
    let client_ca = match &args.client_ca {
        Some(p) => Some(
            std::fs::read(p)
                .map_err(|e| anyhow::anyhow!("cannot read --client-ca {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let tls_config = tls::server_config(store.clone(), client_ca.as_deref())?;
    let engine = Engine::new(policy, args.own_namespace.as_deref());
    tracing::info!(mode = ?engine.policy().mode, exempt = ?engine.exempt_namespaces(), "policy loaded");
    // One engine for the webhook and the periodic audit; a policy reload swaps it for both.
    let engine = EngineHandle::new(engine);

    let client = match args.no_cluster {
        true => None,
        false => crate::cluster::connect(args.kubeconfig.as_deref()).await?,
    };
    let cluster: Arc<dyn ClusterSource> = match client.clone() {
        Some(client) => crate::cluster::KubeCluster::start(client, Some(metrics.clone())),
        None => {
            tracing::info!("no cluster connection: namespace labels and ServiceAccounts are unknown; onLookupFailure decides for rules that need them");
            Arc::new(NoCluster)
        }
    };

    let (stop, shutdown) = Shutdown::new();
    // One writer among replicas: the periodic audit (and its reports) runs on the Lease holder.
    let mut lease_task = None;
    let leadership = match (&client, args.leader_elect && !args.audit_interval.is_zero()) {
        (Some(client), true) => {
            let leadership = Leadership::new();
            let config = LeaseConfig {
                namespace: args
                    .own_namespace
                    .clone()
                    .unwrap_or_else(|| client.default_namespace().to_owned()),
                name: crate::lease::LEASE_NAME.to_owned(),
                identity: crate::lease::default_identity(),
                timing: args.lease_timing,
            };
            lease_task = Some(tokio::spawn(crate::lease::run(
                client.clone(),
                config,
                leadership.clone(),
                Some(metrics.clone()),
                stop.subscribe(),
            )));
            Some(leadership)
        }
        _ => {
            if client.is_some() && !args.audit_interval.is_zero() {
                metrics.leader.set(1);
                tracing::info!("--leader-elect=false: this replica runs the periodic audit without a Lease; run only one such replica");
            }
            None
        }
    };
    crate::audit::spawn_periodic(
        client,
        engine.clone(),
        metrics.clone(),
        crate::audit::Periodic {
            interval: args.audit_interval,
            reports: args.reports,
            leadership,
        },
    );
    let mut admission = Admission::new(engine, metrics, cluster);
    admission.lookup_deadline = args.lookup_timeout;
    let limits = Arc::new(args.limits.clone());
    let state = AppState {
        admission: Arc::new(admission),
        listening: Arc::new(AtomicBool::new(false)),
        limits: limits.clone(),
    };

    let tls_listener = listener::bind(args.listen, "admission (HTTPS)").await?;
    let admin_listener = listener::bind(args.admin_listen, "admin (HTTP)").await?;
    let addr = tls_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;

    tokio::spawn(store.clone().watch(args.tls_reload_interval));
    if let Some(path) = args.config.clone() {
        tokio::spawn(watch_config(
            path,
            args.own_namespace.clone(),
            args.config_reload_interval,
            state.admission.clone(),
        ));
    }
    let admin_task = tokio::spawn(http::serve_admin(
        admin_listener,
        http::admin_router(state.clone()),
        shutdown.clone(),
    ));
    let tls_task = tokio::spawn(listener::serve_tls(
        tls_listener,
        tls_config,
        http::admission_router(state.clone()),
        limits,
        shutdown,
    ));
    state.listening.store(true, Ordering::Release);
    tracing::info!(listen = %addr, admin = %admin_addr, "meshguard serving");
    Ok(Started {
        addr,
        admin_addr,
        state,
        stop,
        tls_task,
        admin_task,
        lease_task,
    })
}

async fn serve(args: ServeConfig) -> anyhow::Result<()> {
    // Install the handlers before anything is listening, so an early SIGTERM drains too.
    let mut signals = Signals::new()?;
    let started = start(&args).await?;
    let stop = started.stop.clone();
    tokio::spawn(async move {
        signals.recv().await;
        tracing::info!("shutdown signal received: no new connections, draining in-flight reviews");
        let _ = stop.send(true);
        signals.recv().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
    started.wait().await;
    tracing::info!("stopped");
    Ok(())
}

/// Poll the policy file; swap in a new engine when its content changed and is valid.
async fn watch_config(
    path: std::path::PathBuf,
    own_namespace: Option<String>,
    interval: std::time::Duration,
    admission: Arc<Admission>,
) {
    let mut last = std::fs::read(&path).unwrap_or_default();
    let mut tick = tokio::time::interval(interval.max(std::time::Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Ok(content) = tokio::fs::read(&path).await else {
            continue; // mid-swap or briefly missing: try again next tick
        };
        if content == last {
            continue;
        }
        last = content.clone();
        let text = String::from_utf8_lossy(&content);
        match crate::catalogue::policy_from_yaml(&text, &path.display().to_string()) {
            Ok(policy) => {
                admission
                    .engine
                    .replace(Engine::new(policy, own_namespace.as_deref()));
                admission
                    .metrics
                    .config_reloads
                    .with_label_values(&["success"])
                    .inc();
                tracing::info!(path = %path.display(), "policy reloaded");
            }
            Err(e) => {
                admission
                    .metrics
                    .config_reloads
                    .with_label_values(&["failure"])
                    .inc();
                tracing::error!(error = %e, "new policy rejected; keeping the current one");
            }
        }
    }
}

/// SIGTERM and SIGINT, registered once.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}
