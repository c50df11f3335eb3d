//! meshguard: a Kubernetes admission webhook that keeps an Istio service mesh zero-trust.
//!
//! Dependencies point one way (a test over the crate's `crate::` paths keeps it so):
//!
//! * leaves: `finding` (findings and actions), `exit` (every command's exit code), `json`
//!   (small JSON helpers), `metrics`,
//!   `freshness` (watch relists and staleness), `logging`, `budget` (the byte budget of the
//!   reviews in flight);
//! * resources: `resource` (kinds, the review), `model` (one typed struct per kind, decoded
//!   once, with Istio's validation beside it),
//!   `context` (the cluster view rules read), `config`
//!   (the policy), `mesh` (the mesh as installed), `dataplane` (each workload's enforcement
//!   point and each Service's waypoint);
//! * checks: `rules` and `mutation` (one object), `mtls` (effective mTLS), `authz` (Istio's
//!   authorization decision for a request, explained);
//! * `engine` (the one pure evaluator);
//! * `inventory` (the objects of one run), `cross` (cross-resource checks), `analysis`
//!   (engine + cross checks over an inventory), `catalogue` (every registry), `reach` (who can
//!   reach what, as sets of requests, and what a change opens);
//! * front ends: `admission` (the webhook), `admission_policy` (the rules' CEL forms as
//!   ValidatingAdmissionPolicies), `load` (the batch commands' shared flags and their one way
//!   from flags to objects, mesh context and notes), `check`, `audit` (and `audit_stream`, the audit a batch of
//!   namespaces at a time), `simulate` (and `test`), `diff` (what a change opens and closes),
//!   `report` (outputs), `policy_change` (what a policy reload weakens), `posture` (the HTML
//!   posture page), `manifest`, `cluster` (kube-backed caches), `policy_report` (findings →
//!   PolicyReports, pure), `report_writer` (writes them), `lease` (one writer among replicas),
//!   `exception_watch` (PolicyException resources), `impact_watch` (what the policy's `impact`
//!   setting reads);
//! * server: `http` (routes), `listener` (TLS accept loop), `tls`, `certs`, `serve`, `auditor`
//!   (the audit as its own workload);
//! * `cli`, then the binary.
#![forbid(unsafe_code)]

pub mod admission;
pub mod admission_policy;
pub mod analysis;
pub mod audit;
pub mod audit_stream;
pub mod auditor;
pub mod authz;
pub mod budget;
pub mod catalogue;
pub mod certs;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod context;
pub mod cross;
pub mod dataplane;
pub mod diff;
pub mod engine;
pub mod exception_watch;
pub mod exit;
pub mod finding;
pub mod freshness;
pub mod http;
pub mod impact_watch;
pub mod inventory;
pub mod json;
pub mod lease;
pub mod listener;
pub mod load;
pub mod logging;
pub mod manifest;
pub mod mesh;
pub mod mesh_watch;
pub mod metrics;
pub mod model;
pub mod mtls;
pub mod mutation;
pub mod parallel;
pub mod policy_change;
pub mod policy_report;
pub mod posture;
pub mod reach;
pub mod report;
pub mod report_writer;
pub mod resource;
pub mod rules;
pub mod serve;
pub mod simulate;
pub mod tls;
