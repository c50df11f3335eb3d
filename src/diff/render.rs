//! `meshguard diff` output: text for people at a terminal, JSON for tools, Markdown for a
//! pull-request comment (the most important changes first, the rest counted, well under
//! GitHub's 65,536-character comment limit).
//!
//! Text and Markdown group the callers whose change of one edge is the same (same requests,
//! same deciding policies): a new workload in an open namespace is one line, not one per
//! identity. JSON lists every caller.

use super::{Diff, EdgeChange, ExceptedChange, FailOn, FindingChange};
use crate::reach::ChangeKind;
use serde_json::{json, Value};
use std::fmt::Write;

/// Changes of one edge that read the same, with every caller they apply to.
struct Group<'d> {
    first: &'d EdgeChange,
    from: Vec<&'d str>,
}

fn groups(d: &Diff) -> Vec<Group<'_>> {
    let mut out: Vec<Group<'_>> = Vec::new();
    for c in &d.changes {
        let same = |g: &Group<'_>| {
            let f = g.first;
            f.to == c.to
                && f.port == c.port
                && f.via == c.via
                && f.change == c.change
                && f.requests == c.requests
                && f.before == c.before
                && f.after == c.after
        };
        match out.iter_mut().find(|g| same(g)) {
            Some(g) => g.from.push(&c.from),
            None => out.push(Group {
                first: c,
                from: vec![&c.from],
            }),
        }
    }
    out
}

fn deciders(ds: &[crate::reach::eval::Decider]) -> String {
    if ds.is_empty() {
        return "nothing (the workload did not exist)".to_owned();
    }
    ds.iter()
        .map(crate::reach::eval::Decider::label)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The witness command line, quoted for a shell.
pub fn command(c: &EdgeChange) -> String {
    c.witness
        .simulate
        .iter()
        .map(|a| super::shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn callers(from: &[&str]) -> String {
    const SHOWN: usize = 6;
    if from.len() <= SHOWN {
        from.join(", ")
    } else {
        format!(
            "{} and {} more",
            from[..SHOWN].join(", "),
            from.len() - SHOWN
        )
    }
}

fn counts(d: &Diff) -> String {
    let n = |k: ChangeKind| d.changes.iter().filter(|c| c.change == k).count();
    format!(
        "{} opened, {} widened, {} closed, {} narrowed (caller × workload port)",
        n(ChangeKind::Opened),
        n(ChangeKind::Widened),
        n(ChangeKind::Closed),
        n(ChangeKind::Narrowed)
    )
}

fn finding_line(f: &FindingChange) -> String {
    let subject = if f.namespace.is_empty() {
        format!("{} {}", f.kind, f.name)
    } else {
        format!("{} {}/{}", f.kind, f.namespace, f.name)
    };
    format!(
        "[{}] ({}) {subject} {}: {}",
        f.rule, f.action, f.path, f.message
    )
}

/// An excepted finding, with the exception and whether BASE reported it.
fn excepted_line(e: &ExceptedChange) -> String {
    format!(
        "{} [excepted by {}, {}{}]",
        finding_line(&e.finding),
        e.exception,
        e.exception_says,
        if e.in_base { "" } else { "; new in HEAD" }
    )
}

/// `, N excepted` when the change excepts any finding.
fn excepted_count(d: &Diff) -> String {
    match d.findings.excepted.len() {
        0 => String::new(),
        n => format!(", {n} excepted"),
    }
}

/// Text.
pub fn text(d: &Diff) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "meshguard diff: {} → {}", d.base, d.head);
    let _ = writeln!(
        s,
        "{} workload ports compared, {} recomputed (their policies, mTLS or data plane changed), {} callers each",
        d.ports_compared, d.ports_recomputed, d.callers
    );
    let gs = groups(d);
    for (title, opens) in [
        ("Newly allowed (HEAD allows, BASE refused)", true),
        ("Newly refused (HEAD refuses, BASE allowed)", false),
    ] {
        let mine: Vec<&Group<'_>> = gs
            .iter()
            .filter(|g| g.first.change.opens() == opens)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n{title}:");
        for g in mine {
            let c = g.first;
            let _ = writeln!(
                s,
                "  {:<8} {} → {}:{}{}{}",
                c.change.as_str(),
                callers(&g.from),
                c.to,
                c.port,
                c.via
                    .as_ref()
                    .map(|v| format!(" via {v}"))
                    .unwrap_or_default(),
                c.note.map(|n| format!(" ({n})")).unwrap_or_default()
            );
            let _ = writeln!(s, "           requests: {}", c.requests);
            let _ = writeln!(s, "           now:      {}", deciders(&c.after));
            let _ = writeln!(s, "           before:   {}", deciders(&c.before));
            let _ = writeln!(
                s,
                "           witness:  {} (HEAD: {})",
                command(c),
                c.witness.head
            );
        }
    }
    if !d.mtls.is_empty() {
        let _ = writeln!(s, "\nEffective mTLS:");
        for m in &d.mtls {
            let by = |p: &Option<String>| {
                p.as_ref()
                    .map_or_else(|| "Istio's default".to_owned(), Clone::clone)
            };
            let _ = writeln!(
                s,
                "  {}:{}  {} ({}) → {} ({}){}",
                m.workload,
                m.port,
                m.from,
                by(&m.from_policy),
                m.to,
                by(&m.to_policy),
                if m.opens_plaintext {
                    ": plaintext is accepted now"
                } else {
                    ""
                }
            );
        }
    }
    if !d.findings.new.is_empty() || !d.findings.fixed.is_empty() {
        let _ = writeln!(
            s,
            "\nFindings: {} new ({} deny), {} fixed",
            d.findings.new.len(),
            d.new_deny_findings(),
            d.findings.fixed.len()
        );
        for f in &d.findings.new {
            let _ = writeln!(s, "  + {}", finding_line(f));
        }
        for f in &d.findings.fixed {
            let _ = writeln!(s, "  - {}", finding_line(f));
        }
    }
    if !d.findings.excepted.is_empty() {
        let _ = writeln!(
            s,
            "\nExcepted by HEAD (reported, not enforced): {}",
            d.findings.excepted.len()
        );
        for e in &d.findings.excepted {
            let _ = writeln!(s, "  ~ {}", excepted_line(e));
        }
    }
    if !d.notes.is_empty() {
        let _ = writeln!(s, "\nNotes:");
        for n in &d.notes {
            let _ = writeln!(s, "  {n}");
        }
    }
    let _ = writeln!(
        s,
        "\n{}; {} mTLS change{}; {} finding{} new, {} fixed{}",
        if d.changes.is_empty() {
            "no reachability change".to_owned()
        } else {
            counts(d)
        },
        d.mtls.len(),
        if d.mtls.len() == 1 { "" } else { "s" },
        d.findings.new.len(),
        if d.findings.new.len() == 1 { "" } else { "s" },
        d.findings.fixed.len(),
        excepted_count(d)
    );
    s
}

/// JSON: the [`Diff`] as serialised, plus counts.
pub fn json(d: &Diff) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
    let n = |k: ChangeKind| d.changes.iter().filter(|c| c.change == k).count();
    if let Some(m) = v.as_object_mut() {
        m.insert(
            "summary".into(),
            json!({
                "opened": n(ChangeKind::Opened),
                "widened": n(ChangeKind::Widened),
                "closed": n(ChangeKind::Closed),
                "narrowed": n(ChangeKind::Narrowed),
                "mtls": d.mtls.len(),
                "mtlsOpensPlaintext": d.mtls.iter().filter(|m| m.opens_plaintext).count(),
                "findingsNew": d.findings.new.len(),
                "findingsNewDeny": d.new_deny_findings(),
                "findingsFixed": d.findings.fixed.len(),
                "findingsExcepted": d.findings.excepted.len(),
                "opened_anything": d.opened(),
            }),
        );
    }
    v
}

/// Markdown for a pull-request comment.
pub fn markdown(d: &Diff, fail_on: &[FailOn]) -> String {
    /// Rows of the changes table, and the comment's size budget.
    const ROWS: usize = 25;
    const BUDGET: usize = 50_000;
    let md = |s: &str| s.replace('|', "\\|").replace('`', "'");
    // Outside code spans, `*` and `_` would start emphasis (`*, istio-system/*`).
    let plain = |s: &str| {
        md(s)
            .replace('*', "\\*")
            .replace('_', "\\_")
            .replace('<', "&lt;")
    };
    let mut s = String::new();
    let verdict = if d.exit_code(fail_on) == crate::exit::Exit::Ok {
        "✅"
    } else {
        "⚠️"
    };
    let _ = writeln!(s, "### {verdict} meshguard diff\n");
    let _ = writeln!(
        s,
        "`{}` → `{}`: {}; {} mTLS change{}{}; findings: {} new ({} deny), {} fixed{}.\n",
        md(&d.base),
        md(&d.head),
        if d.changes.is_empty() {
            "no reachability change".to_owned()
        } else {
            counts(d)
        },
        d.mtls.len(),
        if d.mtls.len() == 1 { "" } else { "s" },
        if d.mtls.iter().any(|m| m.opens_plaintext) {
            " (a port accepts plaintext now)"
        } else {
            ""
        },
        d.findings.new.len(),
        d.new_deny_findings(),
        d.findings.fixed.len(),
        excepted_count(d)
    );
    let gs = groups(d);
    if !gs.is_empty() {
        let _ = writeln!(s, "| change | from | to | requests | decided by |");
        let _ = writeln!(s, "|---|---|---|---|---|");
        let mut shown = 0;
        for g in gs.iter().take(ROWS) {
            let c = g.first;
            let row = format!(
                "| **{}**{} | {} | `{}:{}` | `{}` | {} |\n",
                c.change.as_str(),
                c.note.map(|n| format!(" ({n})")).unwrap_or_default(),
                plain(&callers(&g.from)),
                md(&c.to),
                c.port,
                md(&c.requests),
                plain(&deciders(if c.change.opens() {
                    &c.after
                } else {
                    &c.before
                }))
            );
            if s.len() + row.len() > BUDGET {
                break;
            }
            s.push_str(&row);
            shown += 1;
        }
        if shown < gs.len() {
            let rest: usize = gs[shown..].iter().map(|g| g.from.len()).sum();
            let _ = writeln!(
                s,
                "\n…and {} more edge change{} ({} caller × port pairs): run `meshguard diff --format json` for all of them.",
                gs.len() - shown,
                if gs.len() - shown == 1 { "" } else { "s" },
                rest
            );
        }
        let mut w = String::from("\n<details><summary>Witnesses: one request per change that HEAD decides differently from BASE</summary>\n\n```sh\n");
        for g in gs.iter().take(shown) {
            let line = format!(
                "# {} {} → {}:{} (HEAD: {})\n{}\n",
                g.first.change.as_str(),
                g.from[0],
                g.first.to,
                g.first.port,
                g.first.witness.head,
                command(g.first)
            );
            if s.len() + w.len() + line.len() > BUDGET {
                break;
            }
            w.push_str(&line);
        }
        w.push_str("```\n</details>\n");
        s.push_str(&w);
    }
    if !d.mtls.is_empty() {
        let _ = writeln!(s, "\n**Effective mTLS**\n");
        for m in d.mtls.iter().take(ROWS) {
            let _ = writeln!(
                s,
                "- `{}:{}` {} → {}{}",
                md(&m.workload),
                m.port,
                m.from,
                m.to,
                if m.opens_plaintext {
                    " — **accepts plaintext now**"
                } else {
                    ""
                }
            );
        }
        if d.mtls.len() > ROWS {
            let _ = writeln!(s, "- …and {} more", d.mtls.len() - ROWS);
        }
    }
    if !d.findings.new.is_empty() || !d.findings.fixed.is_empty() || !d.findings.excepted.is_empty()
    {
        let _ = writeln!(s, "\n**Findings of `meshguard check`**\n");
        let mut new: Vec<&FindingChange> = d.findings.new.iter().collect();
        new.sort_by_key(|f| f.action != "deny");
        for f in new.iter().take(ROWS) {
            let line = format!("- new: `{}`\n", md(&finding_line(f)));
            if s.len() + line.len() > BUDGET {
                break;
            }
            s.push_str(&line);
        }
        if d.findings.new.len() > ROWS {
            let _ = writeln!(s, "- …and {} more new", d.findings.new.len() - ROWS);
        }
        let _ = writeln!(s, "- fixed: {}", d.findings.fixed.len());
        // Every exception the change adds is a decision a reviewer signs off: listed whole
        // (within the budget), not counted.
        for e in &d.findings.excepted {
            let line = format!("- excepted: `{}`\n", md(&excepted_line(e)));
            if s.len() + line.len() > BUDGET {
                let _ = writeln!(s, "- …and more excepted");
                break;
            }
            s.push_str(&line);
        }
    }
    s
}
