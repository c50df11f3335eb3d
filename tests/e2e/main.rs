//! meshguard end to end: the real `meshguard serve` binary registered with a real
//! kube-apiserver, observed through kubectl and kube-rs.
//!
//! Opt-in: set `MESHGUARD_E2E_KUBECONFIG` to the cluster-admin kubeconfig of a cluster whose
//! apiserver can reach this machine's 127.0.0.1 (a local control plane; docs/testing.md, "End-to-end
//! tests"). Without it the suite prints one line saying so and passes. With
//! `MESHGUARD_E2E_KUBECONFIG_KCM_SHARED` also set (a second cluster whose
//! kube-controller-manager runs with `--use-service-account-credentials=false`), the namespace
//! teardown scenario runs there too.
//!
//! Adding a scenario: a module with `pub fn run(kubeconfig: &Path)` that calls
//! `harness::block_on` on its async body, and one `trial(…)` line below. The body makes a
//! `harness::Run`, starts meshguard (`run.serve(&[extra flags])`), registers it
//! (`run.register(&mg)`), creates its namespaces (`run.create_namespace`), and asserts on
//! `run.apply` / `run.kubectl` results (exit, refusal by rule, warnings), on stored objects
//! (`run.get`, `run.names`), on events (`run.events`) and on meshguard's metrics
//! (`mg.metric_sum`); `harness::eventually` polls for what controllers do asynchronously.
//!
//! This target has its own test runner (libtest-mimic, the libtest command line) so that it can
//! skip with one visible line, run its I/O-bound scenarios more widely in parallel than the
//! machine's core count, and print its own wall time. It takes libtest's arguments (a name
//! filter, `--test-threads`).

mod admission_policies;
mod ambient;
mod audit;
mod auditor;
mod bypass;
mod existing;
mod harness;
mod impact;
mod mesh;
mod policy_ops;
mod reports;
mod rotation;
mod server_side;
mod teardown;
mod tutorial;

use harness::{KUBECONFIG_ENV, KUBECONFIG_KCM_SHARED_ENV};
use libtest_mimic::{Arguments, Trial};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::RwLock;
use std::time::Instant;

/// Scenarios run at once by default: they mostly wait on the apiserver and its controllers.
const DEFAULT_PARALLEL: usize = 8;

/// A kubeconfig from the environment, if set and non-empty.
fn kubeconfig(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Scenarios share the cluster; one that changes what every meshguard reads cluster-wide (Istio
/// injector configurations), or that must not see another scenario's cluster-wide writes (the
/// audit Lease's Reports), takes this lock alone, the others share it.
static CLUSTER_WIDE: RwLock<()> = RwLock::new(());

fn trial(name: &'static str, body: impl FnOnce() + Send + 'static) -> Trial {
    Trial::test(name, move || {
        let _shared = CLUSTER_WIDE.read().unwrap_or_else(|p| p.into_inner());
        let start = Instant::now();
        body();
        eprintln!(
            "e2e {name}: passed in {:.1}s",
            start.elapsed().as_secs_f64()
        );
        Ok(())
    })
}

/// A scenario that runs with no other scenario at the same time (see [`CLUSTER_WIDE`]).
fn exclusive_trial(name: &'static str, body: impl FnOnce() + Send + 'static) -> Trial {
    Trial::test(name, move || {
        let _alone = CLUSTER_WIDE.write().unwrap_or_else(|p| p.into_inner());
        let start = Instant::now();
        body();
        eprintln!(
            "e2e {name}: passed in {:.1}s (alone on the cluster)",
            start.elapsed().as_secs_f64()
        );
        Ok(())
    })
}

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    let Some(main) = kubeconfig(KUBECONFIG_ENV) else {
        println!(
            "e2e: skipped: set {KUBECONFIG_ENV}=<cluster-admin kubeconfig of a cluster whose apiserver reaches 127.0.0.1> to run the end-to-end suite (docs/testing.md: End-to-end tests)"
        );
        return libtest_mimic::run(&args, Vec::new()).exit_code();
    };
    let shared = kubeconfig(KUBECONFIG_KCM_SHARED_ENV);
    args.test_threads.get_or_insert(DEFAULT_PARALLEL);
    let k = |p: &PathBuf| p.clone();
    let trials = vec![
        exclusive_trial("mesh_as_installed", {
            let kc = k(&main);
            move || mesh::run(&kc)
        }),
        trial("admission_policies", {
            let kc = k(&main);
            move || admission_policies::run(&kc)
        }),
        trial("tutorial", {
            let kc = k(&main);
            move || tutorial::run(&kc)
        }),
        trial("ways_around_the_rules", {
            let kc = k(&main);
            move || bypass::run(&kc)
        }),
        trial("existing_objects", {
            let kc = k(&main);
            move || existing::run(&kc)
        }),
        trial("server_side_apply_and_dry_run", {
            let kc = k(&main);
            move || server_side::run(&kc)
        }),
        trial("namespace_teardown_as_service_accounts", {
            let kc = k(&main);
            move || teardown::run(&kc, "as per-controller service accounts")
        }),
        trial("namespace_teardown_as_controller_manager", move || {
            match shared {
            Some(kc) => teardown::run(&kc, "as system:kube-controller-manager"),
            None => println!(
                "e2e namespace_teardown_as_controller_manager: skipped: set {KUBECONFIG_KCM_SHARED_ENV} to a cluster whose kube-controller-manager runs with --use-service-account-credentials=false"
            ),
        }
        }),
        trial("certificate_rotation", {
            let kc = k(&main);
            move || rotation::run(&kc)
        }),
        trial("ca_rotation", {
            let kc = k(&main);
            move || rotation::run_ca(&kc)
        }),
        trial("audit", {
            let kc = k(&main);
            move || audit::run(&kc)
        }),
        trial("ambient", {
            let kc = k(&main);
            move || ambient::run(&kc)
        }),
        trial("policy_operations", {
            let kc = k(&main);
            move || policy_ops::run(&kc)
        }),
        trial("impact_at_admission", {
            let kc = k(&main);
            move || impact::run(&kc)
        }),
        trial("reports_from_audit", {
            let kc = k(&main);
            move || reports::run_audit(&kc)
        }),
        // Alone: it writes reports in every namespace, as the reports scenarios do.
        exclusive_trial("auditor", {
            let kc = k(&main);
            move || auditor::run(&kc)
        }),
        // Alone: its assertion reads when meshguard last wrote its namespace's Report, and
        // `reports_from_audit` runs a cluster-wide `audit --write-reports openreports` that writes
        // every namespace's Report too.
        exclusive_trial("reports_one_writer", {
            let kc = k(&main);
            move || reports::run_one_writer(&kc)
        }),
    ];
    let start = Instant::now();
    let conclusion = libtest_mimic::run(&args, trials);
    println!(
        "e2e suite: wall time {:.1}s against {} ({} scenarios run)",
        start.elapsed().as_secs_f64(),
        main.display(),
        conclusion.num_passed + conclusion.num_failed
    );
    conclusion.exit_code()
}
