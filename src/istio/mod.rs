//! What is left of the views of Istio kinds: every kind is now decoded once into the typed
//! model ([`crate::model`]: AuthorizationPolicy, DestinationRule, PeerAuthentication,
//! RequestAuthentication, [`crate::model::envoy_filter`], [`crate::model::sidecar`]).
//!
//! Only the dry-run reading is named here still, as a re-export of its one definition in
//! [`crate::model::labels`], for the readers that import it from this path (the inventory and
//! the authorization evaluator); the module goes once they import it from the model.

pub use crate::model::labels::{is_dry_run, is_dry_run_meta};
