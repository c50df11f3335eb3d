//! The `meshguard` binary: pick the allocator, install the crypto provider, parse the command
//! line, dispatch.
#![forbid(unsafe_code)]

use clap::Parser;

/// mimalloc: the review hot path is allocation-heavy (decoded objects, findings, the response),
/// and mimalloc cuts its CPU per review measurably against glibc's malloc (README, Benchmarks).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // One process-wide rustls provider (pure Rust ring); ignore "already installed".
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = meshguard::cli::Cli::parse();
    std::process::exit(meshguard::cli::run(cli));
}
