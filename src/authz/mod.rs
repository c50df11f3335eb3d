//! Istio's authorization decision for one request, explained: the evaluator behind
//! `meshguard simulate`, `meshguard test` and the reachability matrix of the posture page.
//! Pure: no I/O.
//!
//! ```text
//! PolicySet::new(mesh, objects)     compile every AuthorizationPolicy, RequestAuthentication
//!                                   and PeerAuthentication once
//!   .target(namespace, pod labels)  select what applies to one workload, once
//!     .decide(&request)             the outcome, without allocating (matrices)
//!     .explain(&request)            the outcome with its reasons (simulate, test)
//! ```
//!
//! The semantics are Istio's own, read from istio/istio:
//! `pilot/pkg/security/authz/model` (rules → Envoy RBAC: which key reads what, how values are
//! written as matchers, what happens on TCP), `pilot/pkg/security/authz/matcher` (string,
//! header, host, path and template matchers), `pilot/pkg/security/authz/builder/builder.go`
//! (dry-run, rule-less policies, CUSTOM), `pilot/pkg/model/authorization.go` and
//! `policyattachment.go` (which policies apply to a workload), `pilot/pkg/security/authn`
//! (JWT providers, effective mTLS) and `pilot/pkg/networking/core/listener_builder.go` (path
//! normalisation). The step order is documented in [`decision`].
//!
//! * [`request`]: the request model.
//! * [`string_match`], [`path`], [`ip`], [`claims`]: the matchers.
//! * `field` and `policy`: policies compiled into rules of fields.
//! * [`decision`]: the steps and the outcome; [`explain`]: reasons and closest rules.

pub mod claims;
pub mod decision;
pub mod explain;
pub(crate) mod field;
pub mod hops;
pub mod ip;
pub mod path;
pub mod policy;
pub mod request;
pub(crate) mod string_match;
pub mod ztunnel;
pub(crate) mod ztunnel_target;

pub use decision::{At, Mesh, Outcome, PolicySet, RuleRef, Target, Verdict};
pub use explain::{Explanation, Hop, NearMiss, RuleHit};
pub use request::{Http, Identity, Jwt, Request};
pub use ztunnel_target::ZtunnelTarget;
