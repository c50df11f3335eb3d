//! One run over an [`Inventory`], shared by `check`, `audit` and serve's periodic audit: every
//! object is evaluated as a CREATE by the same [`Engine`] the webhook uses (with the inventory
//! as its cluster view), then the cross-resource checks run over the whole set.

use crate::config::exceptions::ObjectExcepted;
use crate::cross::{self, CrossContext};
use crate::engine::Engine;
use crate::finding::{sort_findings, ObjectFinding, Subject};
use crate::inventory::Inventory;
use crate::mtls;
use std::collections::HashSet;

/// The result of analysing an inventory.
#[derive(Clone, Debug, Default)]
pub struct Analysis {
    /// Sorted by file, line, namespace, kind, name (rule order within an object).
    pub findings: Vec<ObjectFinding>,
    /// The effective-mTLS table.
    pub mtls: Vec<mtls::Row>,
    /// Objects evaluated.
    pub evaluated: usize,
    /// Findings an exception covers: reported apart, never counted as findings.
    pub excepted: Vec<ObjectExcepted>,
}

/// Evaluate every object, then run the cross-resource checks.
pub fn analyze(engine: &Engine, inventory: &Inventory) -> Analysis {
    let parts = crate::parallel::par_map(inventory.objects(), |chunk| {
        let mut findings = Vec::new();
        let mut excepted = Vec::new();
        for o in chunk {
            let object = o.object();
            let ev = engine.evaluate(&o.review(&object), inventory);
            if ev.findings.is_empty() && ev.excepted.is_empty() {
                continue;
            }
            let subject = o.subject();
            findings.extend(ev.findings.into_iter().map(|finding| ObjectFinding {
                subject: subject.clone(),
                finding,
            }));
            excepted.extend(ev.excepted.into_iter().map(|e| ObjectExcepted {
                subject: subject.clone(),
                finding: e.finding,
                exception: e.exception,
            }));
        }
        (findings, excepted)
    });
    let (mut findings, mut excepted): (Vec<ObjectFinding>, Vec<ObjectExcepted>) =
        (Vec::new(), Vec::new());
    for (f, e) in parts {
        findings.extend(f);
        excepted.extend(e);
    }
    let cx = CrossContext::new(engine, inventory);
    let (cross, cross_excepted) = cross::run_all_with_exceptions(&cx);
    // An admission rule of the same id may already have reported the same subject.
    let seen: HashSet<(&str, &Subject)> = findings
        .iter()
        .map(|i| (i.finding.rule, &i.subject))
        .collect();
    let cross: Vec<ObjectFinding> = cross
        .into_iter()
        .filter(|i| !seen.contains(&(i.finding.rule, &i.subject)))
        .collect();
    findings.extend(cross);
    sort_findings(&mut findings);
    let seen: HashSet<(&str, &Subject)> = excepted
        .iter()
        .map(|i| (i.finding.rule, &i.subject))
        .collect();
    let cross_excepted: Vec<ObjectExcepted> = cross_excepted
        .into_iter()
        .filter(|i| !seen.contains(&(i.finding.rule, &i.subject)))
        .collect();
    excepted.extend(cross_excepted);
    crate::config::exceptions::sort_excepted(&mut excepted);
    Analysis {
        mtls: cx.into_mtls_rows(),
        findings,
        evaluated: inventory.len(),
        excepted,
    }
}
