//! Who can reach what, as sets: the requests a caller may send to a workload port, computed
//! exactly in Istio's matching language and said readably, and what changes between two policy
//! sets, each change with a concrete request that flips (a witness). Pure: no I/O.
//!
//! ```text
//! Partition::new(enforcements, port, protocols)   split the requests to one workload port into
//!                                                 cells by the values the policies write
//!   .evaluate(enforcement, caller)                one decision per cell, by the evaluator
//!     describe(partition, cells)                  the allowed cells, merged and said readably
//!     compare(partition, base, head)              opened / widened / closed / narrowed, with
//!                                                 a witness request each
//! ```
//!
//! * [`lang`]: the classes of a string attribute (exact, prefix, suffix, presence, templates,
//!   path normalisation);
//! * [`dims`]: every dimension a rule compares (method, path, host, headers, token, claims,
//!   addresses, SNI) and its classes;
//! * [`eval`]: the one call into the evaluator ([`crate::authz`]) and the naming of deciders;
//! * [`space`]: cells and their decisions;
//! * [`describe`]: sets in words, as formulas that can be evaluated on any request;
//! * [`model`]: workloads, ports and callers of an inventory;
//! * [`impact`]: what an admitted policy change opens (the webhook's `impact` setting).
//!
//! **Why it is exact.** Every value of every field of the rules that can decide (CUSTOM, DENY,
//! ALLOW) is a literal of one dimension; within a dimension, two values that match the same
//! literals are indistinguishable to every rule; so the decision is a function of the classes
//! a request falls in, and the representative of each combination decides for all of it. What
//! the representatives cannot be is documented where it is decided: requests refused before
//! authorization (a 400, a token no RequestAuthentication accepts) are outside the space, and a
//! token without a subject is not generated.

pub mod describe;
pub(crate) mod dims;
pub mod eval;
pub mod impact;
pub(crate) mod lang;
pub mod model;
pub mod space;

use crate::authz::{Identity, Request};
use describe::Description;
use eval::{Decider, Decision, Enforcement};
use serde::Serialize;
use space::{Partition, Space, Summary};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

pub use eval::Enforcement as Enforce;

/// The set of requests one caller may send to one workload port, in words.
#[derive(Clone, Debug, Serialize)]
pub struct EdgeSet {
    pub summary: Summary,
    /// `all`, `none`, or the alternatives.
    pub text: String,
    /// What allows the allowed requests.
    pub(crate) allowed_by: Vec<Decider>,
    /// What refuses the others.
    pub denied_by: Vec<Decider>,
    #[serde(skip)]
    pub description: Description,
    /// The edge was too large to split (more cells than [`space::MAX_CELLS`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The CUSTOM label of a cell: `namespace/name (provider)` when a CUSTOM rule matches it.
fn custom_label(enf: &Enforcement<'_>, space: &Space, cell: usize) -> Option<String> {
    let i = space.custom.get(cell).copied().flatten()? as usize;
    let set = enf.set()?;
    let p = set.policies().get(i)?;
    Some(format!(
        "{} ({})",
        p.provider.as_deref().unwrap_or("its provider"),
        p.id()
    ))
}

/// Deciders of some cells, deduplicated, in order.
pub(crate) fn deciders(
    enf: &Enforcement<'_>,
    space: &Space,
    port: u16,
    cells: impl IntoIterator<Item = usize>,
) -> Vec<Decider> {
    let mut seen: BTreeSet<Decider> = BTreeSet::new();
    let mut out = Vec::new();
    for c in cells {
        let d = enf.decider(space.decisions[c], port);
        if seen.insert(d.clone()) {
            out.push(d);
        }
    }
    out
}

/// The set of one space, described.
pub(crate) fn edge_set(p: &Partition, enf: &Enforcement<'_>, space: &Space) -> EdgeSet {
    if let Some(n) = p.too_large {
        return EdgeSet {
            summary: Summary::Some,
            text: format!("not computed: {n} combinations of policy values"),
            allowed_by: Vec::new(),
            denied_by: Vec::new(),
            description: Description::none(),
            note: p.notes.first().cloned(),
        };
    }
    let allowed = space.allowed();
    let description = describe::describe(p, &allowed, |c| custom_label(enf, space, c));
    let denied: Vec<usize> = (0..space.decisions.len())
        .filter(|&c| !space.decisions[c].allowed())
        .collect();
    EdgeSet {
        summary: space.summary(),
        text: description.text(p),
        allowed_by: deciders(enf, space, p.port, allowed.iter().copied()),
        denied_by: deciders(enf, space, p.port, denied),
        description,
        note: None,
    }
}

/// The sets of one workload port for any number of callers, computed once per class of
/// callers the policies cannot tell apart.
pub struct Reach<'s> {
    enforcement: Enforcement<'s>,
    partition: Partition,
    fields: Vec<&'s crate::authz::field::Field>,
    cache: HashMap<Vec<u64>, Rc<(Space, EdgeSet)>>,
}

impl<'s> Reach<'s> {
    pub fn new(
        enforcement: Enforcement<'s>,
        port: u16,
        protocols: space::Protocols,
        host: &str,
    ) -> Reach<'s> {
        let partition = Partition::new(&[&enforcement], port, protocols, host);
        let mut all = Vec::new();
        enforcement.fields(&mut all);
        let fields = all.into_iter().filter(|f| eval::is_identity(f)).collect();
        Reach {
            enforcement,
            partition,
            fields,
            cache: HashMap::new(),
        }
    }

    pub fn partition(&self) -> &Partition {
        &self.partition
    }

    pub fn enforcement(&self) -> &Enforcement<'s> {
        &self.enforcement
    }

    /// The space and set of a caller (`None`: a plaintext client).
    pub fn of(&mut self, peer: Option<&Identity>) -> Rc<(Space, EdgeSet)> {
        let key = self
            .enforcement
            .caller_key(&self.fields, peer, self.partition.port);
        if let Some(hit) = self.cache.get(&key) {
            return hit.clone();
        }
        let space = if self.partition.too_large.is_some() {
            Space {
                decisions: Vec::new(),
                custom: Vec::new(),
            }
        } else {
            self.partition.evaluate(&self.enforcement, peer.cloned())
        };
        let set = edge_set(&self.partition, &self.enforcement, &space);
        let out = Rc::new((space, set));
        self.cache.insert(key, out.clone());
        out
    }
}

/// How one edge changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Nothing was allowed, now something is.
    Opened,
    /// More is allowed than before.
    Widened,
    /// Something was allowed, now nothing is.
    Closed,
    /// Less is allowed than before.
    Narrowed,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Opened => "opened",
            ChangeKind::Widened => "widened",
            ChangeKind::Closed => "closed",
            ChangeKind::Narrowed => "narrowed",
        }
    }

    /// More is allowed.
    pub fn opens(self) -> bool {
        matches!(self, ChangeKind::Opened | ChangeKind::Widened)
    }
}

/// One change of an edge: the flipped requests, described, with a witness.
#[derive(Clone, Debug)]
pub struct Change {
    pub kind: ChangeKind,
    /// The requests that flip, in words.
    pub text: String,
    pub description: Description,
    /// A representative request that flips (cell index).
    pub witness: usize,
    /// What decides the flipped requests before and after.
    pub before: Vec<Decider>,
    pub after: Vec<Decider>,
}

/// What differs between two spaces of one partition (the same caller and port).
pub fn compare(
    p: &Partition,
    base: (&Enforcement<'_>, &Space),
    head: (&Enforcement<'_>, &Space),
) -> Vec<Change> {
    let (be, bs) = base;
    let (he, hs) = head;
    let n = bs.decisions.len().min(hs.decisions.len());
    let allowed = |s: &Space, c: usize| s.decisions[c].allowed();
    let opened: Vec<usize> = (0..n)
        .filter(|&c| !allowed(bs, c) && allowed(hs, c))
        .collect();
    let closed: Vec<usize> = (0..n)
        .filter(|&c| allowed(bs, c) && !allowed(hs, c))
        .collect();
    let mut out = Vec::new();
    let any = |s: &Space| s.decisions.iter().any(|d| d.allowed());
    if !opened.is_empty() {
        let kind = if any(bs) {
            ChangeKind::Widened
        } else {
            ChangeKind::Opened
        };
        out.push(change(p, kind, &opened, base, head));
    }
    if !closed.is_empty() {
        let kind = if any(hs) {
            ChangeKind::Narrowed
        } else {
            ChangeKind::Closed
        };
        out.push(change(p, kind, &closed, base, head));
    }
    let _ = (be, he);
    out
}

fn change(
    p: &Partition,
    kind: ChangeKind,
    cells: &[usize],
    (be, bs): (&Enforcement<'_>, &Space),
    (he, hs): (&Enforcement<'_>, &Space),
) -> Change {
    let description = describe::describe(p, cells, |_| None);
    Change {
        kind,
        text: description.text(p),
        description,
        witness: witness(p, cells),
        before: deciders(be, bs, p.port, cells.iter().copied()),
        after: deciders(he, hs, p.port, cells.iter().copied()),
    }
}

/// The simplest of some cells (the fewest classes other than each dimension's first), as the
/// witness of a change.
pub(crate) fn first_witness(p: &Partition, cells: &[usize]) -> usize {
    witness(p, cells)
}

/// The simplest flipped cell: the one with the fewest non-default classes.
fn witness(p: &Partition, cells: &[usize]) -> usize {
    cells
        .iter()
        .copied()
        .min_by_key(|&c| {
            let cell = &p.cells[c];
            let nonzero = cell.classes.iter().filter(|&&x| x != 0).count();
            (nonzero, c)
        })
        .unwrap_or(0)
}

/// Decisions of one request at one enforcement point (for tests and witnesses).
pub fn decide(enf: &Enforcement<'_>, req: &Request) -> Decision {
    enf.decide(req)
}

#[cfg(test)]
mod tests;
