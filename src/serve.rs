//! `meshguard serve`: wire config, certificates, metrics, cluster context and both listeners,
//! then run until SIGTERM/SIGINT and drain. A second signal exits at once.

use crate::admission::Admission;
use crate::cli::ServeArgs;
use crate::config::Policy;
use crate::context::{ClusterSource, NoCluster};
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::server::{self, AppState, Limits, Shutdown};
use crate::tls::{self, CertSource, CertStore};
use base64::Engine as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Exit code for configuration and start-up errors.
pub const EXIT_CONFIG: i32 = 2;

pub fn run(args: ServeArgs) -> i32 {
    crate::cli::init_logging(args.log_format, &args.log_level);
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
pub fn load_policy(args: &ServeArgs) -> anyhow::Result<Policy> {
    Ok(match &args.config {
        Some(path) => Policy::load(path)?,
        None => Policy::builtin(),
    })
}

/// The certificate source: the given files, or a CA + certificate generated now.
pub fn cert_source(args: &ServeArgs) -> anyhow::Result<CertSource> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
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

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Everything that can be wrong with the configuration fails here, before any listener opens.
    let policy = load_policy(&args)?;
    let metrics = Metrics::new()?;
    let store = CertStore::new(cert_source(&args)?, Some(metrics.clone()))?;
    let client_ca = match &args.client_ca {
        Some(p) => Some(
            std::fs::read(p)
                .map_err(|e| anyhow::anyhow!("cannot read --client-ca {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let tls_config = tls::server_config(store.clone(), client_ca.as_deref())?;
    let audit_engine = Engine::new(policy.clone(), args.own_namespace.as_deref());
    let engine = Engine::new(policy, args.own_namespace.as_deref());
    tracing::info!(mode = ?engine.policy().mode, exempt = ?engine.exempt_namespaces(), "policy loaded");

    let cluster: Arc<dyn ClusterSource> = Arc::new(NoCluster);
    tracing::info!("no cluster connection: namespace labels and ServiceAccounts are unknown; onLookupFailure decides for rules that need them");

    crate::audit::spawn_periodic(audit_engine, metrics.clone(), args.audit_interval);
    let mut admission = Admission::new(engine, metrics, cluster);
    admission.lookup_deadline = args.lookup_timeout;
    let limits = Arc::new(Limits {
        max_body_bytes: args.max_body_bytes,
        header_read_timeout: args.header_timeout,
        handshake_timeout: args.handshake_timeout,
        request_timeout: args.request_timeout,
        max_connections: args.max_connections,
        max_concurrent_streams: args.max_concurrent_streams,
        drain_timeout: args.drain_timeout,
    });
    let state = AppState {
        admission: Arc::new(admission),
        listening: Arc::new(AtomicBool::new(false)),
        limits: limits.clone(),
    };

    let tls_listener = server::bind(args.listen, "admission (HTTPS)").await?;
    let admin_listener = server::bind(args.admin_listen, "admin (HTTP)").await?;
    let (stop_tx, shutdown) = Shutdown::new();

    tokio::spawn(store.clone().watch(args.tls_reload_interval));
    let admin = tokio::spawn(server::serve_admin(
        admin_listener,
        server::admin_router(state.clone()),
        shutdown.clone(),
    ));
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received: no new connections, draining in-flight reviews");
        let _ = stop_tx.send(true);
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });

    state.listening.store(true, Ordering::Release);
    tracing::info!(listen = %args.listen, admin = %args.admin_listen, "meshguard serving");
    server::serve_tls(
        tls_listener,
        tls_config,
        server::admission_router(state.clone()),
        limits,
        shutdown,
    )
    .await;
    state.listening.store(false, Ordering::Release);
    let _ = admin.await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
