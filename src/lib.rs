//! meshguard: a Kubernetes admission webhook that keeps an Istio service mesh zero-trust.
//!
//! Dependencies point one way:
//! `resource` (typed views) → `rules`, `mutation` → `engine` (pure) → front ends
//! (`admission`, `check`, `audit`) → `server` → `serve` / `cli` → the binary.
#![forbid(unsafe_code)]

pub mod admission;
pub mod audit;
pub mod catalogue;
pub mod certs;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod context;
pub mod cross;
pub mod engine;
pub mod manifest;
pub mod mesh;
pub mod metrics;
pub mod mtls;
pub mod mutation;
pub mod pod_template;
pub mod report;
pub mod resource;
pub mod rules;
pub mod serve;
pub mod server;
pub mod tls;
