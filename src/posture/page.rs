//! The page: one HTML file with everything inline, from templates compiled into the binary
//! (`page.html`, `page.css`, `page.js`; no build toolchain, no network fetch, works from
//! `file://`).
//!
//! The header, the counts and one row per namespace are plain HTML, so the page's frame reads
//! (and prints) without the script. Everything else travels as one JSON document ([`Data`]),
//! gzip-compressed and base64-encoded in a `<script type="application/octet-stream">`
//! element: base64 has no `<`, `&` or quote, so no object name or message can break out of
//! it. The script inflates it with the browser's `DecompressionStream` and renders lazily:
//! a namespace's workloads when it unfolds, one reachability matrix at a time, one page of
//! findings at a time. Text the HTML carries directly goes through [`escape`].

use super::model::{Data, NamespaceRow};
use crate::engine::Engine;
use crate::finding::Action;
use crate::inventory::Inventory;
use crate::mesh::MeshSummary;
use crate::report::Report;
use base64::Engine as _;
use std::fmt::Write as _;
use std::io::Write as _;

const TEMPLATE: &str = include_str!("page.html");
const CSS: &str = include_str!("page.css");
const JS: &str = include_str!("page.js");

/// `id` of the element that carries the data.
pub const DATA_ID: &str = "posture-data";

/// Namespaces per page of the grid (the others are in the document, hidden: no layout).
pub(crate) const NAMESPACE_PAGE: usize = 50;

/// One fact of the mesh context in the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeshFact {
    pub label: String,
    pub value: String,
    /// Where the value came from.
    pub source: String,
}

impl MeshFact {
    fn new(label: &str, value: impl Into<String>, source: &str) -> MeshFact {
        MeshFact {
            label: label.to_owned(),
            value: value.into(),
            source: source.to_owned(),
        }
    }

    /// The mesh as installed ([`crate::mesh::MeshContext::summary`]), each value with its
    /// origin.
    pub(crate) fn from_summary(s: &MeshSummary) -> Vec<MeshFact> {
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(a) if a.is_empty() => "none".to_owned(),
            serde_json::Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        };
        let mut out = vec![
            MeshFact::new(
                "Istio namespace",
                text(&s.istio_namespace.value),
                &s.istio_namespace.source,
            ),
            MeshFact::new(
                "root namespace",
                text(&s.root_namespace.value),
                &s.root_namespace.source,
            ),
            MeshFact::new(
                "trust domain",
                text(&s.trust_domain.value),
                &s.trust_domain.source,
            ),
            MeshFact::new(
                "trust domain aliases",
                text(&s.trust_domain_aliases.value),
                &s.trust_domain_aliases.source,
            ),
            MeshFact::new(
                "auto mTLS",
                text(&s.enable_auto_mtls.value),
                &s.enable_auto_mtls.source,
            ),
        ];
        for r in &s.revisions {
            let mut value = format!("policy {}", r.policy);
            if let Some(image) = &r.proxy_image {
                let _ = write!(value, ", proxy {image}");
            }
            if !r.webhooks.is_empty() {
                let _ = write!(value, ", webhooks {}", r.webhooks.join(", "));
            }
            out.push(MeshFact::new(
                &format!("revision {}", r.name),
                value,
                &r.config,
            ));
        }
        for (tag, rev) in &s.tags {
            out.push(MeshFact::new(
                &format!("tag {tag}"),
                format!("→ revision {rev}"),
                "revision tag webhook",
            ));
        }
        if s.injectors == "assumed-default" {
            out.push(MeshFact::new(
                "injectors",
                "none visible: Istio's default injector assumed",
                "default",
            ));
        }
        let a = &s.ambient;
        let mut capture = if a.enabled.value == serde_json::Value::Bool(true) {
            "on".to_owned()
        } else {
            "off".to_owned()
        };
        if a.state == "assumed-default" {
            capture
                .push_str(" (no ztunnel or istio-cni visible: Istio's ambient defaults assumed)");
        } else {
            for (what, list) in [("ztunnel", &a.ztunnel), ("istio-cni", &a.cni)] {
                if !list.is_empty() {
                    let _ = write!(capture, ", {what} {}", list.join(", "));
                }
            }
        }
        out.push(MeshFact::new("ambient capture", capture, &a.enabled.source));
        out.push(MeshFact::new(
            "ambient excluded namespaces",
            text(&a.exclude_namespaces.value),
            &a.exclude_namespaces.source,
        ));
        out
    }
}

/// The header's facts about the run.
#[derive(Clone, Debug)]
pub struct Meta {
    pub version: &'static str,
    /// RFC 3339, UTC.
    pub generated: String,
    /// What was read, and as which command.
    pub input: String,
    pub mesh: Vec<MeshFact>,
    /// Remarks (partial input, absent CRDs) and unreadable documents.
    pub notes: Vec<String>,
    /// The "Rollout and exceptions" section (`policy_ops`), HTML.
    pub policy_ops: String,
}

impl Meta {
    pub fn new(
        engine: &Engine,
        report: &Report,
        input: String,
        policy_source: &str,
        generated: String,
    ) -> Meta {
        let mut notes = report.notes.clone();
        notes.extend(report.errors.iter().map(|e| format!("unreadable: {e}")));
        if !report.skipped.is_empty() {
            let kinds: Vec<String> = report
                .skipped
                .iter()
                .map(|(k, n)| format!("{k} ×{n}"))
                .collect();
            notes.push(format!(
                "not checked (kinds meshguard has no rules for): {}",
                kinds.join(", ")
            ));
        }
        Meta {
            version: env!("CARGO_PKG_VERSION"),
            generated,
            input,
            mesh: {
                let mut facts = MeshFact::from_summary(&engine.mesh().summary());
                facts.push(MeshFact::new("meshguard policy", policy_source, "--config"));
                facts
            },
            notes,
            policy_ops: String::new(),
        }
    }
}

/// Escape text for HTML content and double- or single-quoted attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The data document: JSON, gzip, base64.
pub(crate) fn encode_data(data: &Data<'_>) -> String {
    // Serialised whole, then compressed in one write: flate2 is slow on serde's many small
    // writes. Writing into memory cannot fail; serialising our own types cannot either.
    let json = serde_json::to_vec(data).unwrap_or_default();
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(json.len() / 8),
        flate2::Compression::new(6),
    );
    let _ = gz.write_all(&json);
    let bytes = gz.finish().unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Render the page.
pub fn render(meta: &Meta, data: &Data<'_>, report: &Report, inventory: &Inventory) -> String {
    let mut grid = String::with_capacity(data.ns.len() * 600);
    for (i, ns) in data.ns.iter().enumerate() {
        namespace_row(&mut grid, i, ns, data);
    }
    let encoded = encode_data(data);
    let header = header(meta, data, report, inventory);
    fill(
        TEMPLATE,
        &[
            ("CSS", CSS),
            ("HEADER", &header),
            ("GRID", &grid),
            ("DATA_ID", DATA_ID),
            ("NS_PAGE", &NAMESPACE_PAGE.to_string()),
            ("DATA", &encoded),
            ("POLICY_OPS", &meta.policy_ops),
            ("JS", JS),
        ],
    )
}

/// Replace each `{{KEY}}` of the template (only the template's own markers: inserted values
/// are never scanned again).
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let extra: usize = values.iter().map(|(_, v)| v.len()).sum();
    let mut out = String::with_capacity(template.len() + extra);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let key = &after[..end];
                match values.iter().find(|(k, _)| *k == key) {
                    Some((_, v)) => out.push_str(v),
                    None => {
                        out.push_str("{{");
                        out.push_str(key);
                        out.push_str("}}");
                    }
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn count(out: &mut String, n: usize, class: &str, label: &str) {
    let _ = write!(
        out,
        r#"<span class="count c-{class}" data-count="{class}"><b>{n}</b> {label}</span>"#
    );
}

fn header(meta: &Meta, data: &Data<'_>, report: &Report, inventory: &Inventory) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<p class="sub">meshguard {} · generated {} · {}</p>"#,
        escape(meta.version),
        escape(&meta.generated),
        escape(&meta.input)
    );
    h.push_str(r#"<div class="counts" id="counts">"#);
    count(&mut h, data.ns.len(), "namespaces", "namespaces");
    count(&mut h, data.wl.len(), "workloads", "workloads");
    count(&mut h, inventory.len(), "objects", "objects");
    count(&mut h, report.findings.len(), "findings", "findings:");
    for a in [Action::Deny, Action::Warn, Action::Audit] {
        count(&mut h, report.count(a), a.as_str(), a.as_str());
    }
    h.push_str("</div>");
    h.push_str(r#"<table class="facts" id="mesh-facts"><caption>Mesh context</caption><tbody>"#);
    for f in &meta.mesh {
        let _ = write!(
            h,
            r#"<tr><th scope="row">{}</th><td>{}</td><td class="src">{}</td></tr>"#,
            escape(&f.label),
            escape(&f.value),
            escape(&f.source)
        );
    }
    for (what, value) in &data.gateways {
        let _ = write!(
            h,
            r#"<tr><th scope="row">{}</th><td>{}</td><td class="src">Gateway</td></tr>"#,
            escape(what),
            escape(value)
        );
    }
    let mesh_dd = match data.mdd {
        Some(p) => format!("yes: {}/{} (allow-nothing)", data.pol[p].ns, data.pol[p].n),
        None => "no allow-nothing AuthorizationPolicy in the root namespace".to_owned(),
    };
    let _ = write!(
        h,
        r#"<tr><th scope="row">mesh-wide mTLS</th><td>{}</td><td class="src">PeerAuthentication</td></tr><tr><th scope="row">mesh-wide default deny</th><td>{}</td><td class="src">AuthorizationPolicy</td></tr>"#,
        escape(&data.mesh_mtls),
        escape(&mesh_dd)
    );
    h.push_str("</tbody></table>");
    if !meta.notes.is_empty() {
        h.push_str(r#"<ul class="notes">"#);
        for n in &meta.notes {
            let _ = write!(h, "<li>{}</li>", escape(n));
        }
        h.push_str("</ul>");
    }
    h
}

/// Mode chip counts of a namespace row.
const MODES: [(&str, &str); 3] = [
    ("strict", "STRICT"),
    ("permissive", "PERMISSIVE"),
    ("disable", "DISABLE"),
];

fn namespace_row(out: &mut String, i: usize, ns: &NamespaceRow<'_>, data: &Data<'_>) {
    let name = escape(ns.n);
    let _ = write!(
        out,
        r##"<tbody class="ns" id="ns-{i}" data-i="{i}" data-ns="{name}"{}><tr class="nsrow"><th scope="row" class="name"><button type="button" class="fold" aria-expanded="false" aria-controls="ns-{i}" title="show the workloads"{}><span class="sh" aria-hidden="true"></span></button> <span class="nsname">{name}</span>"##,
        if i >= NAMESPACE_PAGE { " hidden" } else { "" },
        if ns.w.is_empty() { " disabled" } else { "" }
    );
    if ns.ex {
        out.push_str(
            r#" <span class="tag exempt" title="meshguard exempts this namespace">exempt</span>"#,
        );
    }
    let _ = write!(
        out,
        r#" <span class="muted">{} workload{}</span></th>"#,
        ns.w.len(),
        if ns.w.len() == 1 { "" } else { "s" }
    );
    let _ = write!(
        out,
        r#"<td><span class="dp dp-{}" title="{}">{}</span></td>"#,
        ns.inj,
        escape(&ns.injl),
        ns.inj
    );
    out.push_str("<td class=\"modes\">");
    if ns.m.iter().all(|n| *n == 0) {
        out.push_str(r#"<span class="muted">no ports</span>"#);
    }
    for (k, (class, label)) in MODES.iter().enumerate() {
        if ns.m[k] > 0 {
            let _ = write!(
                out,
                r##"<span class="m m-{class}" data-mode="{label}"><span class="sh" aria-hidden="true"></span>{} {label}</span> "##,
                ns.m[k]
            );
        }
    }
    out.push_str("</td>");
    let dd = match (ns.dd, data.mdd) {
        (Some(p), _) => format!(
            r#"<span class="dd dd-yes" data-pol="{p}">deny-all: {}</span>"#,
            escape(&data.pol[p].n)
        ),
        (None, Some(p)) => format!(
            r#"<span class="dd dd-yes" data-pol="{p}">mesh-wide: {}/{}</span>"#,
            escape(&data.pol[p].ns),
            escape(&data.pol[p].n)
        ),
        (None, None) => r#"<span class="dd dd-no">none</span>"#.to_owned(),
    };
    let _ = write!(out, "<td>{dd}</td>");
    let own =
        ns.w.iter()
            .filter(|&&w| !data.wl[w].sai && data.wl[w].sa != "default")
            .count();
    let default = ns.w.len() - own;
    let _ = write!(out, r#"<td class="sa">"#);
    if !ns.w.is_empty() {
        let _ = write!(out, "{own} own");
        if default > 0 {
            let _ = write!(out, r#", <span class="tag warn">{default} default</span>"#);
        }
    }
    out.push_str("</td><td class=\"fc\">");
    findings_cell(out, ns.f, &format!(r#"data-fns="{i}""#));
    out.push_str("</td></tr></tbody>");
}

/// Deny / warn / audit counts as buttons that filter the findings table.
fn findings_cell(out: &mut String, f: [usize; 3], attr: &str) {
    if f.iter().all(|n| *n == 0) {
        out.push_str(r#"<span class="muted">none</span>"#);
        return;
    }
    for (k, a) in ["deny", "warn", "audit"].iter().enumerate() {
        if f[k] > 0 {
            let _ = write!(
                out,
                r#"<button type="button" class="fa fa-{a}" {attr} data-fa="{a}" title="show these findings">{} {a}</button> "#,
                f[k]
            );
        }
    }
}

/// Decode a page's data document (tests and tools): base64, gunzip, JSON.
pub fn decode_data(encoded: &str) -> Result<serde_json::Value, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| e.to_string())?;
    let mut json = Vec::new();
    let mut gz = flate2::write::GzDecoder::new(&mut json);
    gz.write_all(&bytes).map_err(|e| e.to_string())?;
    gz.finish().map_err(|e| e.to_string())?;
    serde_json::from_slice(&json).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::posture::model::{build, tests::run, Options};
    use serde_json::json;

    #[test]
    fn escape_covers_content_and_both_quotes() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(escape("plain-name.ns"), "plain-name.ns");
    }

    #[test]
    fn fill_never_rescans_inserted_values() {
        let out = fill("<{{A}}|{{B}}|{{C}}>", &[("A", "{{B}}"), ("B", "b")]);
        // A's value holds a marker: it stays text; an unknown marker stays as written.
        assert_eq!(out, "<{{B}}|b|{{C}}>");
        assert_eq!(fill("open {{ only", &[]), "open {{ only");
    }

    fn page_of(objects: Vec<serde_json::Value>) -> String {
        let (engine, inventory, report) = run(objects);
        let data = build(&engine, &inventory, &report, Options::default());
        let meta = Meta::new(
            &engine,
            &report,
            "manifests <x>".to_owned(),
            "built-in policy",
            "2026-01-01T00:00:00Z".to_owned(),
        );
        render(&meta, &data, &report, &inventory)
    }

    #[test]
    fn every_template_marker_is_filled_and_the_data_round_trips() {
        use crate::cross::testing::{deployment, namespace};
        let html = page_of(vec![
            namespace("prod", json!({"istio-injection": "enabled"})),
            deployment("prod", "web", json!({"app": "web"}), &[8080]),
        ]);
        assert!(!html.contains("{{"), "a marker is left");
        assert!(html.contains(r#"<tbody class="ns" id="ns-0" data-i="0" data-ns="prod">"#));
        assert!(html.contains("manifests &lt;x&gt;"), "the input is escaped");
        let start = html.find(r#"data-encoding="gzip+base64">"#).expect("data") + 28;
        let end = start + html[start..].find("</script>").expect("end");
        let data = decode_data(&html[start..end]).expect("decodes");
        assert_eq!(data["ns"][0]["n"], "prod");
        assert_eq!(data["wl"][0][1], "web");
        assert!(decode_data("not base64!").is_err());
    }

    #[test]
    fn text_from_the_input_cannot_break_out_of_the_data_element() {
        use crate::cross::testing::istio;
        // A path with markup lands in a finding's message: it travels base64-encoded.
        let hostile = "/api/</script><script>alert(1)</script>/";
        let html = page_of(vec![istio(
            "AuthorizationPolicy",
            "prod",
            "p",
            json!({"rules": [{"to": [{"operation": {"paths": [hostile]}}]}]}),
        )]);
        assert!(!html.contains("alert(1)"), "the markup carries input text");
        let start = html.find(r#"data-encoding="gzip+base64">"#).expect("data") + 28;
        let end = start + html[start..].find("</script>").expect("end");
        let data = decode_data(&html[start..end]).expect("decodes");
        assert!(
            data["fd"].to_string().contains("alert(1)"),
            "the finding quotes the path: {}",
            data["fd"]
        );
        assert_eq!(
            html.matches("<script").count(),
            2,
            "one data element, one script"
        );
    }
}
