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

use crate::engine::Engine;
use crate::exit::Exit;
use crate::inventory::Inventory;
use crate::load::{InputArgs, LiveArgs, Loader, MeshArgs, PolicyArgs};
use crate::report::Report;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

#[derive(Clone, Debug, Args)]
#[command(
    mut_arg("paths", |a| a.required_unless_present_any(["cluster", "kubeconfig", "context"])),
    mut_arg("cluster", |a| a.conflicts_with("paths"))
    // `--kubeconfig`/`--context` without `--cluster` are refused after parsing, manifests or
    // not (`load::LiveArgs::stray_flag`), in words that say how to fix it.
)]
pub struct ReportArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub live: LiveArgs,
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// Write the page to this file.
    #[arg(long, value_name = "FILE", required = true)]
    pub html: PathBuf,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// The input is the whole cluster: namespaces, ServiceAccounts and workloads absent from
    /// it do not exist (by default they are unknown).
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
    let loader = Loader::new(&args.policy, &args.mesh)?;
    let policy_source = loader.policy_source.clone();
    if args.live.cluster {
        let loaded = loader.cluster(&args.live.kube, true)?;
        // The mesh as installed is an input of every verdict, as in `audit`.
        let engine = loader.engine(
            loaded.mesh,
            loaded.exceptions,
            args.own_namespace.as_deref(),
        );
        let inventory = loaded.inventory;
        let report = crate::audit::evaluate_inventory(&engine, &inventory, loaded.notes, false);
        let kube = &args.live.kube;
        let input = format!(
            "live cluster ({}), as `meshguard audit`",
            match (&kube.context, &kube.kubeconfig) {
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
        let manifests = loader.manifests(
            &args.input.paths,
            &mut std::io::stdin(),
            &args.input.namespace,
            args.complete,
            false,
            &[],
        )?;
        let prepared = manifests.prepared;
        let engine = loader.engine(manifests.mesh, manifests.exceptions, None);
        let report = crate::check::check_loaded(&engine, &prepared, false);
        let paths: Vec<String> = args
            .input
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect();
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

pub fn run(args: ReportArgs) -> Exit {
    let code = execute(&args, &mut std::io::stderr());
    let _ = std::io::stderr().flush();
    code
}

/// `report` with its diagnostics stream given. Returns the exit code: 0 when the page was
/// written (whatever it shows), 2 when it could not be.
pub fn execute(args: &ReportArgs, err: &mut dyn Write) -> Exit {
    let run = match load(args) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "meshguard report: {e}");
            return Exit::Error;
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
        return Exit::Error;
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
    Exit::Ok
}
