//! The admission front end. One screen of request flow:
//! decode → recognise → evaluate (or mutate) → decide by action → respond.

use crate::context::{ClusterSource, ClusterView, Lookup, LookupKey};
use crate::engine::{EngineHandle, Evaluation, Mutated};
use crate::finding::Action;
use crate::metrics::Metrics;
use crate::resource::{Kind, Review, ReviewObject};
use base64::Engine as _;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::field::Empty;

/// Which webhook a request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Webhook {
    Validate,
    Mutate,
}

impl Webhook {
    pub fn as_str(self) -> &'static str {
        match self {
            Webhook::Validate => "validate",
            Webhook::Mutate => "mutate",
        }
    }
}

/// What happened to one review: the `outcome` label of the metrics and the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not a kind, subresource or operation meshguard judges: passed untouched.
    Ignored,
    /// Exempt as a whole (exempt namespace, namespace teardown, object being deleted).
    Exempt,
    /// Judged and nothing found (validate), or nothing to patch (mutate).
    Allowed,
    /// Denied by deny-level findings.
    Denied,
    /// Allowed with warnings.
    Warned,
    /// Allowed; audit-level findings recorded only.
    Audited,
    /// Mutated: a patch was sent.
    Patched,
}

impl Outcome {
    /// The metric label and log value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ignored => "ignored",
            Outcome::Exempt => "exempt",
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::Warned => "warned",
            Outcome::Audited => "audited",
            Outcome::Patched => "patched",
        }
    }

    /// Findings were reported: the review gets its one info-level log line.
    pub fn reported(self) -> bool {
        matches!(self, Outcome::Denied | Outcome::Warned | Outcome::Audited)
    }
}

/// Why a request body could not be answered with an AdmissionReview (HTTP 400).
#[derive(Debug, thiserror::Error)]
pub enum BadReview {
    #[error("request body is not a valid AdmissionReview: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported AdmissionReview {0:?}: meshguard speaks admission.k8s.io/v1 only")]
    Version(String),
    #[error("AdmissionReview has no request")]
    NoRequest,
    /// A request kube-apiserver would never send: no object to judge, or an object that is not
    /// of the kind the request names.
    #[error("malformed AdmissionReview: {0}")]
    Malformed(String),
    #[error("cannot encode the response: {0}")]
    Encode(String),
}

/// Shared state of the admission server.
pub struct Admission {
    pub engine: EngineHandle,
    pub metrics: Metrics,
    pub cluster: Arc<dyn ClusterSource>,
    /// How long a cluster lookup may take before `onLookupFailure` decides.
    pub lookup_deadline: Duration,
}

/// Warnings: each at most 256 characters, all together at most 4096 (apiserver limits).
const WARNING_MAX: usize = 256;
const WARNINGS_TOTAL_MAX: usize = 4096;
/// Key of the audit annotation; the apiserver records it as `<webhook name>/violations`.
pub const AUDIT_ANNOTATION: &str = "violations";

impl Admission {
    pub fn new(
        engine: EngineHandle,
        metrics: Metrics,
        cluster: Arc<dyn ClusterSource>,
    ) -> Admission {
        Admission {
            engine,
            metrics,
            cluster,
            lookup_deadline: Duration::from_secs(2),
        }
    }

    /// Answer one AdmissionReview body. `Err` means HTTP 400 with the error as the reason.
    pub async fn handle(
        &self,
        webhook: Webhook,
        body: &[u8],
        budget: Duration,
    ) -> Result<Vec<u8>, BadReview> {
        let start = Instant::now();
        // 1. decode
        let review = decode_review(body)?;
        if review.types.api_version != "admission.k8s.io/v1"
            || review.types.kind != "AdmissionReview"
        {
            return Err(BadReview::Version(format!(
                "{}/{}",
                review.types.api_version, review.types.kind
            )));
        }
        let req: AdmissionRequest<ReviewObject> =
            review.try_into().map_err(|_| BadReview::NoRequest)?;
        // One span per review. It is debug-level so that at the default `info` level it costs
        // nothing; the summary event below carries the same fields for denied/warned/audited.
        let span = tracing::debug_span!("review", webhook = webhook.as_str(), uid = %req.uid,
            kind = %req.kind.kind, namespace = Empty, operation = ?req.operation, outcome = Empty, duration_us = Empty);
        let _entered = span.enter();
        tracing::trace!(body = %String::from_utf8_lossy(body), "request");
        let mut resp = AdmissionResponse::from(&req);

        // 2. recognise: unknown kinds, subresources and CONNECT pass untouched
        // Rule ids of the findings, for the one info-level log line of a denied/warned/audited
        // review (each finding's full text is logged at debug and sent in the response).
        let mut rules_hit = String::new();
        let (kind_label, outcome) = match recognise_checked(&req)? {
            None => ("other", Outcome::Ignored),
            // A terminating namespace is being emptied: everything in it goes, and refusing
            // (pa-weakening-delete, ap-deny-all-delete) would leave the namespace stuck
            // Terminating. Its policies protect nothing once the workloads are gone. Known by
            // the namespace controller's own identity here, or below by the namespace's state.
            Some(r) if namespace_teardown(&req) => (r.kind.as_str(), Outcome::Exempt),
            Some(r) => {
                span.record("namespace", r.namespace);
                let engine = self.engine.current();
                let mut lookups = engine.lookups(&r);
                if matches!(r.operation, Operation::Delete) && !r.namespace.is_empty() {
                    // Whether the namespace is Terminating (below) comes with its labels.
                    let key = LookupKey::NamespaceLabels(r.namespace.to_owned());
                    if !lookups.contains(&key) {
                        lookups.push(key);
                    }
                }
                if !lookups.is_empty() {
                    let deadline = self.lookup_deadline.min(budget);
                    let prepared = self.cluster.prepare(&lookups, deadline);
                    if tokio::time::timeout(deadline, prepared).await.is_err() {
                        tracing::warn!("cluster lookup timed out; onLookupFailure decides");
                    }
                }
                let view = self.cluster.view();
                // 3. evaluate, 4. decide
                let outcome = match webhook {
                    _ if delete_in_terminating_namespace(&r, view) => Outcome::Exempt,
                    Webhook::Validate => {
                        let eval = engine.evaluate(&r, view);
                        self.count_violations(r.kind, &eval);
                        if !eval.findings.is_empty() {
                            rules_hit = eval
                                .findings
                                .iter()
                                .map(|f| f.rule)
                                .collect::<Vec<_>>()
                                .join(",");
                        }
                        let (decided, outcome) = decide(resp, &eval);
                        resp = decided;
                        outcome
                    }
                    Webhook::Mutate => {
                        let mutated = engine.mutate(&r, view);
                        for m in &mutated.applied {
                            self.metrics
                                .mutations
                                .with_label_values(&[m, r.kind.as_str()])
                                .inc();
                        }
                        let (patched, outcome) = with_patch(resp, mutated)?;
                        resp = patched;
                        outcome
                    }
                };
                (r.kind.as_str(), outcome)
            }
        };

        // 5. respond
        let out = encode(resp)?;
        let elapsed = start.elapsed();
        span.record("outcome", outcome.label());
        span.record("duration_us", elapsed.as_micros() as u64);
        let op = operation_label(&req.operation);
        if outcome.reported() {
            tracing::info!(webhook = webhook.as_str(), uid = %req.uid, kind = kind_label, namespace = req.namespace.as_deref().unwrap_or(""),
                operation = op, outcome = outcome.label(), rules = %rules_hit, duration_us = elapsed.as_micros() as u64, "reviewed");
        } else {
            tracing::debug!("reviewed");
        }
        self.metrics
            .admission_requests
            .with_label_values(&[webhook.as_str(), kind_label, op, outcome.label()])
            .inc();
        self.metrics
            .admission_duration
            .with_label_values(&[webhook.as_str()])
            .observe(elapsed.as_secs_f64());
        Ok(out)
    }

    fn count_violations(&self, kind: Kind, eval: &Evaluation) {
        for f in &eval.findings {
            self.metrics
                .violations
                .with_label_values(&[f.rule, f.action.as_str(), kind.as_str()])
                .inc();
            tracing::debug!(rule = f.rule, action = f.action.as_str(), path = %f.violation.path, "{}", f.violation.message);
        }
    }
}

/// The wire shape of an incoming review, decoded without kube-core's `#[serde(flatten)]` on
/// `AdmissionReview::types`: a flattened field makes serde buffer the *whole* body into an
/// intermediate tree before decoding it again, which cost a third of a Pod review's CPU. The
/// fields are kube's own types and the result is kube's `AdmissionReview`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    request: Option<AdmissionRequest<ReviewObject>>,
}

/// Decode an `admission.k8s.io/v1` review body.
pub fn decode_review(body: &[u8]) -> Result<AdmissionReview<ReviewObject>, BadReview> {
    let env: Envelope = serde_json::from_slice(body)?;
    Ok(AdmissionReview {
        types: kube::core::TypeMeta {
            api_version: env.api_version,
            kind: env.kind,
        },
        request: env.request,
        response: None,
    })
}

/// The subresources meshguard judges as an UPDATE of the object itself: `pods/ephemeralcontainers`
/// carries the whole Pod (with `kind: Pod`), and is how `kubectl debug` adds a container to a
/// running pod. Every other subresource (`deployments/scale`, `pods/status`, ...) passes.
const JUDGED_SUBRESOURCES: &[(Kind, &str)] = &[(Kind::Pod, "ephemeralcontainers")];

/// Build the engine's view of a request; `None` when meshguard has nothing to say about it.
/// It trusts the request's shape; [`recognise_checked`] (what the webhook calls) first refuses
/// requests no kube-apiserver sends.
pub fn recognise(req: &AdmissionRequest<ReviewObject>) -> Option<Review<'_>> {
    if matches!(req.operation, Operation::Connect) {
        return None;
    }
    let kind = Kind::from_gvk(&req.kind.group, &req.kind.version, &req.kind.kind)?;
    if let Some(sub) = req.sub_resource.as_deref().filter(|s| !s.is_empty()) {
        if !JUDGED_SUBRESOURCES.contains(&(kind, sub)) {
            return None;
        }
    }
    let object = req.object.as_ref().map(|o| &o.0);
    let old_object = req.old_object.as_ref().map(|o| &o.0);
    let subject = object.or(old_object);
    let meta_name = subject.and_then(|o| {
        o.metadata
            .name
            .as_deref()
            .or(o.metadata.generate_name.as_deref())
    });
    let name = if req.name.is_empty() {
        meta_name.unwrap_or("")
    } else {
        req.name.as_str()
    };
    let namespace = if kind == Kind::Namespace {
        name
    } else {
        req.namespace
            .as_deref()
            .or_else(|| subject.and_then(|o| o.metadata.namespace.as_deref()))
            .unwrap_or("")
    };
    Some(Review {
        kind,
        version: &req.kind.version,
        operation: &req.operation,
        namespace,
        name,
        object,
        old_object,
        dry_run: req.dry_run,
        created_for: created_for(req, object),
    })
}

/// [`recognise`], refusing (HTTP 400) a request of a kind meshguard judges that kube-apiserver
/// would never send, rather than judging something other than what is written:
///
/// * CREATE or UPDATE without `object`, UPDATE or DELETE without `oldObject` (kube-apiserver
///   always sends the stored object with both; without it, a weakening could not be seen);
/// * an `object` or `oldObject` whose `apiVersion`/`kind` is not the request's `kind` (a
///   PeerAuthentication request carrying a Pod would otherwise be judged by neither kind's
///   rules). The object is always sent in the request's version, so they agree on every real
///   request; an object without `apiVersion` and `kind` is judged as the request's kind.
pub fn recognise_checked(
    req: &AdmissionRequest<ReviewObject>,
) -> Result<Option<Review<'_>>, BadReview> {
    let Some(review) = recognise(req) else {
        return Ok(None);
    };
    let op = operation_label(&req.operation);
    let kind = &req.kind;
    let missing = |field: &str| {
        BadReview::Malformed(format!(
            "{op} of {} {:?} without {field}",
            kind.kind, review.name
        ))
    };
    match req.operation {
        Operation::Create if review.object.is_none() => return Err(missing("object")),
        Operation::Update if review.object.is_none() => return Err(missing("object")),
        Operation::Update | Operation::Delete if review.old_object.is_none() => {
            return Err(missing("oldObject"))
        }
        _ => {}
    }
    for (field, obj) in [("object", review.object), ("oldObject", review.old_object)] {
        let Some(types) = obj.and_then(|o| o.types.as_ref()) else {
            continue;
        };
        let (group, version) = match types.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", types.api_version.as_str()),
        };
        if group != kind.group || version != kind.version || types.kind != kind.kind {
            let expected = if kind.group.is_empty() {
                format!("{}/{}", kind.version, kind.kind)
            } else {
                format!("{}/{}/{}", kind.group, kind.version, kind.kind)
            };
            return Err(BadReview::Malformed(format!(
                "request.kind is {expected} but request.{field} is {} {}",
                types.api_version, types.kind
            )));
        }
    }
    Ok(Some(review))
}

/// The identities Kubernetes' controllers create pods and their controllers under: each
/// controller's own ServiceAccount when kube-controller-manager runs with
/// `--use-service-account-credentials` (as kubeadm does), or its own identity otherwise.
const CONTROLLER_IDENTITIES: &[&str] = &[
    "system:kube-controller-manager",
    "system:serviceaccount:kube-system:deployment-controller",
    "system:serviceaccount:kube-system:replicaset-controller",
    "system:serviceaccount:kube-system:replication-controller",
    "system:serviceaccount:kube-system:statefulset-controller",
    "system:serviceaccount:kube-system:daemon-set-controller",
    "system:serviceaccount:kube-system:job-controller",
    "system:serviceaccount:kube-system:cronjob-controller",
];

/// For a CREATE by one of Kubernetes' controllers of an object it controls for its owner, the
/// owner's kind. Both conditions matter: a user cannot pass as a controller, and a controller's
/// own objects (none today) would not carry an owner's template. The controller reference must
/// name the owner's group and version too ([`crate::resource::controller_kind`]).
fn created_for(
    req: &AdmissionRequest<ReviewObject>,
    object: Option<&kube::core::DynamicObject>,
) -> Option<Kind> {
    if !matches!(req.operation, Operation::Create) {
        return None;
    }
    let user = req.user_info.username.as_deref()?;
    if !CONTROLLER_IDENTITIES.contains(&user) {
        return None;
    }
    crate::resource::controller_kind(object?)
}

/// The identity kube-controller-manager's namespace controller uses to delete a terminating
/// namespace's contents (with `--use-service-account-credentials`, as kubeadm runs it).
pub const NAMESPACE_CONTROLLER: &str = "system:serviceaccount:kube-system:namespace-controller";

/// A DELETE issued by the namespace controller while it tears a namespace down, recognised by
/// its service-account identity.
fn namespace_teardown(req: &AdmissionRequest<ReviewObject>) -> bool {
    matches!(req.operation, Operation::Delete)
        && req.user_info.username.as_deref() == Some(NAMESPACE_CONTROLLER)
}

/// A DELETE in a namespace that is Terminating (namespace cache: `deletionTimestamp` set),
/// whoever sends it. This covers the namespace controller when kube-controller-manager runs
/// with `--use-service-account-credentials=false` and so acts as `system:kube-controller-manager`,
/// and a user deleting a policy the namespace controller is about to delete anyway. UPDATEs
/// need no such rule: the ones a teardown causes remove finalizers from objects that carry a
/// `deletionTimestamp` themselves, and the engine exempts those. CREATEs in a terminating
/// namespace are refused by the API server's NamespaceLifecycle admission before any webhook.
fn delete_in_terminating_namespace(review: &Review<'_>, view: &dyn ClusterView) -> bool {
    matches!(review.operation, Operation::Delete)
        && !review.namespace.is_empty()
        && review.kind != Kind::Namespace
        && view.namespace_terminating(review.namespace) == Lookup::Found(true)
}

/// Turn findings into the response, by resolved action. The one place modes take effect.
pub fn decide(mut resp: AdmissionResponse, eval: &Evaluation) -> (AdmissionResponse, Outcome) {
    if eval.exempt {
        return (resp, Outcome::Exempt);
    }
    if eval.findings.is_empty() {
        return (resp, Outcome::Allowed);
    }
    // Every finding is recorded for the audit log, whatever its action: which rule, where, and
    // what it did (`[pa-permissive-mtls] spec.mtls.mode (deny)`). The texts of denies and
    // warnings are in the response's status and warnings, so they are not repeated here (that
    // would double every response); audit-level findings are reported nowhere else, so they
    // keep theirs (`[ap-wildcard-source] spec.rules[0]... (audit): "*" matches ... Fix: ...`).
    let entries: Vec<String> = eval
        .findings
        .iter()
        .map(|f| {
            let v = &f.violation;
            let mut e = String::with_capacity(f.rule.len() + v.path.len() + 16);
            e.push('[');
            e.push_str(f.rule);
            e.push_str("] ");
            e.push_str(&v.path);
            e.push_str(" (");
            e.push_str(f.action.as_str());
            e.push(')');
            if f.action == Action::Audit {
                e.push_str(": ");
                e.push_str(&v.message);
                e.push_str(". Fix: ");
                e.push_str(&v.fix);
            }
            e
        })
        .collect();
    let annotation = serde_json::to_string(&entries).unwrap_or_default();
    resp.audit_annotations
        .insert(AUDIT_ANNOTATION.to_owned(), truncate(annotation, 16 * 1024));

    let warnings = header_safe_warnings(eval.with_action(Action::Warn).map(|f| {
        let mut line = String::new();
        f.write_line(&mut line);
        line
    }));
    if !warnings.is_empty() {
        resp.warnings = Some(warnings);
    }
    let denies = eval.with_action(Action::Deny).count();
    if denies == 0 {
        let outcome = if eval.with_action(Action::Warn).next().is_some() {
            Outcome::Warned
        } else {
            Outcome::Audited
        };
        return (resp, outcome);
    }
    let noun = if denies == 1 {
        "violation"
    } else {
        "violations"
    };
    // `meshguard: N violations:` then one finding per line.
    let mut message = String::with_capacity(512 * denies);
    message.push_str("meshguard: ");
    message.push_str(&denies.to_string());
    message.push(' ');
    message.push_str(noun);
    message.push(':');
    for f in eval.with_action(Action::Deny) {
        message.push('\n');
        f.write_line(&mut message);
    }
    resp = resp.deny(message);
    resp.result.code = 403;
    resp.result.reason = "Forbidden".into();
    resp.result.status = Some(kube::core::response::StatusSummary::Failure);
    (resp, Outcome::Denied)
}

/// Warnings that survive an HTTP `Warning` header: printable, ≤ 256 chars each, ≤ 4 KiB total.
pub fn header_safe_warnings(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut total = 0;
    for w in items {
        // Printable ASCII, the usual case, is checked a byte at a time.
        let control = if w.is_ascii() {
            w.bytes().any(|b| b < 0x20 || b == 0x7f)
        } else {
            w.chars().any(char::is_control)
        };
        let clean = if control {
            w.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect()
        } else {
            w
        };
        let w = truncate(clean, WARNING_MAX);
        if total + w.len() > WARNINGS_TOTAL_MAX {
            out.push(
                "meshguard: more warnings omitted; see the audit annotation or `meshguard check`"
                    .into(),
            );
            break;
        }
        total += w.len();
        out.push(w);
    }
    out
}

/// Cut to at most `max` bytes on a char boundary, marking the cut with `…`.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
    s
}

fn with_patch(
    resp: AdmissionResponse,
    m: Mutated,
) -> Result<(AdmissionResponse, Outcome), BadReview> {
    if m.exempt {
        return Ok((resp, Outcome::Exempt));
    }
    if m.patch.is_empty() {
        return Ok((resp, Outcome::Allowed));
    }
    let resp = resp
        .with_patch(json_patch::Patch(m.patch))
        .map_err(|e| BadReview::Encode(e.to_string()))?;
    Ok((resp, Outcome::Patched))
}

/// Serialise the response review. kube-core serialises `patch` (a `Vec<u8>`) as a JSON array
/// of numbers; the apiserver's Go `[]byte` expects a base64 string, so we write that.
pub fn encode(resp: AdmissionResponse) -> Result<Vec<u8>, BadReview> {
    let review = resp.into_review();
    let patch = review.response.as_ref().and_then(|r| r.patch.as_ref());
    let Some(patch) = patch else {
        return serde_json::to_vec(&review).map_err(|e| BadReview::Encode(e.to_string()));
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(patch);
    let mut value = serde_json::to_value(&review).map_err(|e| BadReview::Encode(e.to_string()))?;
    if let Some(slot) = value.pointer_mut("/response/patch") {
        *slot = serde_json::Value::String(b64);
    }
    serde_json::to_vec(&value).map_err(|e| BadReview::Encode(e.to_string()))
}

fn operation_label(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Inventory;

    #[test]
    fn warnings_are_bounded_and_header_safe() {
        let long = "x".repeat(1000);
        let items = (0..40).map(|i| format!("{i}\n{long}"));
        let w = header_safe_warnings(items);
        assert!(w
            .iter()
            .all(|s| s.len() <= WARNING_MAX && !s.contains('\n')));
        assert!(w.iter().map(String::len).sum::<usize>() <= WARNINGS_TOTAL_MAX + 100);
        assert!(w.last().is_some_and(|s| s.contains("omitted")));
    }

    #[test]
    fn fast_decode_agrees_with_kube_core() {
        let body = include_bytes!("../tests/fixtures/admission/pod-update-labels.json");
        let ours: AdmissionRequest<ReviewObject> = decode_review(body)
            .expect("decodes")
            .try_into()
            .expect("request");
        let theirs: AdmissionReview<kube::core::DynamicObject> =
            serde_json::from_slice(body).expect("kube decodes");
        let theirs: AdmissionRequest<kube::core::DynamicObject> =
            theirs.try_into().expect("request");
        assert_eq!(ours.uid, theirs.uid);
        assert_eq!(ours.kind, theirs.kind);
        assert_eq!(ours.types, theirs.types);
        assert_eq!(ours.operation, theirs.operation);
        let (o, t) = (
            ours.object.expect("object").0,
            theirs.object.expect("object"),
        );
        assert_eq!(o.metadata.labels, t.metadata.labels);
        // The pod spec keeps what the checks read and loses the rest (`resource::Shape`).
        for field in ["serviceAccountName", "containers", "hostNetwork"] {
            let (a, b) = (&o.data["spec"][field], &t.data["spec"][field]);
            if field == "containers" {
                assert_eq!(a[0]["name"], b[0]["name"]);
                assert_eq!(a[0]["image"], b[0]["image"]);
                assert_eq!(a[0]["ports"], b[0]["ports"]);
            } else {
                assert_eq!(a, b, "{field}");
            }
        }
        assert!(t.data["spec"].get("volumes").is_some());
        assert!(o.data["spec"].get("volumes").is_none());
        assert_eq!(
            ours.old_object.expect("old").0.metadata.name,
            theirs.old_object.expect("old").metadata.name
        );
    }

    /// Answer a review with the default policy over `cluster`; returns the response.
    fn answer(cluster: Inventory, review: &serde_json::Value) -> serde_json::Value {
        let admission = Admission::new(
            EngineHandle::new(crate::engine::Engine::new(
                crate::config::Policy::default(),
                Default::default(),
                None,
            )),
            Metrics::new().expect("metrics"),
            Arc::new(cluster),
        );
        let body = serde_json::to_vec(review).expect("json");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let out = rt
            .block_on(admission.handle(Webhook::Validate, &body, Duration::from_secs(5)))
            .expect("answered");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("response");
        v["response"].clone()
    }

    /// A captured DELETE of a namespace-wide STRICT PeerAuthentication in `production`, sent as
    /// kube-controller-manager's own identity (`--use-service-account-credentials=false`).
    fn delete_by_controller_manager() -> serde_json::Value {
        let mut review: serde_json::Value = serde_json::from_slice(include_bytes!(
            "../tests/fixtures/admission/peerauthentication-delete-strict-v1beta1.json"
        ))
        .expect("fixture");
        review["request"]["userInfo"] = serde_json::json!({
            "username": "system:kube-controller-manager", "groups": ["system:authenticated"]});
        review
    }

    #[test]
    fn delete_in_terminating_namespace_is_exempt_whoever_sends_it() {
        let review = delete_by_controller_manager();
        let labels = [("istio-injection", "enabled")];
        let terminating =
            Inventory::complete(Vec::new()).with_terminating_namespace("production", &labels);
        let resp = answer(terminating, &review);
        assert_eq!(resp["allowed"], true, "{resp}");

        // The same identity deleting the same policy in a live namespace is refused.
        let live = Inventory::complete(Vec::new()).with_namespace("production", &labels);
        let resp = answer(live, &review);
        assert_eq!(resp["allowed"], false, "{resp}");
        assert!(resp["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("[pa-weakening-delete]")));

        // Nobody can tell (no cluster view): refused, as before.
        let unknown = Inventory::partial(Vec::new());
        assert_eq!(answer(unknown, &review)["allowed"], false);
    }

    #[test]
    fn update_in_terminating_namespace_is_still_checked() {
        let review: serde_json::Value = serde_json::from_slice(include_bytes!(
            "../tests/fixtures/admission/peerauthentication-update-strict-to-permissive.json"
        ))
        .expect("fixture");
        let ns = review["request"]["namespace"].as_str().expect("namespace");
        let cluster = Inventory::complete(Vec::new()).with_terminating_namespace(ns, &[]);
        let resp = answer(cluster, &review);
        assert_eq!(resp["allowed"], false, "{resp}");
        assert!(resp["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("[pa-permissive-mtls]")));
    }

    #[test]
    fn inventory_answers_terminating() {
        use crate::context::ClusterView;
        let c = Inventory::complete(Vec::new())
            .with_namespace("live", &[])
            .with_terminating_namespace("going", &[]);
        assert_eq!(c.namespace_terminating("live"), Lookup::Found(false));
        assert_eq!(c.namespace_terminating("going"), Lookup::Found(true));
        assert_eq!(c.namespace_terminating("absent"), Lookup::Missing);
        assert_eq!(
            crate::context::NoCluster.namespace_terminating("x"),
            Lookup::Unknown
        );
    }

    #[test]
    fn the_audit_annotation_names_every_finding_and_spells_out_audit_ones() {
        use crate::finding::{Finding, Violation};
        let f = |rule, action| Finding {
            rule,
            action,
            violation: Violation::new("spec.x", "what", "fix it"),
        };
        let eval = Evaluation {
            findings: vec![
                f("pa-permissive-mtls", Action::Deny),
                f("ap-wildcard-source", Action::Warn),
                f("ap-remote-ip-untrusted", Action::Audit),
            ],
            exempt: false,
        };
        let req: AdmissionRequest<ReviewObject> = decode_review(include_bytes!(
            "../tests/fixtures/admission/peerauthentication-update-strict-to-permissive.json"
        ))
        .expect("decodes")
        .try_into()
        .expect("request");
        let (resp, outcome) = decide(AdmissionResponse::from(&req), &eval);
        assert_eq!(outcome, Outcome::Denied);
        let entries: Vec<String> =
            serde_json::from_str(&resp.audit_annotations[AUDIT_ANNOTATION]).expect("a JSON list");
        assert_eq!(
            entries,
            [
                "[pa-permissive-mtls] spec.x (deny)",
                "[ap-wildcard-source] spec.x (warn)",
                "[ap-remote-ip-untrusted] spec.x (audit): what. Fix: fix it"
            ]
        );
        // The texts the annotation leaves out are in the status and the warnings.
        assert!(resp
            .result
            .message
            .contains("[pa-permissive-mtls] spec.x: what. Fix: fix it"));
        assert_eq!(
            resp.warnings,
            Some(vec![
                "[ap-wildcard-source] spec.x: what. Fix: fix it".to_owned()
            ])
        );
    }

    fn request_of(review: &serde_json::Value) -> AdmissionRequest<ReviewObject> {
        let body = serde_json::to_vec(review).expect("json");
        decode_review(&body)
            .expect("decodes")
            .try_into()
            .expect("request")
    }

    fn captured(name: &str) -> serde_json::Value {
        let path = format!(
            "{}/tests/fixtures/admission/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_slice(&std::fs::read(&path).expect("fixture")).expect("json")
    }

    #[test]
    fn malformed_reviews_are_refused_not_judged_as_something_else() {
        // A PeerAuthentication request carrying a Pod.
        let mut pod_as_pa = captured("peerauthentication-create-disable-denied.json");
        let pod = captured("pod-create-bare-with-serviceaccount.json")["request"]["object"].clone();
        pod_as_pa["request"]["object"] = pod;
        let err = recognise_checked(&request_of(&pod_as_pa)).expect_err("refused");
        assert!(
            err.to_string().contains("request.kind is security.istio.io/v1/PeerAuthentication but request.object is v1 Pod"),
            "{err}"
        );
        // The same kind in another version is another object too.
        let mut other_version = captured("peerauthentication-create-disable-denied.json");
        other_version["request"]["object"]["apiVersion"] =
            serde_json::json!("security.istio.io/v1beta1");
        assert!(recognise_checked(&request_of(&other_version)).is_err());
        // CREATE and UPDATE without object, UPDATE and DELETE without oldObject.
        for (fixture, field, missing) in [
            (
                "peerauthentication-create-disable-denied.json",
                "object",
                "without object",
            ),
            (
                "peerauthentication-update-strict-to-permissive.json",
                "object",
                "without object",
            ),
            (
                "peerauthentication-update-strict-to-permissive.json",
                "oldObject",
                "without oldObject",
            ),
            (
                "peerauthentication-delete-strict-v1beta1.json",
                "oldObject",
                "without oldObject",
            ),
        ] {
            let mut r = captured(fixture);
            r["request"][field] = serde_json::Value::Null;
            let err = recognise_checked(&request_of(&r)).expect_err("refused");
            assert!(
                err.to_string().contains(missing),
                "{fixture} {field}: {err}"
            );
            assert!(matches!(err, BadReview::Malformed(_)));
        }
        // Kinds meshguard does not judge pass as before, malformed or not.
        let mut other = captured("deployment-scale-subresource-update.json");
        other["request"]["object"] = serde_json::Value::Null;
        assert!(matches!(recognise_checked(&request_of(&other)), Ok(None)));
        // Every captured review is well-formed.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission");
        for entry in std::fs::read_dir(dir).expect("dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                let r: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
                assert!(
                    recognise_checked(&request_of(&r)).is_ok(),
                    "{}",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn ephemeral_containers_are_judged_as_a_pod_update() {
        let mut r = captured("pod-update-labels.json");
        r["request"]["subResource"] = serde_json::json!("ephemeralcontainers");
        let req = request_of(&r);
        let review = recognise(&req).expect("judged");
        assert_eq!(review.kind, Kind::Pod);
        assert!(matches!(review.operation, Operation::Update));
        r["request"]["subResource"] = serde_json::json!("status");
        assert!(recognise(&request_of(&r)).is_none());
    }

    #[test]
    fn an_owner_of_another_group_earns_no_pardon() {
        let mut r = captured("pod-create-by-replicaset.json");
        let owner = &mut r["request"]["object"]["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "ReplicaSet");
        let req = request_of(&r);
        assert_eq!(
            recognise(&req).expect("pod").created_for,
            Some(Kind::ReplicaSet)
        );
        r["request"]["object"]["metadata"]["ownerReferences"][0]["apiVersion"] =
            serde_json::json!("fake.example.com/v1");
        let req = request_of(&r);
        assert_eq!(recognise(&req).expect("pod").created_for, None);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        let s = "é".repeat(300);
        let t = truncate(s.clone(), 256);
        assert!(t.len() <= 256);
        assert!(t.ends_with('…'));
    }
}
