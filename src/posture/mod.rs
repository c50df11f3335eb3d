//! `meshguard report [PATH…|--cluster] --html FILE`: one self-contained HTML page of the
//! mesh's zero-trust posture, for people who would rather look than read a findings list.
//!
//! The run is `check`'s (manifests) or `audit`'s (a live cluster, read-only), so the findings
//! and their counts are exactly theirs. On top of it the page shows who is in the mesh, how
//! each port is protected and who can reach whom:
//!
//! * [`model`]: the namespace × workload grid and the findings, computed once (pure);
//! * [`reach`]: the reachability matrices, from the authorization simulator (pure);
//! * [`page`]: the page itself: templates compiled into the binary, inline CSS, JS and SVG,
//!   the data as one gzip-compressed JSON document the script renders lazily, per namespace
//!   and per page of findings (pure).

pub mod model;
pub mod page;
pub mod policy_ops;
pub mod reach;
mod rows;

use crate::config::Policy;
use crate::engine::Engine;
use crate::inventory::Inventory;
use crate::report::Report;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

/// Exit code for usage, input and output errors.
pub const EXIT_ERROR: i32 = 2;

#[derive(Clone, Debug, Args)]
pub struct ReportArgs {
    /// Manifests: files, directories (searched recursively) or `-` for stdin.
    #[arg(value_name = "PATH", required_unless_present = "cluster")]
    pub paths: Vec<PathBuf>,
    /// Read the objects from the live cluster (read-only, like `audit`) instead of manifests.
    #[arg(long, conflicts_with = "paths")]
    pub cluster: bool,
    /// Kubeconfig file for --cluster (default: $KUBECONFIG, ~/.kube/config, then in-cluster).
    #[arg(long, requires = "cluster")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context for --cluster.
    #[arg(long, requires = "cluster")]
    pub context: Option<String>,
    /// Namespace of the Istio control plane (its ConfigMaps); by default read from the
    /// injector webhooks, else `istio-system`.
    #[arg(long)]
    pub istio_namespace: Option<String>,
    /// The mesh's MeshConfig for manifests (as `check --mesh-config`): a MeshConfig YAML file
    /// or the `istio` ConfigMap holding it under `data.mesh`.
    #[arg(long, value_name = "FILE", conflicts_with = "cluster")]
    pub mesh_config: Option<PathBuf>,
    /// Write the page to this file.
    #[arg(long, value_name = "FILE", required = true)]
    pub html: PathBuf,
    /// Policy configuration (YAML). Without it the built-in policy is used.
    #[arg(long, env = "MESHGUARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Namespace of manifests that name none (as `check -n`).
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
    /// The manifests are the whole cluster (as `check --complete`).
    #[arg(long, conflicts_with = "cluster")]
    pub complete: bool,
    /// meshguard's own namespace, exempt as in `audit` (with --cluster).
    #[arg(long, env = "POD_NAMESPACE", requires = "cluster")]
    pub own_namespace: Option<String>,
    /// Rows (calling identities, besides the plaintext client) per reachability matrix.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_identities: u32,
}

/// One run, as the page needs it.
struct Run {
    engine: Engine,
    inventory: Inventory,
    report: Report,
    input: String,
    policy_source: String,
}

fn load(args: &ReportArgs) -> Result<Run, String> {
    let (policy, policy_source) = match &args.config {
        Some(p) => (
            crate::catalogue::load_policy(p).map_err(|e| e.to_string())?,
            format!("{}", p.display()),
        ),
        None => (Policy::builtin(), "built-in policy".to_owned()),
    };
    if args.cluster {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        let (collected, mesh, exceptions) = runtime
            .block_on(async {
                let client =
                    crate::audit::client(args.kubeconfig.as_ref(), args.context.as_deref()).await?;
                let mesh = crate::mesh_watch::read(&client, args.istio_namespace.as_deref())
                    .await
                    .map_err(|source| crate::audit::AuditError::List {
                        what: "the mesh's injector webhooks and ConfigMaps".to_owned(),
                        source,
                    })?;
                let mut collected = crate::audit::collect(&client, 500, None).await?;
                collected.notes.extend(mesh.notes);
                let (exceptions, note) =
                    crate::exception_watch::list(&client)
                        .await
                        .map_err(|source| crate::audit::AuditError::List {
                            what: "PolicyExceptions".to_owned(),
                            source,
                        })?;
                collected.notes.extend(note);
                Ok::<_, crate::audit::AuditError>((collected, mesh.builder, exceptions))
            })
            .map_err(|e| e.to_string())?;
        // The mesh as installed is an input of every verdict, as in `audit`.
        let engine = Engine::new(
            policy,
            std::sync::Arc::new(mesh.build()),
            args.own_namespace.as_deref(),
        )
        .with_exception_resources(exceptions);
        let inventory = Inventory::complete(collected.objects);
        let report = crate::audit::evaluate_inventory(&engine, &inventory, collected.notes, false);
        let input = format!(
            "live cluster ({}), as `meshguard audit`",
            match (&args.context, &args.kubeconfig) {
                (Some(c), _) => format!("context {c}"),
                (None, Some(k)) => format!("current context of {}", k.display()),
                (None, None) => "current context".to_owned(),
            }
        );
        Ok(Run {
            engine,
            inventory,
            report,
            input,
            policy_source,
        })
    } else {
        let mesh_config = match &args.mesh_config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read --mesh-config {}: {e}", path.display()))?;
                let origin = format!("--mesh-config {}", path.display());
                crate::mesh::MeshConfig::from_file_text(&text, &origin)
                    .map_err(|e| e.to_string())?;
                Some((path.display().to_string(), text))
            }
            None => None,
        };
        let mut loaded = crate::manifest::load_from(&args.paths, &mut std::io::stdin())
            .map_err(|e| e.to_string())?;
        let prepared = crate::check::prepare(&mut loaded, &args.namespace, false, args.complete);
        // The mesh objects of the input (MeshConfig, injector webhooks) and --mesh-config, as
        // in `check`.
        let mesh = crate::check::mesh_context(
            &prepared,
            mesh_config.as_ref().map(|(p, t)| (p.as_str(), t.as_str())),
            args.istio_namespace.as_deref(),
        );
        let exceptions = crate::config::exceptions::from_objects(&prepared.mesh_objects);
        let engine = Engine::new(policy, std::sync::Arc::new(mesh), None)
            .with_exception_resources(exceptions);
        let report = crate::check::check_loaded(&engine, &prepared, false);
        let paths: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
        let input = format!(
            "manifests {}{}, as `meshguard check`",
            paths.join(" "),
            if args.complete { " (--complete)" } else { "" }
        );
        Ok(Run {
            engine,
            inventory: prepared.inventory,
            report,
            input,
            policy_source,
        })
    }
}

/// Now, or `SOURCE_DATE_EPOCH` when set (reproducible pages), as RFC 3339 UTC.
fn generated_at() -> String {
    let now = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or_else(std::time::SystemTime::now, |secs| {
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)
        });
    humantime::format_rfc3339_seconds(now).to_string()
}

pub fn run(args: ReportArgs) -> i32 {
    let code = execute(&args, &mut std::io::stderr());
    let _ = std::io::stderr().flush();
    code
}

/// `report` with its diagnostics stream given. Returns the exit code: 0 when the page was
/// written (whatever it shows), 2 when it could not be.
pub fn execute(args: &ReportArgs, err: &mut dyn Write) -> i32 {
    let run = match load(args) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "meshguard report: {e}");
            return EXIT_ERROR;
        }
    };
    let options = model::Options {
        max_identities: args.max_identities as usize,
    };
    let data = model::build(&run.engine, &run.inventory, &run.report, options);
    let mut meta = page::Meta::new(
        &run.engine,
        &run.report,
        run.input.clone(),
        &run.policy_source,
        generated_at(),
    );
    meta.policy_ops = policy_ops::section(&run.engine, &run.inventory, &run.report);
    let html = page::render(&meta, &data, &run.report, &run.inventory);
    if let Err(e) = std::fs::write(&args.html, html.as_bytes()) {
        let _ = writeln!(
            err,
            "meshguard report: cannot write {}: {e}",
            args.html.display()
        );
        return EXIT_ERROR;
    }
    let _ = writeln!(
        err,
        "meshguard report: wrote {} ({} bytes): {} namespaces, {} workloads, {} findings",
        args.html.display(),
        html.len(),
        data.ns.len(),
        data.wl.len(),
        run.report.findings.len()
    );
    // Freeing a large inventory takes a noticeable share of a run: do it off the exit path.
    if run.inventory.len() > 10_000 {
        drop(data);
        std::thread::spawn(move || drop(run));
    }
    0
}
