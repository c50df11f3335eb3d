//! meshguard's integration tests, in one test binary.
//!
//! Every suite is a module of this one crate rather than its own `tests/*.rs` binary: each
//! binary links the whole dependency graph, and twenty of them cost minutes of linking and
//! gigabytes of disk in CI. Run one suite with `cargo test --test integration https::`.

mod api_double;
mod common;

mod admission_cases;
mod analyze_parity;
mod audit;
mod bad_input;
mod bypass;
mod certs;
mod chart_deployment;
mod check;
mod cluster_context;
mod config_reload;
mod conformance;
mod diff;
mod exit_codes;
mod hostile;
mod https;
mod istio_fixtures;
mod mesh_context;
mod module_graph;
mod mtls;
mod policy_exceptions;
mod posture;
mod pruning;
mod readme;
mod reports;
mod shutdown;
mod simulate;
mod tls_reload;
mod tutorial;
mod workload_fixtures;
