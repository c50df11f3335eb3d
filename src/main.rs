//! The `meshguard` binary: install the crypto provider, parse the command line, dispatch.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() {
    // One process-wide rustls provider (pure Rust ring); ignore "already installed".
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = meshguard::cli::Cli::parse();
    std::process::exit(meshguard::cli::run(cli));
}
