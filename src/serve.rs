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
use crate::mesh::MeshContext;
use crate::metrics::Metrics;
use crate::report_writer::ReportsSetting;
use crate::tls::{self, CertSource, CertStore};
use base64::Engine as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Everything `serve` needs, as plain values (the command line builds it from its flags).
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Address of the HTTPS admission listener.
    pub listen: SocketAddr,
    /// Serving certificate chain and key (PEM files, reloaded when they change); `None`
    /// generates a self-signed CA and certificate for `dns_names`.
    pub(crate) tls_files: Option<(PathBuf, PathBuf)>,
    /// DNS names of a generated certificate (besides localhost and 127.0.0.1).
    pub(crate) dns_names: Vec<String>,
    /// Where to write the CA bundle of a generated certificate.
    pub(crate) ca_bundle_out: Option<PathBuf>,
    pub(crate) tls_reload_interval: Duration,
    /// Require client certificates signed by this CA bundle (PEM file).
    pub(crate) client_ca: Option<PathBuf>,
    /// Address of the plain-HTTP admin listener.
    pub admin_listen: SocketAddr,
    /// Policy file; `None` uses the built-in policy.
    pub config: Option<PathBuf>,
    pub(crate) config_reload_interval: Duration,
    /// meshguard's own namespace, always exempt.
    pub own_namespace: Option<String>,
    pub(crate) log_format: LogFormat,
    pub log_level: String,
    pub limits: Limits,
    /// Deadline of a direct API lookup on a cache miss.
    pub(crate) lookup_timeout: Duration,
    /// Kubeconfig for the watches; `None`: in-cluster or the default kubeconfig.
    pub kubeconfig: Option<PathBuf>,
    /// Run without a cluster connection.
    pub no_cluster: bool,
    /// Period of the background audit; zero turns it off.
    pub audit_interval: Duration,
    /// The namespace Istio is installed in, where its ConfigMaps are watched; `None`: istio-system
    /// (and the mesh context may infer another one from the injector webhooks).
    pub istio_namespace: Option<String>,
    /// Which reports the periodic audit writes.
    pub reports: ReportsSetting,
    /// Restart every watch this often (zero: never).
    pub(crate) watch_relist_interval: Duration,
    /// Not ready while a watch has not listed for this long (zero: never).
    pub(crate) watch_stale_after: Duration,
    /// Run the periodic audit only while holding the audit Lease (several replicas); false:
    /// always (one replica).
    pub leader_elect: bool,
    pub lease_timing: LeaseTiming,
}

pub fn run(args: ServeConfig) -> crate::exit::Exit {
    let _logging = crate::logging::init(args.log_format, &args.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshguard: cannot start the async runtime: {e}");
            return crate::exit::Exit::Error;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => crate::exit::Exit::Ok,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("meshguard: {e:#}");
            crate::exit::Exit::Error
        }
    }
}

/// Load the policy named by `--config`, or the built-in one.
pub(crate) fn load_policy(args: &ServeConfig) -> anyhow::Result<Policy> {
    Ok(match &args.config {
        Some(path) => crate::catalogue::load_policy(path)?,
        None => Policy::builtin(),
    })
}

/// The certificate source: the given files, or a CA + certificate generated now.
pub(crate) fn cert_source(args: &ServeConfig) -> anyhow::Result<CertSource> {
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
    let policy_text = args
        .config
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .unwrap_or_default();
    crate::policy_change::publish(&metrics, None, &policy, &policy_text);
    let store = CertStore::new(cert_source(args)?, Some(metrics.clone()))?;
    let client_ca = match &args.client_ca {
        Some(p) => Some(
            std::fs::read(p)
                .map_err(|e| anyhow::anyhow!("cannot read --client-ca {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let tls_config = tls::server_config(store.clone(), client_ca.as_deref())?;
    // One engine for the webhook and the periodic audit, rebuilt from its two inputs (the policy
    // and the mesh as installed) when either changes, and swapped for both.
    let inputs = Arc::new(Inputs::new(
        policy,
        Arc::new(MeshContext::default()),
        args.own_namespace.clone(),
    ));
    let engine = inputs.handle.clone();
    {
        let e = engine.current();
        tracing::info!(mode = ?e.policy().mode, exempt = ?e.exempt_namespaces(), "policy loaded");
    }

    let client = match args.no_cluster {
        true => None,
        false => crate::cluster::connect(args.kubeconfig.as_deref()).await?,
    };
    let cluster: Arc<dyn ClusterSource> = match client.clone() {
        Some(client) => {
            if !args.watch_stale_after.is_zero()
                && !args.watch_relist_interval.is_zero()
                && args.watch_stale_after <= args.watch_relist_interval
            {
                anyhow::bail!(
                    "--watch-stale-after {:?} must be longer than --watch-relist-interval {:?}",
                    args.watch_stale_after,
                    args.watch_relist_interval
                );
            }
            let freshness = Arc::new(crate::freshness::Freshness::new(
                Some(args.watch_relist_interval),
                Some(args.watch_stale_after),
                Some(metrics.clone()),
            ));
            let caches = crate::cluster::KubeCluster::start_with(
                client.clone(),
                Some(metrics.clone()),
                freshness.clone(),
            );
            let namespace = args
                .istio_namespace
                .clone()
                .unwrap_or_else(|| crate::mesh_watch::DEFAULT_ISTIO_NAMESPACE.to_owned());
            // PolicyExceptions (config::exceptions): a change rebuilds the engine too.
            let sink = inputs.clone();
            let gauges = metrics.clone();
            crate::exception_watch::spawn(client.clone(), move |resources| {
                sink.set_exceptions(resources);
                crate::exception_watch::publish(&gauges, &sink.handle.current());
            });
            let sink = inputs.clone();
            let watch = crate::mesh_watch::spawn_with(
                client,
                namespace,
                args.istio_namespace.is_some(),
                Some(metrics.clone()),
                freshness,
                move |snapshot| sink.set_mesh(snapshot),
            );
            Arc::new(crate::mesh_watch::ReadyWithMesh {
                inner: caches,
                watch,
            })
        }
        None => {
            tracing::info!("no cluster connection: namespace labels and ServiceAccounts are unknown; onLookupFailure decides for rules that need them");
            inputs.log_mesh(&[]);
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
    let impact = Arc::new(ImpactWatch {
        client: client.clone(),
        engine: engine.clone(),
        slot: Arc::new(crate::reach::impact::ImpactSlot::default()),
        metrics: metrics.clone(),
        task: Mutex::new(None),
    });
    impact.ensure();
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
    admission.impact = impact.slot.clone();
    let limits = Arc::new(fit_to_open_files(args.limits.clone())?);
    admission.decode_limits = crate::resource::DecodeLimits {
        max_decoded_bytes: limits.max_decoded_bytes,
    };
    admission.memory = Some(crate::budget::Budget::new(limits.max_inflight_bytes));
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
            args.config_reload_interval,
            inputs.clone(),
            state.admission.metrics.clone(),
            impact.clone(),
        ));
    }
    let admin_task = tokio::spawn(http::serve_admin(
        admin_listener,
        http::admin_router(state.clone()),
        limits.clone(),
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

/// Descriptors kept free of connections: watches, the log, certificate and config reads.
const SPARE_FILES: u64 = 256;

/// Raise the soft open-file limit to the hard one (a container's default soft limit is often
/// 1,024 while the hard one is far higher) and keep both listeners' connection caps below it,
/// so that connections can never take the descriptors the process needs, nor the admin port's
/// the admission port's. Checks the limits that must hold together.
pub(crate) fn fit_to_open_files(mut limits: Limits) -> anyhow::Result<Limits> {
    if limits.max_decoded_bytes > limits.max_inflight_bytes
        || limits.max_body_bytes > limits.max_inflight_bytes
    {
        anyhow::bail!(
            "--max-inflight-bytes ({}) must hold one review: at least --max-body-bytes ({}) and --max-decoded-bytes ({})",
            limits.max_inflight_bytes,
            limits.max_body_bytes,
            limits.max_decoded_bytes
        );
    }
    let files = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit; connection caps unchanged");
            return Ok(limits);
        }
    };
    let room = usize::try_from(files.saturating_sub(SPARE_FILES)).unwrap_or(usize::MAX);
    let wanted = limits.max_connections + limits.admin_max_connections;
    if wanted > room {
        let admin = limits.admin_max_connections.min(room / 8).max(1);
        let tls = room.saturating_sub(admin).max(1);
        tracing::warn!(
            open_files = files,
            max_connections = tls,
            admin_max_connections = admin,
            "the open-file limit is below --max-connections + --admin-max-connections + {SPARE_FILES}: caps lowered"
        );
        limits.max_connections = tls;
        limits.admin_max_connections = admin;
    } else {
        tracing::debug!(open_files = files, "open-file limit");
    }
    limits.max_connections_per_peer = limits.max_connections_per_peer.min(limits.max_connections);
    Ok(limits)
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

/// The engine's two inputs, and the handle every evaluator reads. A new policy or a new mesh
/// snapshot rebuilds the engine from both and swaps it in; the mesh context is logged whenever its
/// effective values change (policy overrides included).
struct Inputs {
    handle: EngineHandle,
    own_namespace: Option<String>,
    current: Mutex<Current>,
}

struct Current {
    policy: Policy,
    mesh: Arc<MeshContext>,
    /// PolicyException resources (the exception watch).
    exceptions: Vec<crate::config::exceptions::Exception>,
    /// Kinds of mesh objects that could not be read.
    notes: Vec<String>,
    /// What was last logged of the mesh context.
    logged: Option<String>,
}

impl Inputs {
    fn new(policy: Policy, mesh: Arc<MeshContext>, own_namespace: Option<String>) -> Inputs {
        let engine = Engine::new(policy.clone(), mesh.clone(), own_namespace.as_deref());
        Inputs {
            handle: EngineHandle::new(engine),
            own_namespace,
            current: Mutex::new(Current {
                policy,
                mesh,
                exceptions: Vec::new(),
                notes: Vec::new(),
                logged: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A reloaded policy.
    fn set_policy(&self, policy: Policy) {
        let mut c = self.lock();
        c.policy = policy;
        self.rebuild(&mut c);
    }

    /// A new snapshot of the mesh objects (the mesh watch).
    fn set_mesh(&self, snapshot: crate::mesh_watch::Snapshot) {
        let mesh = Arc::new(snapshot.builder.build());
        let mut c = self.lock();
        c.mesh = mesh;
        c.notes = snapshot.notes;
        self.rebuild(&mut c);
    }

    /// New PolicyException resources (the exception watch).
    fn set_exceptions(&self, exceptions: Vec<crate::config::exceptions::Exception>) {
        let mut c = self.lock();
        c.exceptions = exceptions;
        self.rebuild(&mut c);
    }

    fn rebuild(&self, c: &mut Current) {
        let engine = Engine::new(
            c.policy.clone(),
            c.mesh.clone(),
            self.own_namespace.as_deref(),
        )
        .with_exception_resources(c.exceptions.clone());
        let mesh = engine.mesh().clone();
        self.handle.replace(engine);
        let notes = c.notes.clone();
        Self::log_if_changed(c, &mesh, &notes);
    }

    /// Log the mesh context in force now (at start without a cluster).
    fn log_mesh(&self, notes: &[String]) {
        let mut c = self.lock();
        let mesh = self.handle.current().mesh().clone();
        Self::log_if_changed(&mut c, &mesh, notes);
    }

    fn log_if_changed(c: &mut Current, mesh: &MeshContext, notes: &[String]) {
        let mut text = mesh.to_string();
        for n in notes {
            text.push_str(&format!("\nnote: {n}"));
        }
        if c.logged.as_deref() == Some(text.as_str()) {
            return;
        }
        let sourced = |v: &str, o: &crate::mesh::Origin| format!("{v} ({o})");
        let aliases = mesh.trust_domain_aliases();
        tracing::info!(
            root_namespace = %sourced(&mesh.root_namespace().value, &mesh.root_namespace().origin),
            trust_domain = %sourced(&mesh.trust_domain().value, &mesh.trust_domain().origin),
            trust_domain_aliases = %sourced(&aliases.value.join(","), &aliases.origin),
            enable_auto_mtls = %sourced(&mesh.enable_auto_mtls().value.to_string(), &mesh.enable_auto_mtls().origin),
            istio_namespace = %sourced(&mesh.istio_namespace().value, &mesh.istio_namespace().origin),
            assumed_default_injector = mesh.assumed_default_injector(),
            summary = %text.replace('\n', "; "),
            "mesh context"
        );
        c.logged = Some(text);
    }
}

/// The watch behind the policy's `impact` setting (`impact_watch`), started the first time a
/// policy sets it (at start or by a reload) and kept from then on; never with `impact: off`.
struct ImpactWatch {
    client: Option<kube::Client>,
    engine: EngineHandle,
    slot: Arc<crate::reach::impact::ImpactSlot>,
    metrics: Metrics,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl ImpactWatch {
    fn ensure(&self) {
        if self.engine.current().policy().impact == crate::config::ImpactSetting::Off {
            return;
        }
        let Some(client) = &self.client else {
            return;
        };
        let Ok(mut task) = self.task.lock() else {
            return;
        };
        if task.is_none() {
            tracing::info!("impact is on: watching workloads and security policies");
            *task = Some(crate::impact_watch::spawn(
                client.clone(),
                self.engine.clone(),
                self.slot.clone(),
                Some(self.metrics.clone()),
            ));
        }
    }
}

impl Drop for ImpactWatch {
    fn drop(&mut self) {
        if let Ok(mut t) = self.task.lock() {
            if let Some(t) = t.take() {
                t.abort();
            }
        }
    }
}

/// Poll the policy file; rebuild the engine when its content changed and is valid.
async fn watch_config(
    path: std::path::PathBuf,
    interval: std::time::Duration,
    inputs: Arc<Inputs>,
    metrics: Metrics,
    impact: Arc<ImpactWatch>,
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
                let previous = inputs.lock().policy.clone();
                crate::policy_change::publish(&metrics, Some(&previous), &policy, &content);
                inputs.set_policy(policy);
                impact.ensure();
                metrics.config_reloads.with_label_values(&["success"]).inc();
                tracing::info!(path = %path.display(), "policy reloaded");
            }
            Err(e) => {
                metrics.config_reloads.with_label_values(&["failure"]).inc();
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
