//! The `meshguard` binary: pick the allocator, install the crypto provider, parse the command
//! line, dispatch.
#![forbid(unsafe_code)]

/// mimalloc: the review hot path is allocation-heavy (decoded objects, findings, the response),
/// and mimalloc cuts its CPU per review measurably against glibc's malloc (docs/benchmarks.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's defaults trade memory for speed in a way a long-running process does not want:
/// arenas committed eagerly, and freed memory kept for a second. For the two long-running
/// commands, `serve` and `auditor`, two options are set (unless the environment sets them):
/// arenas are committed as they are used, and freed memory goes back to the OS after 100 ms.
/// `serve` at rest with 3,000 namespaces and 18,000 ServiceAccounts cached: 28 MB of RSS
/// instead of 60 MB; the auditor between audits of a 5,000-object cluster: 32–34 MiB instead
/// of 48–71 MiB (docs/benchmarks.md). The batch commands keep the defaults (`check` on 100,000
/// objects peaks 14% lower with the options, but runs up to 19% longer). mimalloc reads its
/// options when the process starts, before `main`, so the command re-executes itself once with
/// them in its environment (same PID, same arguments); if that fails it runs with the defaults.
#[cfg(feature = "mimalloc")]
fn tune_allocator() {
    use std::os::unix::process::CommandExt;
    const OPTIONS: [(&str, &str); 2] = [
        ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
        ("MIMALLOC_PURGE_DELAY", "100"),
    ];
    let long_running = std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "serve" || a == "auditor");
    if !long_running || OPTIONS.iter().any(|(k, _)| std::env::var_os(k).is_some()) {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .envs(OPTIONS)
        .exec(); // returns only on failure
    eprintln!("meshguard: running with mimalloc's default options (cannot re-execute: {err})");
}

fn main() {
    #[cfg(feature = "mimalloc")]
    tune_allocator();
    // One process-wide rustls provider (pure Rust ring); ignore "already installed".
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = meshguard::cli::Cli::parse_checked();
    std::process::exit(meshguard::cli::run(cli).code());
}
