//! PolicyReports from findings, built without I/O: one report per namespace that has findings
//! and one cluster report for cluster-scoped subjects (Namespaces), in either of the two report
//! APIs Policy Reporter and `kubectl get polr` read:
//!
//! * `wgpolicyk8s.io/v1alpha2` `PolicyReport` / `ClusterPolicyReport` (the Kubernetes Policy
//!   WG's API, written by Kyverno, Kubewarden and Trivy), or
//! * `openreports.io/v1alpha1` `Report` / `ClusterReport` (its successor).
//!
//! Each is named [`REPORT_NAME`] and labeled `app.kubernetes.io/managed-by: meshguard`, which is
//! how the writer ([`crate::report_writer`]) finds its own reports and leaves every other
//! producer's alone. A result that was already in the cluster's report keeps its first-seen
//! `timestamp` ([`first_seen`]), so an unchanged cluster builds an identical report and
//! [`Built::matches`] tells the writer to skip the write. A report whose results would not fit
//! in one object ([`RESULTS_BUDGET_BYTES`]) keeps the most severe ones, still counts all of them
//! in its `summary`, and says so in the [`TRUNCATED_ANNOTATION`].
//!
//! Both CRDs' schemas allow only `pass`, `fail`, `warn`, `error` and `skip` as a result, so
//! deny-level findings are `fail` (severity `high`), warn-level ones `warn` (`medium`) and
//! audit-level ones `warn` too, with severity `low`.

use crate::catalogue::{self, Scope};
use crate::config::exceptions::ObjectExcepted;
use crate::finding::{Action, ObjectFinding};
use crate::resource::Kind;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

/// `source` of every result (and of an openreports.io report).
pub(crate) const SOURCE: &str = "meshguard";
/// Name of meshguard's report in each namespace, and of its cluster report.
pub(crate) const REPORT_NAME: &str = "meshguard";
/// The label that marks meshguard's reports.
pub(crate) const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub(crate) const MANAGED_BY: &str = "meshguard";
/// Set on a report whose results were cut to fit in one object.
pub(crate) const TRUNCATED_ANNOTATION: &str = "meshguard.io/truncated";
/// Room for a report's results. etcd refuses a write larger than its request limit (1.5 MiB by
/// default, `--max-request-bytes`), and kube-apiserver stores a custom resource as JSON together
/// with its metadata and managedFields: 1 MiB of results leaves a third for those.
pub(crate) const RESULTS_BUDGET_BYTES: usize = 1024 * 1024;

/// Which report API to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum ReportApi {
    /// `wgpolicyk8s.io/v1alpha2` PolicyReport / ClusterPolicyReport.
    #[value(name = "wgpolicyk8s")]
    Wgpolicyk8s,
    /// `openreports.io/v1alpha1` Report / ClusterReport.
    #[value(name = "openreports")]
    OpenReports,
}

impl ReportApi {
    /// The flag value and metrics label.
    pub fn name(self) -> &'static str {
        match self {
            ReportApi::Wgpolicyk8s => "wgpolicyk8s",
            ReportApi::OpenReports => "openreports",
        }
    }

    pub fn group(self) -> &'static str {
        match self {
            ReportApi::Wgpolicyk8s => "wgpolicyk8s.io",
            ReportApi::OpenReports => "openreports.io",
        }
    }

    pub fn version(self) -> &'static str {
        match self {
            ReportApi::Wgpolicyk8s => "v1alpha2",
            ReportApi::OpenReports => "v1alpha1",
        }
    }

    /// `group/version`.
    pub fn api_version(self) -> String {
        format!("{}/{}", self.group(), self.version())
    }

    /// Kind of the report for a scope.
    pub fn kind(self, cluster: bool) -> &'static str {
        match (self, cluster) {
            (ReportApi::Wgpolicyk8s, false) => "PolicyReport",
            (ReportApi::Wgpolicyk8s, true) => "ClusterPolicyReport",
            (ReportApi::OpenReports, false) => "Report",
            (ReportApi::OpenReports, true) => "ClusterReport",
        }
    }

    /// Resource name (URL path segment) of the report for a scope.
    pub fn plural(self, cluster: bool) -> &'static str {
        match (self, cluster) {
            (ReportApi::Wgpolicyk8s, false) => "policyreports",
            (ReportApi::Wgpolicyk8s, true) => "clusterpolicyreports",
            (ReportApi::OpenReports, false) => "reports",
            (ReportApi::OpenReports, true) => "clusterreports",
        }
    }

    /// openreports.io reports carry a top-level `source`; wgpolicyk8s.io v1alpha2 has no such
    /// field (the apiserver would prune it, and the report would never compare equal).
    fn has_report_source(self) -> bool {
        self == ReportApi::OpenReports
    }
}

/// Where a report lives.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReportScope {
    /// A `PolicyReport` / `Report` in this namespace.
    Namespace(String),
    /// The `ClusterPolicyReport` / `ClusterReport`, for cluster-scoped subjects.
    Cluster,
}

impl ReportScope {
    /// The report a finding belongs to: its subject's namespace, or the cluster report for a
    /// cluster-scoped subject (a Namespace).
    pub fn of(finding: &ObjectFinding) -> ReportScope {
        let s = &finding.subject;
        let namespaced = Kind::from_name(&s.kind).is_none_or(|k| k.facts().namespaced);
        if namespaced && !s.namespace.is_empty() {
            ReportScope::Namespace(s.namespace.clone())
        } else {
            ReportScope::Cluster
        }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, ReportScope::Cluster)
    }

    pub fn namespace(&self) -> Option<&str> {
        match self {
            ReportScope::Namespace(ns) => Some(ns),
            ReportScope::Cluster => None,
        }
    }
}

impl std::fmt::Display for ReportScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReportScope::Namespace(ns) => write!(f, "namespace {ns}"),
            ReportScope::Cluster => f.write_str("cluster"),
        }
    }
}

/// A result's `timestamp` (a protobuf Timestamp, as both CRDs define it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanos: i32,
}

impl Timestamp {
    /// Whole seconds: reports need no finer first-seen times.
    pub(crate) fn from_unix(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    /// The current wall-clock time (whole seconds).
    pub fn now() -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Timestamp::from_unix(i64::try_from(secs).unwrap_or(i64::MAX))
    }
}

/// One object a result is about (`resources[]`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// One entry of `results[]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportResult {
    pub source: String,
    /// The rule id.
    pub policy: String,
    /// The rule id again: each meshguard check is a policy of one rule.
    pub rule: String,
    /// The rule's kind family ([`category`]).
    pub category: String,
    /// `fail` or `warn`.
    pub result: String,
    /// `high`, `medium` or `low`.
    pub severity: String,
    /// Field path, what is wrong, and the fix.
    pub message: String,
    pub resources: Vec<ResourceRef>,
    /// `fieldPath` and `action` (deny, warn, audit).
    pub properties: BTreeMap<String, String>,
    /// When meshguard first reported this result.
    pub timestamp: Timestamp,
}

/// Property keys of a result.
pub(crate) const PROP_FIELD_PATH: &str = "fieldPath";
pub(crate) const PROP_ACTION: &str = "action";

/// What identifies a result from one audit to the next: the rule, the object (by uid too, so
/// a recreated object is a new result) and the field.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResultKey {
    pub policy: String,
    pub resource: ResourceRef,
    pub(crate) field_path: String,
}

impl ReportResult {
    pub fn key(&self) -> ResultKey {
        ResultKey {
            policy: self.policy.clone(),
            resource: self.resources.first().cloned().unwrap_or(ResourceRef {
                api_version: String::new(),
                kind: String::new(),
                namespace: String::new(),
                name: String::new(),
                uid: String::new(),
            }),
            field_path: self
                .properties
                .get(PROP_FIELD_PATH)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// 0 for `high`, 1 for `medium`, 2 for anything else: the truncation order.
    fn severity_rank(&self) -> u8 {
        match self.severity.as_str() {
            "critical" | "high" => 0,
            "medium" => 1,
            _ => 2,
        }
    }
}

/// `summary`: results counted by outcome (before any truncation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub pass: u64,
    pub fail: u64,
    pub warn: u64,
    pub error: u64,
    pub skip: u64,
}

/// `result` and `severity` of a finding's action.
pub fn outcome(action: Action) -> (&'static str, &'static str) {
    match action {
        Action::Deny => ("fail", "high"),
        Action::Warn => ("warn", "medium"),
        // The schemas have no informational result: audit-level findings are low-severity
        // warnings. (`off` findings are never produced.)
        Action::Audit | Action::Off => ("warn", "low"),
    }
}

/// The kind family of a rule, for `category`: the kind it checks (`PeerAuthentication`,
/// `Namespace`, `Service`, ...), `Workloads` for the pod-template rules, `Istio` for the checks
/// over all four Istio kinds. A cross-resource check takes the family of the admission rules
/// that share its id prefix (`ap-no-default-deny` → `AuthorizationPolicy`), else
/// `Cross-resource`.
pub fn category(rule: &str) -> String {
    static FAMILIES: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    let families = FAMILIES.get_or_init(|| {
        let checks = catalogue::checks();
        let mut by_id: HashMap<&'static str, String> = HashMap::new();
        let mut by_prefix: HashMap<&'static str, String> = HashMap::new();
        for c in checks.iter().filter(|c| c.scope == Scope::Admission) {
            let kinds: Vec<Option<Kind>> = c.kinds.iter().map(|k| Kind::from_name(k)).collect();
            let family = if kinds.iter().all(|k| k.is_some_and(Kind::is_workload)) {
                "Workloads".to_owned()
            } else if c.kinds.len() == 1 {
                c.kinds[0].to_owned()
            } else {
                "Istio".to_owned()
            };
            by_prefix
                .entry(prefix(c.id))
                .or_insert_with(|| family.clone());
            by_id.insert(c.id, family);
        }
        for c in checks.iter().filter(|c| c.scope == Scope::CrossResource) {
            let family = by_prefix
                .get(prefix(c.id))
                .cloned()
                .unwrap_or_else(|| "Cross-resource".to_owned());
            by_id.insert(c.id, family);
        }
        by_id
    });
    families
        .get(rule)
        .cloned()
        .unwrap_or_else(|| "meshguard".to_owned())
}

fn prefix(id: &str) -> &str {
    id.split_once('-').map_or(id, |(p, _)| p)
}

/// The report result of one finding, first seen at `timestamp`.
pub(crate) fn result_of(f: &ObjectFinding, timestamp: Timestamp) -> ReportResult {
    let (result, severity) = outcome(f.finding.action);
    let s = &f.subject;
    let v = &f.finding.violation;
    let mut properties = BTreeMap::new();
    properties.insert(PROP_FIELD_PATH.to_owned(), v.path.clone());
    properties.insert(PROP_ACTION.to_owned(), f.finding.action.as_str().to_owned());
    let namespaced = Kind::from_name(&s.kind).is_none_or(|k| k.facts().namespaced);
    ReportResult {
        source: SOURCE.to_owned(),
        policy: f.finding.rule.to_owned(),
        rule: f.finding.rule.to_owned(),
        category: category(f.finding.rule),
        result: result.to_owned(),
        severity: severity.to_owned(),
        message: format!("{}: {}. Fix: {}", v.path, v.message, v.fix),
        resources: vec![ResourceRef {
            api_version: s.api_version.clone(),
            kind: s.kind.clone(),
            namespace: if namespaced {
                s.namespace.clone()
            } else {
                String::new()
            },
            name: s.name.clone(),
            uid: s.uid.clone(),
        }],
        properties,
        timestamp,
    }
}

/// First-seen timestamps of the results of a report already in the cluster. Entries this
/// version cannot read are skipped (they just get a new timestamp).
pub(crate) fn first_seen(existing: &Value) -> HashMap<ResultKey, Timestamp> {
    existing
        .get("results")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| serde_json::from_value::<ReportResult>(r.clone()).ok())
        .map(|r| (r.key(), r.timestamp))
        .collect()
}

/// Findings grouped into reports.
pub(crate) fn group_by_scope(
    findings: &[ObjectFinding],
) -> BTreeMap<ReportScope, Vec<&ObjectFinding>> {
    let mut out: BTreeMap<ReportScope, Vec<&ObjectFinding>> = BTreeMap::new();
    for f in findings {
        out.entry(ReportScope::of(f)).or_default().push(f);
    }
    out
}

/// One report as meshguard wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Built {
    pub scope: ReportScope,
    /// Sorted by resource, rule and field; at most [`RESULTS_BUDGET_BYTES`] of them.
    pub results: Vec<ReportResult>,
    /// Counts every result, including those truncation left out.
    pub summary: Summary,
    /// Results before truncation.
    pub total: usize,
}

impl Built {
    pub fn truncated(&self) -> bool {
        self.results.len() < self.total
    }

    /// The annotation value of a truncated report.
    pub(crate) fn truncation_note(&self) -> Option<String> {
        self.truncated().then(|| {
            format!(
                "{} of {} results kept (the most severe first; summary counts all {}): the report must fit in one object",
                self.results.len(),
                self.total,
                self.total
            )
        })
    }

    /// The whole object, for a create.
    pub fn object(&self, api: ReportApi) -> Value {
        let mut metadata = json!({
            "name": REPORT_NAME,
            "labels": { MANAGED_BY_LABEL: MANAGED_BY },
        });
        if let Some(ns) = self.scope.namespace() {
            metadata["namespace"] = json!(ns);
        }
        let skeleton = json!({
            "apiVersion": api.api_version(),
            "kind": api.kind(self.scope.is_cluster()),
            "metadata": metadata,
        });
        self.apply_to(api, &skeleton)
    }

    /// `existing` with meshguard's content in place: results, summary, source, the managed-by
    /// label and the truncation annotation. Everything else (other labels and annotations,
    /// resourceVersion for the optimistic-concurrency check) is kept.
    pub(crate) fn apply_to(&self, api: ReportApi, existing: &Value) -> Value {
        let mut obj = existing.clone();
        if !obj.is_object() {
            obj = json!({});
        }
        obj["apiVersion"] = json!(api.api_version());
        obj["kind"] = json!(api.kind(self.scope.is_cluster()));
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        let meta = &mut obj["metadata"];
        if !meta["labels"].is_object() {
            meta["labels"] = json!({});
        }
        meta["labels"][MANAGED_BY_LABEL] = json!(MANAGED_BY);
        match self.truncation_note() {
            Some(note) => {
                if !meta["annotations"].is_object() {
                    meta["annotations"] = json!({});
                }
                meta["annotations"][TRUNCATED_ANNOTATION] = json!(note);
            }
            None => {
                if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                    a.remove(TRUNCATED_ANNOTATION);
                }
            }
        }
        obj["results"] = serde_json::to_value(&self.results).unwrap_or_else(|_| json!([]));
        obj["summary"] = serde_json::to_value(self.summary).unwrap_or_else(|_| json!({}));
        if api.has_report_source() {
            obj["source"] = json!(SOURCE);
        }
        obj
    }

    /// Whether `existing` already says what this report says (then nothing is written).
    pub fn matches(&self, api: ReportApi, existing: &Value) -> bool {
        self.apply_to(api, existing) == *existing
    }
}

/// Build the report of one scope from its findings. Results already in the cluster's report
/// (`seen`, from [`first_seen`]) keep their timestamp; new ones get `now`. Results beyond
/// `budget` bytes are left out: the most severe are taken first, and a result too big for what
/// is left is skipped, not the end of the list (later, smaller ones still fit).
pub fn build(
    scope: ReportScope,
    findings: &[&ObjectFinding],
    now: Timestamp,
    seen: &HashMap<ResultKey, Timestamp>,
    budget: usize,
) -> Built {
    build_with_excepted(scope, findings, &[], now, seen, budget)
}

/// [`build`] with the scope's excepted findings as `skip` results ([`skipped_result_of`]).
pub(crate) fn build_with_excepted(
    scope: ReportScope,
    findings: &[&ObjectFinding],
    excepted: &[&ObjectExcepted],
    now: Timestamp,
    seen: &HashMap<ResultKey, Timestamp>,
    budget: usize,
) -> Built {
    let mut all: BTreeMap<ResultKey, ReportResult> = BTreeMap::new();
    let results = findings
        .iter()
        .map(|f| result_of(f, now))
        .chain(excepted.iter().map(|e| skipped_result_of(e, now)));
    for mut r in results {
        let key = r.key();
        if let Some(t) = seen.get(&key) {
            r.timestamp = *t;
        }
        // The same rule on the same field of the same object once (analysis already dedupes).
        all.entry(key).or_insert(r);
    }
    let mut summary = Summary::default();
    for r in all.values() {
        match r.result.as_str() {
            "fail" => summary.fail += 1,
            "warn" => summary.warn += 1,
            "pass" => summary.pass += 1,
            "error" => summary.error += 1,
            _ => summary.skip += 1,
        }
    }
    let total = all.len();
    let mut by_severity: Vec<(ResultKey, ReportResult)> = all.into_iter().collect();
    // Stable: within a severity, key order.
    by_severity.sort_by_key(|(_, r)| r.severity_rank());
    let mut kept: Vec<(ResultKey, ReportResult)> = Vec::with_capacity(by_severity.len());
    let mut used = 0usize;
    for (key, r) in by_severity {
        let size = serde_json::to_vec(&r)
            .map(|v| v.len())
            .unwrap_or(usize::MAX)
            + 1;
        if used.saturating_add(size) > budget {
            // Too big for what is left; a smaller one further on may still fit.
            continue;
        }
        used += size;
        kept.push((key, r));
    }
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    Built {
        scope,
        results: kept.into_iter().map(|(_, r)| r).collect(),
        summary,
        total,
    }
}

/// The `skip` result of a finding an exception covers: severity `info`, the message saying which
/// exception until when and why, and the properties `exception`, `exceptionExpires`,
/// `exceptionReason` (and `exceptionOwner`, `exceptionTicket` when set) beside `fieldPath` and
/// the `action` the finding would have had.
pub(crate) fn skipped_result_of(e: &ObjectExcepted, timestamp: Timestamp) -> ReportResult {
    let as_finding = ObjectFinding {
        subject: e.subject.clone(),
        finding: e.finding.clone(),
    };
    let mut r = result_of(&as_finding, timestamp);
    let x = &e.exception;
    r.result = "skip".to_owned();
    r.severity = "info".to_owned();
    r.message
        .push_str(&format!(" (excepted by {}, {})", x.id(), x.describe()));
    let props = &mut r.properties;
    props.insert("exception".to_owned(), x.id());
    if let Some(t) = x.expires {
        props.insert("exceptionExpires".to_owned(), t.to_string());
    }
    props.insert("exceptionReason".to_owned(), x.reason.clone());
    if let Some(o) = &x.owner {
        props.insert("exceptionOwner".to_owned(), o.clone());
    }
    if let Some(t) = &x.ticket {
        props.insert("exceptionTicket".to_owned(), t.clone());
    }
    r
}

/// Every report of a set of findings and excepted findings (see [`build_with_excepted`]).
pub(crate) fn build_all_with_excepted(
    findings: &[ObjectFinding],
    excepted: &[ObjectExcepted],
    now: Timestamp,
    existing: &dyn Fn(&ReportScope) -> Option<Value>,
    budget: usize,
) -> Vec<Built> {
    let mut scopes: BTreeMap<ReportScope, (Vec<&ObjectFinding>, Vec<&ObjectExcepted>)> =
        BTreeMap::new();
    for (scope, fs) in group_by_scope(findings) {
        scopes.entry(scope).or_default().0 = fs;
    }
    for e in excepted {
        let as_finding = ObjectFinding {
            subject: e.subject.clone(),
            finding: e.finding.clone(),
        };
        scopes
            .entry(ReportScope::of(&as_finding))
            .or_default()
            .1
            .push(e);
    }
    scopes
        .into_iter()
        .map(|(scope, (fs, es))| {
            let seen = existing(&scope).map(|e| first_seen(&e)).unwrap_or_default();
            build_with_excepted(scope, &fs, &es, now, &seen, budget)
        })
        .collect()
}

/// Every report of a set of findings (see [`build`]); `existing` gives the cluster's current
/// report of a scope, if any.
pub fn build_all(
    findings: &[ObjectFinding],
    now: Timestamp,
    existing: &dyn Fn(&ReportScope) -> Option<Value>,
    budget: usize,
) -> Vec<Built> {
    group_by_scope(findings)
        .into_iter()
        .map(|(scope, fs)| {
            let seen = existing(&scope).map(|e| first_seen(&e)).unwrap_or_default();
            build(scope, &fs, now, &seen, budget)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::{Finding, Subject, Violation};

    fn finding(
        kind: &str,
        ns: &str,
        name: &str,
        rule: &'static str,
        action: Action,
    ) -> ObjectFinding {
        let api_version = match kind {
            "PeerAuthentication" | "AuthorizationPolicy" => "security.istio.io/v1",
            "Deployment" => "apps/v1",
            _ => "v1",
        };
        ObjectFinding {
            subject: Subject {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
                namespace: ns.to_owned(),
                name: name.to_owned(),
                uid: format!("uid-{ns}-{name}"),
                file: None,
                line: None,
            },
            finding: Finding {
                rule,
                action,
                violation: Violation::new(
                    "spec.mtls.mode",
                    "PERMISSIVE accepts plaintext",
                    "set mode: STRICT",
                ),
            },
        }
    }

    fn sample() -> Vec<ObjectFinding> {
        vec![
            finding(
                "PeerAuthentication",
                "prod",
                "default",
                "pa-permissive-mtls",
                Action::Deny,
            ),
            finding("Service", "prod", "web", "svc-port-protocol", Action::Warn),
            finding(
                "AuthorizationPolicy",
                "dev",
                "open",
                "ap-remote-ip-untrusted",
                Action::Audit,
            ),
            finding(
                "Namespace",
                "legacy",
                "legacy",
                "ns-injection-missing",
                Action::Deny,
            ),
        ]
    }

    const T0: Timestamp = Timestamp {
        seconds: 1_700_000_000,
        nanos: 0,
    };

    fn no_existing(_: &ReportScope) -> Option<Value> {
        None
    }

    #[test]
    fn one_report_per_namespace_and_one_for_the_cluster() {
        let reports = build_all(&sample(), T0, &no_existing, RESULTS_BUDGET_BYTES);
        let scopes: Vec<String> = reports.iter().map(|r| r.scope.to_string()).collect();
        assert_eq!(scopes, ["namespace dev", "namespace prod", "cluster"]);
        let prod = &reports[1];
        assert_eq!(
            prod.summary,
            Summary {
                fail: 1,
                warn: 1,
                ..Summary::default()
            }
        );
        let obj = prod.object(ReportApi::Wgpolicyk8s);
        assert_eq!(obj["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(obj["kind"], "PolicyReport");
        assert_eq!(obj["metadata"]["name"], "meshguard");
        assert_eq!(obj["metadata"]["namespace"], "prod");
        assert_eq!(obj["metadata"]["labels"][MANAGED_BY_LABEL], "meshguard");
        assert!(
            obj.get("source").is_none(),
            "v1alpha2 has no report-level source"
        );
        let cluster = reports[2].object(ReportApi::OpenReports);
        assert_eq!(cluster["apiVersion"], "openreports.io/v1alpha1");
        assert_eq!(cluster["kind"], "ClusterReport");
        assert_eq!(cluster["source"], "meshguard");
        assert!(cluster["metadata"].get("namespace").is_none());
        // A Namespace is cluster-scoped: its reference carries no namespace.
        assert_eq!(
            cluster["results"][0]["resources"][0],
            json!({"apiVersion": "v1", "kind": "Namespace", "name": "legacy", "uid": "uid-legacy-legacy"})
        );
    }

    #[test]
    fn results_carry_rule_outcome_severity_message_resources_and_properties() {
        let reports = build_all(&sample(), T0, &no_existing, RESULTS_BUDGET_BYTES);
        let prod = serde_json::to_value(&reports[1].results).expect("json");
        assert_eq!(
            prod[0],
            json!({
                "source": "meshguard",
                "policy": "pa-permissive-mtls",
                "rule": "pa-permissive-mtls",
                "category": "PeerAuthentication",
                "result": "fail",
                "severity": "high",
                "message": "spec.mtls.mode: PERMISSIVE accepts plaintext. Fix: set mode: STRICT",
                "resources": [{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                               "namespace": "prod", "name": "default", "uid": "uid-prod-default"}],
                "properties": {"fieldPath": "spec.mtls.mode", "action": "deny"},
                "timestamp": {"seconds": 1_700_000_000, "nanos": 0},
            })
        );
        assert_eq!(prod[1]["result"], "warn");
        assert_eq!(prod[1]["severity"], "medium");
        assert_eq!(prod[1]["category"], "Service");
        let dev = &reports[0].results[0];
        assert_eq!(
            (dev.result.as_str(), dev.severity.as_str()),
            ("warn", "low")
        );
        assert_eq!(dev.properties[PROP_ACTION], "audit");
    }

    #[test]
    fn categories_are_kind_families() {
        assert_eq!(category("pa-permissive-mtls"), "PeerAuthentication");
        assert_eq!(category("wl-default-service-account"), "Workloads");
        assert_eq!(category("wl-missing-sidecar"), "Workloads");
        assert_eq!(category("istio-invalid-enum"), "Istio");
        assert_eq!(category("ns-injection-missing"), "Namespace");
        assert_eq!(category("ap-no-default-deny"), "AuthorizationPolicy");
        assert_eq!(category("ra-unenforced"), "RequestAuthentication");
        assert_eq!(category("mtls-not-strict"), "Cross-resource");
        // Every check has a family.
        for c in catalogue::checks() {
            assert!(
                !category(c.id).is_empty() && category(c.id) != "meshguard",
                "{}",
                c.id
            );
        }
    }

    #[test]
    fn a_result_that_persists_keeps_its_first_seen_timestamp() {
        let first = build_all(&sample(), T0, &no_existing, RESULTS_BUDGET_BYTES);
        let stored: HashMap<ReportScope, Value> = first
            .iter()
            .map(|b| (b.scope.clone(), b.object(ReportApi::Wgpolicyk8s)))
            .collect();
        let later = Timestamp::from_unix(T0.seconds + 600);
        // One finding gone, one new one.
        let mut findings = sample();
        findings.retain(|f| f.finding.rule != "svc-port-protocol");
        findings.push(finding(
            "Service",
            "prod",
            "api",
            "svc-port-protocol",
            Action::Warn,
        ));
        let lookup = |s: &ReportScope| stored.get(s).cloned();
        let second = build_all(&findings, later, &lookup, RESULTS_BUDGET_BYTES);
        let prod = &second[1];
        let times: Vec<(&str, i64)> = prod
            .results
            .iter()
            .map(|r| (r.resources[0].name.as_str(), r.timestamp.seconds))
            .collect();
        assert_eq!(times, [("default", T0.seconds), ("api", later.seconds)]);
        // The unchanged namespaces build exactly what is stored: nothing to write.
        assert!(second[0].matches(ReportApi::Wgpolicyk8s, &stored[&second[0].scope]));
        assert!(second[2].matches(ReportApi::Wgpolicyk8s, &stored[&ReportScope::Cluster]));
        assert!(!prod.matches(ReportApi::Wgpolicyk8s, &stored[&prod.scope]));
    }

    #[test]
    fn a_recreated_object_is_a_new_result() {
        let first = build_all(&sample(), T0, &no_existing, RESULTS_BUDGET_BYTES);
        let stored = first[1].object(ReportApi::Wgpolicyk8s);
        let mut findings = sample();
        findings[0].subject.uid = "uid-new".into();
        let later = Timestamp::from_unix(T0.seconds + 60);
        let seen = first_seen(&stored);
        let fs: Vec<&ObjectFinding> = findings[..2].iter().collect();
        let b = build(
            ReportScope::Namespace("prod".into()),
            &fs,
            later,
            &seen,
            RESULTS_BUDGET_BYTES,
        );
        assert_eq!(b.results[0].timestamp, later);
        assert_eq!(b.results[1].timestamp, T0);
    }

    #[test]
    fn matching_ignores_what_others_own_and_sees_what_meshguard_owns() {
        let b = &build_all(&sample(), T0, &no_existing, RESULTS_BUDGET_BYTES)[1];
        let mut stored = b.object(ReportApi::Wgpolicyk8s);
        // What the apiserver and other tools add is not meshguard's business.
        stored["metadata"]["resourceVersion"] = json!("42");
        stored["metadata"]["uid"] = json!("abc");
        stored["metadata"]["labels"]["team"] = json!("platform");
        stored["metadata"]["annotations"] = json!({"note": "kept"});
        assert!(b.matches(ReportApi::Wgpolicyk8s, &stored));
        let updated = b.apply_to(ReportApi::Wgpolicyk8s, &stored);
        assert_eq!(updated["metadata"]["resourceVersion"], "42");
        assert_eq!(updated["metadata"]["labels"]["team"], "platform");
        // A changed message, summary or label is a difference.
        for (path, value) in [
            ("/results/0/message", json!("edited")),
            ("/summary/fail", json!(7)),
            (
                "/metadata/labels/app.kubernetes.io~1managed-by",
                json!("someone"),
            ),
        ] {
            let mut edited = stored.clone();
            *edited.pointer_mut(path).expect(path) = value;
            assert!(!b.matches(ReportApi::Wgpolicyk8s, &edited), "{path}");
        }
        // A stale truncation annotation is removed.
        let mut stale = stored.clone();
        stale["metadata"]["annotations"][TRUNCATED_ANNOTATION] = json!("old");
        assert!(!b.matches(ReportApi::Wgpolicyk8s, &stale));
        let fixed = b.apply_to(ReportApi::Wgpolicyk8s, &stale);
        assert_eq!(fixed["metadata"]["annotations"], json!({"note": "kept"}));
    }

    fn many(n: usize) -> Vec<ObjectFinding> {
        (0..n)
            .map(|i| {
                let (rule, action) = match i % 3 {
                    0 => ("pa-permissive-mtls", Action::Deny),
                    1 => ("svc-port-protocol", Action::Warn),
                    _ => ("ap-remote-ip-untrusted", Action::Audit),
                };
                finding("Service", "big", &format!("svc-{i:05}"), rule, action)
            })
            .collect()
    }

    #[test]
    fn a_report_over_budget_keeps_the_most_severe_and_counts_everything() {
        let findings = many(300);
        let refs: Vec<&ObjectFinding> = findings.iter().collect();
        let scope = ReportScope::Namespace("big".into());
        let whole = build(
            scope.clone(),
            &refs,
            T0,
            &HashMap::new(),
            RESULTS_BUDGET_BYTES,
        );
        assert!(!whole.truncated());
        assert_eq!(whole.truncation_note(), None);
        let budget = 40_000;
        let cut = build(scope, &refs, T0, &HashMap::new(), budget);
        assert!(cut.truncated());
        assert_eq!(cut.total, 300);
        assert_eq!(
            cut.summary,
            Summary {
                fail: 100,
                warn: 200,
                ..Summary::default()
            }
        );
        assert_eq!(cut.summary, whole.summary);
        let size = serde_json::to_vec(&cut.results).expect("json").len();
        assert!(size <= budget, "{size}");
        // Deny-level results go first: with room for fewer than 100, all kept are failures.
        assert!(cut.results.len() < 100, "{}", cut.results.len());
        assert!(cut.results.iter().all(|r| r.result == "fail"));
        let obj = cut.object(ReportApi::Wgpolicyk8s);
        let note = obj["metadata"]["annotations"][TRUNCATED_ANNOTATION]
            .as_str()
            .expect("annotation");
        assert!(
            note.starts_with(&format!("{} of 300 results kept", cut.results.len())),
            "{note}"
        );
        assert_eq!(obj["summary"]["fail"], 100);
        assert_eq!(obj["summary"]["warn"], 200);
    }

    #[test]
    fn one_oversized_result_does_not_drop_the_ones_after_it() {
        let mut findings = vec![finding(
            "Service",
            "big",
            "huge",
            "pa-permissive-mtls",
            Action::Deny,
        )];
        findings[0].finding.violation.message = "x".repeat(10_000);
        findings.extend(
            many(6)
                .into_iter()
                .filter(|f| f.finding.action != Action::Deny),
        );
        let refs: Vec<&ObjectFinding> = findings.iter().collect();
        let cut = build(
            ReportScope::Namespace("big".into()),
            &refs,
            T0,
            &HashMap::new(),
            5_000,
        );
        // The failure alone is over the budget; every warning after it still fits.
        assert_eq!(cut.total, 5);
        assert_eq!(cut.results.len(), 4, "{:?}", cut.results);
        assert!(cut.results.iter().all(|r| r.result == "warn"));
        assert_eq!(cut.summary.fail, 1);
    }

    #[test]
    fn the_default_budget_keeps_a_huge_namespace_under_the_etcd_limit() {
        let findings = many(10_000);
        let built = build_all(&findings, T0, &no_existing, RESULTS_BUDGET_BYTES);
        let obj = built[0].object(ReportApi::Wgpolicyk8s);
        let size = serde_json::to_vec(&obj).expect("json").len();
        assert!(built[0].truncated());
        assert!(size < 1024 * 1024 + 4096, "{size}");
        assert!(size > 1024 * 1024 - 4096, "the budget is used: {size}");
        assert_eq!(
            obj["summary"]["fail"].as_u64().unwrap_or(0)
                + obj["summary"]["warn"].as_u64().unwrap_or(0),
            10_000
        );
    }

    /// The generated objects validate against the CRDs' own OpenAPI schemas (copied into
    /// tests/fixtures/policy-report-crds/ from the projects that publish them).
    #[test]
    fn generated_reports_validate_against_the_crd_schemas() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/policy-report-crds");
        let cases = [
            (
                ReportApi::Wgpolicyk8s,
                false,
                "wgpolicyk8s.io_policyreports.yaml",
            ),
            (
                ReportApi::Wgpolicyk8s,
                true,
                "wgpolicyk8s.io_clusterpolicyreports.yaml",
            ),
            (ReportApi::OpenReports, false, "openreports.io_reports.yaml"),
            (
                ReportApi::OpenReports,
                true,
                "openreports.io_clusterreports.yaml",
            ),
        ];
        let findings = many(30).into_iter().chain(sample()).collect::<Vec<_>>();
        let cut = build(
            ReportScope::Namespace("big".into()),
            &findings.iter().collect::<Vec<_>>(),
            T0,
            &HashMap::new(),
            5_000,
        );
        assert!(cut.truncated());
        let reports = build_all(&findings, T0, &no_existing, RESULTS_BUDGET_BYTES);
        for (api, cluster, file) in cases {
            let text = std::fs::read_to_string(dir.join(file)).expect(file);
            let crd: Value = serde_saphyr::from_str(&text).expect(file);
            let version = crd["spec"]["versions"]
                .as_array()
                .expect("versions")
                .iter()
                .find(|v| v["name"] == api.version())
                .expect("the version meshguard writes is in the CRD");
            assert_eq!(crd["spec"]["names"]["kind"], api.kind(cluster), "{file}");
            assert_eq!(
                crd["spec"]["names"]["plural"],
                api.plural(cluster),
                "{file}"
            );
            assert_eq!(crd["spec"]["group"], api.group(), "{file}");
            assert_eq!(
                crd["spec"]["scope"],
                if cluster { "Cluster" } else { "Namespaced" }
            );
            let schema = openapi_to_json_schema(&version["schema"]["openAPIV3Schema"]);
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft4)
                .build(&schema)
                .expect("schema compiles");
            let mut objects: Vec<Value> = reports
                .iter()
                .filter(|b| b.scope.is_cluster() == cluster)
                .map(|b| b.object(api))
                .collect();
            if !cluster {
                objects.push(cut.object(api));
            }
            assert!(!objects.is_empty());
            for obj in objects {
                let errors: Vec<String> = validator
                    .iter_errors(&obj)
                    .map(|e| format!("{e} at {}", e.instance_path()))
                    .collect();
                assert!(errors.is_empty(), "{file}: {errors:#?}");
            }
            // And the validator is not vacuous: a result outside the enum is refused.
            let mut bad = reports[0].object(api);
            bad["results"][0]["result"] = json!("info");
            assert!(!validator.is_valid(&bad), "{file}");
            // ... and so is a field the schema does not have (the apiserver would prune it).
            let mut extra = reports[0].object(api);
            extra["results"][0]["fieldPath"] = json!("spec");
            assert!(!validator.is_valid(&extra), "{file}");
        }
    }

    #[test]
    fn excepted_findings_are_skip_results_naming_the_exception() {
        use crate::config::exceptions::{Exception, ObjectExcepted};
        let policy = crate::catalogue::policy_from_yaml(
            "exceptions:\n  - name: legacy\n    rules: [svc-port-protocol]\n    namespaces: [shop]\n    reason: old clients\n    owner: team-shop\n    ticket: SHOP-1\n    expires: 2026-06-30\n",
            "t",
        )
        .expect("policy");
        let exception = std::sync::Arc::new(Exception::from_spec(0, &policy.exceptions[0]));
        let f = finding("Service", "shop", "web", "svc-port-protocol", Action::Warn);
        let excepted = vec![ObjectExcepted {
            subject: f.subject.clone(),
            finding: f.finding.clone(),
            exception,
        }];
        let findings = vec![finding(
            "PeerAuthentication",
            "shop",
            "p",
            "pa-permissive-mtls",
            Action::Deny,
        )];
        let built =
            build_all_with_excepted(&findings, &excepted, T0, &no_existing, RESULTS_BUDGET_BYTES);
        assert_eq!(built.len(), 1);
        let b = &built[0];
        assert_eq!(
            b.summary,
            Summary {
                fail: 1,
                skip: 1,
                ..Summary::default()
            }
        );
        let skip = b
            .results
            .iter()
            .find(|r| r.result == "skip")
            .expect("a skip result");
        assert_eq!(skip.severity, "info");
        assert_eq!(skip.properties["exception"], "policy:legacy");
        assert_eq!(skip.properties["exceptionExpires"], "2026-06-30T00:00:00Z");
        assert_eq!(skip.properties["exceptionOwner"], "team-shop");
        assert_eq!(skip.properties[PROP_ACTION], "warn");
        assert!(
            skip.message.contains("excepted by policy:legacy"),
            "{}",
            skip.message
        );
        // Valid for every report CRD meshguard writes.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/policy-report-crds");
        for (api, file) in [
            (ReportApi::Wgpolicyk8s, "wgpolicyk8s.io_policyreports.yaml"),
            (ReportApi::OpenReports, "openreports.io_reports.yaml"),
        ] {
            let crd: Value =
                serde_saphyr::from_str(&std::fs::read_to_string(dir.join(file)).expect(file))
                    .expect(file);
            let version = crd["spec"]["versions"]
                .as_array()
                .and_then(|v| v.iter().find(|v| v["name"] == api.version()))
                .expect("version");
            let schema = openapi_to_json_schema(&version["schema"]["openAPIV3Schema"]);
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft4)
                .build(&schema)
                .expect("schema compiles");
            let obj = b.object(api);
            let errors: Vec<String> = validator.iter_errors(&obj).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{file}: {errors:#?}");
        }
    }

    /// A structural schema in JSON Schema terms: drop the Kubernetes extensions the validator
    /// does not know, close every object with `properties` (the apiserver prunes unknown
    /// fields; here they are errors).
    fn openapi_to_json_schema(s: &Value) -> Value {
        match s {
            Value::Object(m) => {
                let mut out = serde_json::Map::new();
                for (k, v) in m {
                    if k.starts_with("x-kubernetes-") || k == "description" {
                        continue;
                    }
                    let v = match k.as_str() {
                        "properties" => Value::Object(
                            v.as_object()
                                .into_iter()
                                .flatten()
                                .map(|(name, sub)| (name.clone(), openapi_to_json_schema(sub)))
                                .collect(),
                        ),
                        _ => openapi_to_json_schema(v),
                    };
                    out.insert(k.clone(), v);
                }
                if m.contains_key("properties")
                    && m.get("x-kubernetes-preserve-unknown-fields").is_none()
                {
                    out.insert("additionalProperties".into(), json!(false));
                }
                // metadata is `type: object` with no properties: anything goes.
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(openapi_to_json_schema).collect()),
            other => other.clone(),
        }
    }
}
