//! The admission front end. One screen of request flow:
//! decode → recognise → evaluate (or mutate) → decide by action → respond.

use crate::budget::{Budget, Reservation};
use crate::config::ImpactSetting;
use crate::context::{ClusterSource, ClusterView, Lookup, LookupKey};
use crate::engine::{EngineHandle, Evaluation, Mutated};
use crate::finding::Action;
use crate::metrics::Metrics;
use crate::reach::impact::ImpactSlot;
use crate::resource::{DecodeLimits, Kind, Overflow, Review, ReviewObject};
use crate::rules::ReviewCache;
use base64::Engine as _;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::field::Empty;
use tracing::Instrument;

mod policy_ops;

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
    /// Allowed: every finding was covered by an exception (reported in warnings).
    Excepted,
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
            Outcome::Excepted => "excepted",
        }
    }

    /// Findings were reported: the review gets its one info-level log line.
    pub fn reported(self) -> bool {
        matches!(
            self,
            Outcome::Denied | Outcome::Warned | Outcome::Audited | Outcome::Excepted
        )
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
    #[error("too many large reviews in flight: the memory budget is full (--max-inflight-bytes); retry shortly")]
    Busy,
    #[error("cannot encode the response: {0}")]
    Encode(String),
}

/// Shared state of the admission server.
pub struct Admission {
    pub engine: EngineHandle,
    pub metrics: Metrics,
    pub cluster: Arc<dyn ClusterSource>,
    /// How long a cluster lookup may take before `onLookupFailure` decides.
    pub(crate) lookup_deadline: Duration,
    /// What decoding one review may build.
    pub decode_limits: DecodeLimits,
    /// The memory budget shared by the reviews in flight (bodies and decoded trees); `None`:
    /// unbounded (no server).
    pub memory: Option<Arc<Budget>>,
    /// At most this many large reviews are decoded and judged on the blocking pool at once.
    offload: Arc<tokio::sync::Semaphore>,
    /// The cluster the policy's `impact` setting reads (`serve`'s watch fills it; empty until
    /// it has synced, and always empty while `impact` is off).
    pub impact: Arc<ImpactSlot>,
}

/// Warnings: each at most 256 characters, all together at most 4096 (apiserver limits).
const WARNING_MAX: usize = 256;
const WARNINGS_TOTAL_MAX: usize = 4096;
/// Longest deny message (`status.message`): every finding's line is clipped
/// (`finding::MAX_MESSAGE_BYTES`), and lines past this say `… and N more`.
pub(crate) const MAX_DENY_MESSAGE: usize = 16 * 1024;
/// Longest audit annotation value.
const AUDIT_ANNOTATION_MAX: usize = 16 * 1024;
/// Key of the audit annotation of what a change opens (`impact`), recorded as
/// `<webhook name>/impact`.
pub(crate) const IMPACT_ANNOTATION: &str = "impact";
/// Lines of what one change opens, at most (the last counts the rest).
const IMPACT_LINES: usize = 8;
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
            decode_limits: DecodeLimits::default(),
            memory: None,
            offload: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            impact: Arc::new(ImpactSlot::default()),
        }
    }

    /// Answer one AdmissionReview body. `Err` means an HTTP error status with the error as the
    /// reason (400 for what the client sent, 429 when the reviews in flight hold the whole
    /// memory budget). Decoding and judging run on the calling task; [`Admission::handle_owned`]
    /// moves large reviews off the async workers.
    pub async fn handle(
        &self,
        webhook: Webhook,
        body: &[u8],
        budget: Duration,
    ) -> Result<Vec<u8>, BadReview> {
        let start = Instant::now();
        let decoded = decode_bounded(body, self.decode_limits, self.reservation())?;
        self.answer(webhook, decoded, budget, start).await
    }

    /// [`Admission::handle`] for a shared server: a body of [`OFFLOAD_BYTES`] or more is
    /// decoded, judged and encoded on tokio's blocking pool (at most one review per core at
    /// once), so that probes, the Lease renewal and small reviews never wait behind it.
    pub(crate) async fn handle_owned(
        self: &Arc<Self>,
        webhook: Webhook,
        body: bytes::Bytes,
        budget: Duration,
    ) -> Result<Vec<u8>, BadReview> {
        if body.len() < OFFLOAD_BYTES {
            return self.handle(webhook, &body, budget).await;
        }
        let start = Instant::now();
        let Ok(_slot) = self.offload.clone().acquire_owned().await else {
            return Err(BadReview::Busy);
        };
        let (limits, mut reservation) = (self.decode_limits, self.reservation());
        // Hold room for the decoded tree before decoding (a large review's tree is a few times
        // its text): when several large reviews arrive at once, the ones that get room are
        // decoded whole and the others wait for it, or get 429, instead of all of them running
        // out of room halfway through.
        let upfront = limits
            .max_decoded_bytes
            .min(body.len().saturating_mul(UPFRONT_FACTOR));
        let until = Instant::now() + budget.min(UPFRONT_WAIT);
        while !reservation.grow(upfront) {
            if Instant::now() >= until {
                return Err(BadReview::Busy);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Decoded, looked up and judged in one blocking task, so the review's pod template is
        // decoded once for the lookups and the rules alike (the cache borrows the request); the
        // lookups are awaited on the runtime from there (`Handle::block_on` is allowed on the
        // blocking pool). The slot above bounds how many such tasks run at once.
        let this = self.clone();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let decoded = decode_bounded(&body, limits, reservation);
            drop(body);
            let decoded = decoded?;
            let span = review_span(webhook, &decoded.request);
            let (review, cache) = this.checked(&decoded)?;
            let req = &decoded.request;
            let lookups = this.lookups(req, review, decoded.overflow, &cache);
            runtime.block_on(this.prepare(&lookups, budget, &span));
            this.judge(webhook, &decoded, review, &span, start, &cache)
        })
        .await
        .map_err(|e| BadReview::Encode(format!("review task failed: {e}")))?
    }

    fn reservation(&self) -> Reservation {
        self.memory
            .as_ref()
            .map_or_else(Reservation::unbounded, |b| b.reserve())
    }

    /// Recognise, look up what the rules need, judge and encode a decoded review.
    async fn answer(
        &self,
        webhook: Webhook,
        decoded: Decoded,
        budget: Duration,
        start: Instant,
    ) -> Result<Vec<u8>, BadReview> {
        let span = review_span(webhook, &decoded.request);
        let (review, cache) = self.checked(&decoded)?;
        let req = &decoded.request;
        let lookups = self.lookups(req, review, decoded.overflow, &cache);
        self.prepare(&lookups, budget, &span).await;
        self.judge(webhook, &decoded, review, &span, start, &cache)
    }

    /// Refuse (2. recognise) a request kube-apiserver would never send (no object to judge, or
    /// an object of another kind than the request names) before anything is looked up; else
    /// the review as the engine sees it ([`recognise`], once per review: `None` when meshguard
    /// has nothing to say about it) and its typed objects (the pod template), decoded once for
    /// the lookups and the rules alike; nothing for a review no rule will read.
    fn checked<'r>(
        &self,
        decoded: &'r Decoded,
    ) -> Result<(Option<Review<'r>>, ReviewCache<'r>), BadReview> {
        let req = &decoded.request;
        if decoded.overflow.is_some() {
            return Ok((recognise(req), ReviewCache::default()));
        }
        let review = recognise_checked(req)?;
        let cache = match &review {
            Some(r) if !namespace_teardown(req) && !self.engine.current().is_exempt(r) => {
                ReviewCache::for_review(r)
            }
            _ => ReviewCache::default(),
        };
        Ok((review, cache))
    }

    /// What the rules will read from the cluster, fetched before the (synchronous) engine runs.
    fn lookups(
        &self,
        req: &AdmissionRequest<ReviewObject>,
        review: Option<Review<'_>>,
        overflow: Option<Overflow>,
        cache: &ReviewCache<'_>,
    ) -> Vec<LookupKey> {
        match review {
            Some(r) if !namespace_teardown(req) && overflow.is_none() => {
                let mut lookups = self.engine.current().lookups_with(&r, cache);
                if matches!(r.operation, Operation::Delete) && !r.namespace.is_empty() {
                    // Whether the namespace is Terminating (in `judge`) comes with its labels.
                    let key = LookupKey::NamespaceLabels(r.namespace.to_owned());
                    if !lookups.contains(&key) {
                        lookups.push(key);
                    }
                }
                lookups
            }
            _ => Vec::new(),
        }
    }

    /// Fetch `lookups` from the cluster within the review's budget.
    async fn prepare(&self, lookups: &[LookupKey], budget: Duration, span: &tracing::Span) {
        if lookups.is_empty() {
            return;
        }
        let deadline = self.lookup_deadline.min(budget);
        let prepared = self.cluster.prepare(lookups, deadline);
        if tokio::time::timeout(deadline, prepared)
            .instrument(span.clone())
            .await
            .is_err()
        {
            let _entered = span.enter();
            tracing::warn!("cluster lookup timed out; onLookupFailure decides");
        }
    }

    /// Judge a decoded review whose lookups are done: evaluate (or mutate), decide, encode,
    /// count and log.
    fn judge(
        &self,
        webhook: Webhook,
        decoded: &Decoded,
        review: Option<Review<'_>>,
        span: &tracing::Span,
        start: Instant,
        cache: &ReviewCache<'_>,
    ) -> Result<Vec<u8>, BadReview> {
        let (req, overflow) = (&decoded.request, decoded.overflow);
        let _entered = span.enter();
        let mut resp = AdmissionResponse::from(req);

        // Rule ids of the findings, for the one info-level log line of a denied/warned/audited
        // review (each finding's full text is logged at debug and sent in the response).
        let mut rules_hit = String::new();
        // 2. recognise: unknown kinds, subresources and CONNECT pass untouched
        let (kind_label, outcome) = match review {
            // meshguard's own PolicyException resources (config::exceptions).
            None if webhook == Webhook::Validate && policy_ops::is_exception(req) => {
                let (answered, outcome) =
                    policy_ops::review_exception(&self.engine.current(), req, resp);
                resp = answered;
                (crate::config::exceptions::KIND, outcome)
            }
            None => ("other", Outcome::Ignored),
            // A terminating namespace is being emptied: everything in it goes, and refusing
            // (pa-weakening-delete, ap-deny-all-delete) would leave the namespace stuck
            // Terminating. Its policies protect nothing once the workloads are gone. Known by
            // the namespace controller's own identity here, or below by the namespace's state.
            Some(r) if namespace_teardown(req) => (r.kind.as_str(), Outcome::Exempt),
            // Part of the object was not built (larger than --max-decoded-bytes): it cannot be
            // judged, and judging what was built could miss the item a rule denies. Refused,
            // unless the review is exempt as a whole.
            Some(r) if overflow.is_some() => {
                span.record("namespace", r.namespace);
                let engine = self.engine.current();
                if engine.is_exempt(&r) {
                    (r.kind.as_str(), Outcome::Exempt)
                } else {
                    rules_hit = TOO_LARGE_RULE.to_owned();
                    resp = too_large(resp, self.decode_limits.max_decoded_bytes);
                    (r.kind.as_str(), Outcome::Denied)
                }
            }
            Some(r) => {
                span.record("namespace", r.namespace);
                let engine = self.engine.current();
                let view = self.cluster.view();
                // 3. evaluate, 4. decide
                let outcome = match webhook {
                    _ if delete_in_terminating_namespace(&r, view) => Outcome::Exempt,
                    Webhook::Validate => {
                        let mut eval = engine.evaluate_with(&r, view, cache);
                        policy_ops::pardon_platform(engine.policy(), req, &mut eval);
                        self.count_violations(r.kind, &eval);
                        for (i, f) in eval.findings.iter().enumerate() {
                            if i > 0 {
                                rules_hit.push(',');
                            }
                            rules_hit.push_str(f.rule);
                        }
                        let (decided, mut outcome) = decide(resp, &eval);
                        resp = decided;
                        if resp.allowed {
                            let setting = engine.policy().impact;
                            if setting != ImpactSetting::Off {
                                let said;
                                (resp, said) = self.say_impact(&engine, &r, setting, resp);
                                if said
                                    && setting == ImpactSetting::Warn
                                    && outcome == Outcome::Allowed
                                {
                                    outcome = Outcome::Warned;
                                }
                            }
                        }
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

    /// What an admitted AuthorizationPolicy or PeerAuthentication change opens
    /// (`reach::impact`): warnings (`warn`) and the `impact` audit annotation. True when
    /// something opens.
    fn say_impact(
        &self,
        engine: &crate::engine::Engine,
        r: &Review<'_>,
        setting: ImpactSetting,
        mut resp: AdmissionResponse,
    ) -> (AdmissionResponse, bool) {
        let Some(change) = crate::reach::impact::change_of(r) else {
            return (resp, false);
        };
        let Some(index) = self.impact.current() else {
            tracing::debug!("impact not computed: the workload and policy watch has not synced");
            return (resp, false);
        };
        let mesh = crate::authz::Mesh::from_context(engine.mesh());
        let found = crate::reach::impact::impact(
            &index,
            &mesh,
            change,
            crate::reach::impact::Limits::default(),
        );
        if found.is_empty() && found.stopped.is_none() {
            return (resp, false);
        }
        let lines = found.messages(IMPACT_LINES);
        self.metrics
            .impact
            .with_label_values(&[r.kind.as_str()])
            .inc();
        let annotation = serde_json::to_string(&lines).unwrap_or_default();
        resp.audit_annotations.insert(
            IMPACT_ANNOTATION.to_owned(),
            truncate(annotation, AUDIT_ANNOTATION_MAX),
        );
        if setting == ImpactSetting::Warn {
            let before = resp.warnings.take().unwrap_or_default();
            let warnings = header_safe_warnings(
                before
                    .into_iter()
                    .chain(lines.iter().map(|l| format!("[impact] {l}"))),
            );
            resp.warnings = Some(warnings);
        }
        (resp, !found.is_empty())
    }

    fn count_violations(&self, kind: Kind, eval: &Evaluation) {
        for e in &eval.excepted {
            self.metrics
                .excepted
                .with_label_values(&[e.finding.rule, kind.as_str()])
                .inc();
        }
        for f in &eval.findings {
            self.metrics
                .violations
                .with_label_values(&[f.rule, f.action.as_str(), kind.as_str()])
                .inc();
            tracing::debug!(rule = f.rule, action = f.action.as_str(), path = %f.violation.path, "{}", f.violation.message);
        }
    }
}

/// One span per review. It is debug-level so that at the default `info` level it costs nothing;
/// the summary event `judge` logs carries the same fields for denied/warned/audited reviews.
fn review_span(webhook: Webhook, req: &AdmissionRequest<ReviewObject>) -> tracing::Span {
    tracing::debug_span!("review", webhook = webhook.as_str(), uid = %req.uid,
        kind = %req.kind.kind, namespace = Empty, operation = ?req.operation, outcome = Empty, duration_us = Empty)
}

/// Bodies from this size on are decoded and judged off the async workers
/// ([`Admission::handle_owned`]). A 5 KB Pod review decodes in ~15 µs, where moving it to
/// another thread would cost more than it saves; a 1 MiB one takes milliseconds.
pub(crate) const OFFLOAD_BYTES: usize = 128 * 1024;

/// A large review holds this many times its body's size of the memory budget for its decoded
/// tree before it is decoded ([`Admission::handle_owned`]), and waits at most
/// `UPFRONT_WAIT` for that room.
const UPFRONT_FACTOR: usize = 4;
const UPFRONT_WAIT: Duration = Duration::from_secs(2);

/// The id the audit annotation and the log line give a review refused as too large to judge.
pub(crate) const TOO_LARGE_RULE: &str = "meshguard-too-large";

/// Refuse a review whose objects were too large to decode within `limit`: nothing in them was
/// judged, so nothing may pass (code 413, as the apiserver says of oversized bodies).
fn too_large(mut resp: AdmissionResponse, limit: usize) -> AdmissionResponse {
    let message = format!(
        "meshguard: 1 violation:\n[{TOO_LARGE_RULE}] object: decoding this object would take more than {} MiB \
         (serve --max-decoded-bytes), so none of it was checked. Fix: split the object; the \
         largest objects a policy needs are far below this",
        limit / (1024 * 1024)
    );
    resp.audit_annotations.insert(
        AUDIT_ANNOTATION.to_owned(),
        format!("[\"[{TOO_LARGE_RULE}] object (deny)\"]"),
    );
    resp = resp.deny(message);
    resp.result.code = 413;
    resp.result.reason = "RequestEntityTooLarge".into();
    resp.result.status = Some(kube::core::response::StatusSummary::Failure);
    resp
}

/// A decoded review: the request, and what decoding it built.
pub struct Decoded {
    pub request: AdmissionRequest<ReviewObject>,
    /// Set when part of an object was not built: the review must not be judged.
    pub overflow: Option<Overflow>,
    /// Its decoded trees' bytes on the shared budget, released with it.
    pub reservation: Reservation,
}

/// Decode a review within `limits`, charging the shared budget through `reservation`.
/// [`BadReview::Busy`] when the shared budget has no room for it now.
pub(crate) fn decode_bounded(
    body: &[u8],
    limits: DecodeLimits,
    reservation: Reservation,
) -> Result<Decoded, BadReview> {
    tracing::trace!(body = %String::from_utf8_lossy(body), "request");
    let (review, report) = crate::resource::metered(limits, reservation, || decode_review(body));
    if report.overflow == Some(Overflow::Shared) {
        return Err(BadReview::Busy);
    }
    let review = review?;
    if review.types.api_version != "admission.k8s.io/v1" || review.types.kind != "AdmissionReview" {
        return Err(BadReview::Version(format!(
            "{}/{}",
            crate::finding::clip(&review.types.api_version, 64),
            crate::finding::clip(&review.types.kind, 64)
        )));
    }
    let request: AdmissionRequest<ReviewObject> =
        review.try_into().map_err(|_| BadReview::NoRequest)?;
    Ok(Decoded {
        request,
        overflow: report.overflow,
        reservation: report.reservation,
    })
}

/// The wire shape of an incoming review, decoded without kube-core's `#[serde(flatten)]` on
/// `AdmissionReview::types`: a flattened field makes serde buffer the *whole* body into an
/// intermediate tree before decoding it again, which cost a third of a Pod review's CPU. The
/// result is kube's `AdmissionReview`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default, borrow)]
    request: Option<RequestWire<'a>>,
}

/// Longest `uid` accepted: the apiserver sends a UUID (36 characters), and the uid is echoed in
/// the response, so an unbounded one would make the answer as large as the question.
pub(crate) const MAX_UID_BYTES: usize = 128;

/// kube's `AdmissionRequest`, field for field, with what an attacker could inflate bounded: the
/// objects and the user's groups and extras are charged to the decode meter
/// (`resource::metered`), the uid is at most [`MAX_UID_BYTES`]. What no check reads and no
/// meter charges (`resource`, `requestKind`, `requestResource`, `requestSubResource`,
/// `userInfo.uid`) is type-checked as kube-core checks it, borrowing from the body, and not
/// built: the request leaves them empty.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestWire<'a> {
    #[serde(deserialize_with = "bounded_uid")]
    uid: String,
    kind: kube::core::GroupVersionKind,
    #[serde(borrow)]
    #[allow(dead_code)]
    resource: Checked<GroupVersionResource<'a>>,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    request_kind: Option<Checked<GroupVersionKind<'a>>>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    request_resource: Option<Checked<GroupVersionResource<'a>>>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    request_sub_resource: Option<Checked<std::borrow::Cow<'a, str>>>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    #[serde(borrow)]
    user_info: UserInfoWire<'a>,
    #[serde(default)]
    object: Option<ReviewObject>,
    #[serde(default)]
    old_object: Option<ReviewObject>,
    #[serde(default)]
    dry_run: bool,
    /// Any JSON value (kube-core reads it into a `RawExtension`, which takes any): nothing
    /// reads it, so it is scanned past without being built, and costs the decode meter nothing.
    #[serde(default)]
    #[allow(dead_code)]
    options: Option<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct UserInfoWire<'a> {
    #[serde(default, deserialize_with = "crate::resource::bounded_extra")]
    extra: Option<std::collections::BTreeMap<String, Vec<String>>>,
    #[serde(default, deserialize_with = "crate::resource::bounded_string_list")]
    groups: Option<Vec<String>>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    uid: Option<Checked<std::borrow::Cow<'a, str>>>,
    #[serde(default)]
    username: Option<String>,
}

/// A value decoded only to refuse what kube-core would refuse, with its words; then dropped.
#[derive(serde::Deserialize)]
#[serde(transparent)]
struct Checked<T>(#[allow(dead_code)] T);

/// kube-core's `GroupVersionKind`, its strings borrowed (the same fields, the same messages).
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct GroupVersionKind<'a> {
    #[serde(borrow)]
    group: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    version: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
}

/// kube-core's `GroupVersionResource`, its strings borrowed (the same fields, the same messages).
#[derive(serde::Deserialize)]
#[allow(dead_code)]
struct GroupVersionResource<'a> {
    #[serde(borrow)]
    group: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    version: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    resource: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    api_version: std::borrow::Cow<'a, str>,
}

fn bounded_uid<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let uid = <String as serde::Deserialize>::deserialize(d)?;
    if uid.len() > MAX_UID_BYTES {
        return Err(serde::de::Error::custom(format_args!(
            "request.uid is {} bytes long; at most {MAX_UID_BYTES} are accepted",
            uid.len()
        )));
    }
    Ok(uid)
}

impl From<RequestWire<'_>> for AdmissionRequest<ReviewObject> {
    fn from(w: RequestWire<'_>) -> Self {
        AdmissionRequest {
            types: Default::default(),
            uid: w.uid,
            kind: w.kind,
            resource: kube::core::GroupVersionResource::gvr("", "", ""),
            sub_resource: w.sub_resource,
            request_kind: None,
            request_resource: None,
            request_sub_resource: None,
            name: w.name,
            namespace: w.namespace,
            operation: w.operation,
            user_info: k8s_openapi::api::authentication::v1::UserInfo {
                extra: w.user_info.extra,
                groups: w.user_info.groups,
                uid: None,
                username: w.user_info.username,
            },
            object: w.object,
            old_object: w.old_object,
            dry_run: w.dry_run,
            options: None,
        }
    }
}

/// Decode an `admission.k8s.io/v1` review body (without a meter: see [`decode_bounded`]).
///
/// The body is checked to be UTF-8 once, up front, and then decoded as text: serde_json checks
/// every string it reads from bytes on its own (each key and value of a review, about 90 of
/// them, at ~90 instructions each), which one pass over the whole body does for a fraction.
/// A body that is not UTF-8 is decoded from its bytes as before, so it is refused with the same
/// words (serde_json's, with the line and column of the first bad string).
pub fn decode_review(body: &[u8]) -> Result<AdmissionReview<ReviewObject>, BadReview> {
    let env: Envelope = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text)?,
        Err(_) => serde_json::from_slice(body)?,
    };
    Ok(AdmissionReview {
        types: kube::core::TypeMeta {
            api_version: env.api_version,
            kind: env.kind,
        },
        request: env.request.map(Into::into),
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
pub(crate) fn recognise_checked(
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
pub const CONTROLLER_IDENTITIES: &[&str] = &[
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
    if eval.findings.is_empty() && eval.excepted.is_empty() {
        return (resp, Outcome::Allowed);
    }
    // Every finding is recorded for the audit log, whatever its action: which rule, where, and
    // what it did (`[pa-permissive-mtls] spec.mtls.mode (deny)`). The texts of denies and
    // warnings are in the response's status and warnings, so they are not repeated here (that
    // would double every response); audit-level findings are reported nowhere else, so they
    // keep theirs (`[ap-wildcard-source] spec.rules[0]... (audit): "*" matches ... Fix: ...`).
    // A JSON list of the entries, as serde_json writes it; each entry is built in `e`.
    fn entry(annotation: &mut Vec<u8>, e: &str) {
        if annotation.len() > 1 {
            annotation.push(b',');
        }
        crate::json::write_str(annotation, e);
    }
    let mut annotation = Vec::with_capacity(96 * (eval.findings.len() + eval.excepted.len()));
    annotation.push(b'[');
    let mut size = 2;
    let mut e = String::new();
    for (i, f) in eval.findings.iter().enumerate() {
        let v = &f.violation;
        e.clear();
        e.push('[');
        e.push_str(f.rule);
        e.push_str("] ");
        e.push_str(&crate::finding::clip(
            &v.path,
            crate::finding::MAX_PATH_BYTES,
        ));
        e.push_str(" (");
        e.push_str(f.action.as_str());
        e.push(')');
        if f.action == Action::Audit {
            e.push_str(": ");
            e.push_str(&crate::finding::clip(&v.message, 1024));
            e.push_str(". Fix: ");
            e.push_str(&crate::finding::clip(&v.fix, 512));
        }
        // Whole entries only, so the annotation stays a JSON list.
        if size + e.len() + 3 > AUDIT_ANNOTATION_MAX - 64 {
            entry(
                &mut annotation,
                &format!("… and {} more", eval.findings.len() - i),
            );
            break;
        }
        size += e.len() + 3;
        entry(&mut annotation, &e);
    }
    // Excepted findings (`policy_ops`), within the same room.
    for (i, x) in eval.excepted.iter().enumerate() {
        let e = policy_ops::annotation_entry(x);
        if size + e.len() + 3 > AUDIT_ANNOTATION_MAX - 64 {
            let more = format!("… and {} more excepted", eval.excepted.len() - i);
            entry(&mut annotation, &more);
            break;
        }
        size += e.len() + 3;
        entry(&mut annotation, &e);
    }
    annotation.push(b']');
    let annotation = String::from_utf8(annotation).unwrap_or_default();
    resp.audit_annotations.insert(
        AUDIT_ANNOTATION.to_owned(),
        truncate(annotation, AUDIT_ANNOTATION_MAX),
    );

    let warnings = header_safe_warnings(
        eval.with_action(Action::Warn)
            .map(|f| {
                let mut line = String::new();
                f.write_line(&mut line);
                line
            })
            .chain(eval.excepted.iter().map(policy_ops::warning)),
    );
    if !warnings.is_empty() {
        resp.warnings = Some(warnings);
    }
    let denies = eval.with_action(Action::Deny).count();
    if denies == 0 {
        let outcome = if eval.with_action(Action::Warn).next().is_some() {
            Outcome::Warned
        } else if eval.findings.is_empty() {
            Outcome::Excepted
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
    // `meshguard: N violations:` then one finding per line, at most MAX_DENY_MESSAGE bytes:
    // the message goes back to the client and into the apiserver's audit log.
    let mut message = String::with_capacity(512 * denies.min(16));
    message.push_str("meshguard: ");
    message.push_str(decimal(denies, &mut [0; 20]));
    message.push(' ');
    message.push_str(noun);
    message.push(':');
    let mut line = String::new();
    for (i, f) in eval.with_action(Action::Deny).enumerate() {
        line.clear();
        f.write_line(&mut line);
        if message.len() + 1 + line.len() > MAX_DENY_MESSAGE - 64 {
            message.push_str(&format!(
                "\n… and {} more (the audit annotation names every rule; `meshguard check` prints them all)",
                denies - i
            ));
            break;
        }
        message.push('\n');
        message.push_str(&line);
    }
    resp = resp.deny(message);
    resp.result.code = 403;
    resp.result.reason = "Forbidden".into();
    resp.result.status = Some(kube::core::response::StatusSummary::Failure);
    (resp, Outcome::Denied)
}

/// `n` in decimal (what `n.to_string()` writes, without the formatting machinery), in `buf`.
fn decimal(mut n: usize, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).unwrap_or_default()
}

/// Warnings that survive an HTTP `Warning` header: printable, ≤ 256 chars each, ≤ 4 KiB total.
pub(crate) fn header_safe_warnings(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut total = 0;
    for w in items {
        // Printable ASCII, the usual case, is checked eight bytes at a time.
        let control = if w.is_ascii() {
            ascii_control(w.as_bytes())
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

/// Whether ASCII text holds a control character (below 0x20, or DEL), eight bytes at a time:
/// every warning is checked, and one is as long as a finding's whole line before it is cut.
fn ascii_control(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Whether any byte of `x` is below 0x20 or is DEL: `(v - n) & !v & HIGHS` is exact as a
    // yes/no for "a byte of v below n", and `x ^ 0x7f…` keeps every byte's high bit, so both
    // tests share `!x & HIGHS`.
    let below_or_del = |x: u64| {
        (x.wrapping_sub(ONES * 0x20) | (x ^ (ONES * 0x7f)).wrapping_sub(ONES)) & !x & HIGHS != 0
    };
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if below_or_del(u64::from_ne_bytes(word)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| b < 0x20 || b == 0x7f)
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

/// Serialise the response review, written straight from the response (no intermediate
/// `AdmissionReview` or `serde_json::Value`), in the bytes the earlier encoding produced:
/// `apiVersion`, `kind`, then `response` with kube-core's field order (`uid`, `allowed`,
/// `status`, `auditAnnotations`, `warnings`); a response with a patch in key order, as it was
/// when it went through a `Value`. kube-core serialises `patch` (a `Vec<u8>`) as a JSON array
/// of numbers; the apiserver's Go `[]byte` expects a base64 string, so we write that. Audit
/// annotations are written in key order (kube-core's `HashMap` wrote them in any order).
pub fn encode(resp: AdmissionResponse) -> Result<Vec<u8>, BadReview> {
    use serde::Serialize;
    fn sorted(m: &std::collections::HashMap<String, String>) -> Vec<(&str, &str)> {
        let mut v: Vec<(&str, &str)> = m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        v.sort_unstable();
        v
    }
    /// A map from sorted pairs.
    struct Pairs<'a>(&'a [(&'a str, &'a str)]);
    impl Serialize for Pairs<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
        }
    }
    impl Pairs<'_> {
        fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
    }
    /// kube-core's `Status` with its keys in order (the patch case's `Value` sorted them).
    #[derive(Serialize)]
    struct SortedStatus<'a> {
        #[serde(skip_serializing_if = "is_zero")]
        code: u16,
        /// As a `Value`: its keys sorted too.
        #[serde(skip_serializing_if = "Option::is_none")]
        details: Option<serde_json::Value>,
        #[serde(skip_serializing_if = "str::is_empty")]
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        metadata: Option<serde_json::Value>,
        #[serde(skip_serializing_if = "str::is_empty")]
        reason: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<&'a kube::core::response::StatusSummary>,
    }
    fn is_zero(c: &u16) -> bool {
        *c == 0
    }
    fn as_value<T: Serialize>(v: Option<&T>) -> Result<Option<serde_json::Value>, BadReview> {
        v.map(serde_json::to_value)
            .transpose()
            .map_err(|e| BadReview::Encode(e.to_string()))
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Plain<'a> {
        uid: &'a str,
        allowed: bool,
        status: &'a kube::core::response::Status,
        #[serde(skip_serializing_if = "Pairs::is_empty")]
        audit_annotations: Pairs<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        warnings: Option<&'a [String]>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Patched<'a> {
        allowed: bool,
        #[serde(skip_serializing_if = "Pairs::is_empty")]
        audit_annotations: Pairs<'a>,
        patch: String,
        patch_type: &'static str,
        status: SortedStatus<'a>,
        uid: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        warnings: Option<&'a [String]>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Review<'a, R> {
        api_version: &'a str,
        kind: &'a str,
        response: R,
    }
    let annotations = sorted(&resp.audit_annotations);
    let warnings = resp.warnings.as_deref();
    // Room for the texts and a few escapes, so that the answer is written without regrowing.
    let texts = resp.result.message.len()
        + annotations
            .iter()
            .map(|(k, v)| k.len() + v.len() + 6)
            .sum::<usize>()
        + warnings.map_or(0, |w| w.iter().map(|w| w.len() + 3).sum());
    let mut out = Vec::with_capacity(256 + texts + texts / 8);
    let r = &resp.result;
    if resp.patch.is_none() && r.metadata.is_none() && r.details.is_none() {
        // Every validating answer: written by hand, the same bytes as `Plain` below (kube-core's
        // field order, its `skip_serializing_if`s), strings through `json::write_str`.
        use crate::json::write_str;
        out.extend_from_slice(b"{\"apiVersion\":");
        write_str(&mut out, &resp.types.api_version);
        out.extend_from_slice(b",\"kind\":");
        write_str(&mut out, &resp.types.kind);
        out.extend_from_slice(b",\"response\":{\"uid\":");
        write_str(&mut out, &resp.uid);
        out.extend_from_slice(if resp.allowed {
            b",\"allowed\":true,\"status\":{"
        } else {
            b",\"allowed\":false,\"status\":{"
        });
        let mut sep: &[u8] = b"";
        if let Some(status) = &r.status {
            out.extend_from_slice(match status {
                kube::core::response::StatusSummary::Success => b"\"status\":\"Success\"",
                kube::core::response::StatusSummary::Failure => b"\"status\":\"Failure\"",
            });
            sep = b",";
        }
        if r.code != 0 {
            out.extend_from_slice(sep);
            out.extend_from_slice(b"\"code\":");
            out.extend_from_slice(decimal(usize::from(r.code), &mut [0; 20]).as_bytes());
            sep = b",";
        }
        if !r.message.is_empty() {
            out.extend_from_slice(sep);
            out.extend_from_slice(b"\"message\":");
            write_str(&mut out, &r.message);
            sep = b",";
        }
        if !r.reason.is_empty() {
            out.extend_from_slice(sep);
            out.extend_from_slice(b"\"reason\":");
            write_str(&mut out, &r.reason);
        }
        out.push(b'}');
        if !annotations.is_empty() {
            out.extend_from_slice(b",\"auditAnnotations\":{");
            for (i, (k, v)) in annotations.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(&mut out, k);
                out.push(b':');
                write_str(&mut out, v);
            }
            out.push(b'}');
        }
        if let Some(warnings) = warnings {
            out.extend_from_slice(b",\"warnings\":[");
            for (i, w) in warnings.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(&mut out, w);
            }
            out.push(b']');
        }
        out.extend_from_slice(b"}}");
        return Ok(out);
    }
    let written = match &resp.patch {
        None => serde_json::to_writer(
            &mut out,
            &Review {
                api_version: &resp.types.api_version,
                kind: &resp.types.kind,
                response: Plain {
                    uid: &resp.uid,
                    allowed: resp.allowed,
                    status: &resp.result,
                    audit_annotations: Pairs(&annotations),
                    warnings,
                },
            },
        ),
        Some(patch) => serde_json::to_writer(
            &mut out,
            &Review {
                api_version: &resp.types.api_version,
                kind: &resp.types.kind,
                response: Patched {
                    allowed: resp.allowed,
                    audit_annotations: Pairs(&annotations),
                    patch: base64::engine::general_purpose::STANDARD.encode(patch),
                    patch_type: "JSONPatch",
                    status: SortedStatus {
                        code: r.code,
                        details: as_value(r.details.as_ref())?,
                        message: &r.message,
                        metadata: as_value(r.metadata.as_ref())?,
                        reason: &r.reason,
                        status: r.status.as_ref(),
                    },
                    uid: &resp.uid,
                    warnings,
                },
            },
        ),
    };
    written.map_err(|e| BadReview::Encode(e.to_string()))?;
    Ok(out)
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

    /// What `encode` wrote before it wrote the response directly: kube-core's review, through
    /// a `Value` when there is a patch.
    fn encode_through_kube(resp: AdmissionResponse) -> Vec<u8> {
        let review = resp.into_review();
        let Some(patch) = review.response.as_ref().and_then(|r| r.patch.as_ref()) else {
            return serde_json::to_vec(&review).expect("encodes");
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(patch);
        let mut value = serde_json::to_value(&review).expect("value");
        if let Some(slot) = value.pointer_mut("/response/patch") {
            *slot = serde_json::Value::String(b64);
        }
        serde_json::to_vec(&value).expect("encodes")
    }

    #[test]
    fn responses_are_encoded_as_kube_core_encodes_them() {
        let req = request_of(&fixture("pod-create-by-replicaset.json"));
        let base = || AdmissionResponse::from(&req);
        let annotated = |mut r: AdmissionResponse| {
            r.audit_annotations.insert(
                AUDIT_ANNOTATION.to_owned(),
                "[\"[x] spec (deny)\"]".to_owned(),
            );
            r
        };
        let warned = |mut r: AdmissionResponse| {
            r.warnings = Some(vec!["w \"1\"".to_owned(), "w\u{e9}2".to_owned()]);
            r
        };
        let denied = |r: AdmissionResponse| {
            let mut r = r.deny("meshguard: 1 violation:\n[x] \"quoted\" \u{2026}");
            r.result.code = 403;
            r.result.reason = "Forbidden".into();
            r.result.status = Some(kube::core::response::StatusSummary::Failure);
            r
        };
        let patched = |r: AdmissionResponse| {
            r.with_patch(json_patch::Patch(vec![crate::mutation::add(
                ["metadata", "labels", "a"],
                serde_json::json!("b"),
            )]))
            .expect("patch")
        };
        let cases = [
            base(),
            annotated(base()),
            warned(annotated(base())),
            denied(warned(annotated(base()))),
            denied(base()),
            too_large(base(), 32 << 20),
            {
                let mut r = base();
                r.warnings = Some(Vec::new());
                r
            },
            {
                let mut r = base();
                r.result = kube::core::response::Status::success();
                r
            },
            patched(base()),
            patched(warned(annotated(base()))),
            patched(denied(base())),
        ];
        for resp in cases {
            let want = encode_through_kube(resp.clone());
            let got = encode(resp).expect("encodes");
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want)
            );
        }
        // Several audit annotations are written in key order (kube-core's HashMap had none).
        let mut two = annotated(base());
        two.audit_annotations
            .insert(IMPACT_ANNOTATION.to_owned(), "[]".to_owned());
        let got = String::from_utf8(encode(two).expect("encodes")).expect("utf8");
        assert!(
            got.contains(r#""auditAnnotations":{"impact":"[]","violations":"#),
            "{got}"
        );
    }

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
        // The pod spec is read through the typed model, from its text (no tree is built): the
        // same as from kube's whole decode.
        use crate::model::workload::PodTemplate;
        let (a, b) = (
            PodTemplate::of(Kind::Pod, &o).expect("ours"),
            PodTemplate::of(Kind::Pod, &t).expect("theirs"),
        );
        assert_eq!(a.service_account(), b.service_account());
        assert_eq!(a.host_network(), b.host_network());
        assert_eq!(a.labels(), b.labels());
        let containers = |t: &PodTemplate<'_>| {
            t.containers()
                .map(|c| {
                    let ports: Vec<_> = c
                        .ports()
                        .map(|(_, p)| crate::model::ok(&p.container_port).copied())
                        .collect();
                    (
                        c.list,
                        c.name().to_owned(),
                        c.image().map(str::to_owned),
                        ports,
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(containers(&a), containers(&b));
        assert!(!containers(&a).is_empty());
        assert!(t.data["spec"].get("volumes").is_some());
        assert!(o.data.get("spec").is_none());
        assert_eq!(
            ours.old_object.expect("old").0.metadata.name,
            theirs.old_object.expect("old").metadata.name
        );
    }

    #[test]
    fn fields_checked_but_not_built_are_refused_as_kube_core_refuses_them() {
        let review = fixture("pod-create-by-replicaset.json");
        let message = |e: String| {
            let e = e.split(" at line").next().unwrap_or("");
            e.strip_prefix("request body is not a valid AdmissionReview: ")
                .unwrap_or(e)
                .to_owned()
        };
        for (field, value) in [
            ("resource", serde_json::json!(5)),
            (
                "resource",
                serde_json::json!({"group": "", "version": "v1"}),
            ),
            (
                "resource",
                serde_json::json!({"group": 1, "version": "v1", "resource": "pods"}),
            ),
            (
                "requestKind",
                serde_json::json!({"group": "", "kind": "Pod"}),
            ),
            ("requestKind", serde_json::json!("Pod")),
            ("requestResource", serde_json::json!([])),
            ("requestSubResource", serde_json::json!(7)),
        ] {
            let mut r = review.clone();
            r["request"][field] = value;
            let body = serde_json::to_vec(&r).expect("json");
            let ours = decode_review(&body).map(|_| ()).expect_err("refused");
            let theirs =
                serde_json::from_slice::<AdmissionReview<kube::core::DynamicObject>>(&body)
                    .map(|_| ())
                    .expect_err("kube refuses");
            assert_eq!(
                message(ours.to_string()),
                message(theirs.to_string()),
                "{field}"
            );
        }
        let mut r = review.clone();
        r["request"]["userInfo"]["uid"] = serde_json::json!(5);
        let body = serde_json::to_vec(&r).expect("json");
        let ours = decode_review(&body).map(|_| ()).expect_err("refused");
        assert!(ours.to_string().contains("expected a string"), "{ours}");
        // What is not built reads as absent; what is read is kept.
        let req: AdmissionRequest<ReviewObject> =
            decode_review(&serde_json::to_vec(&review).expect("json"))
                .expect("decodes")
                .try_into()
                .expect("request");
        assert!(req.request_kind.is_none() && req.request_resource.is_none());
        assert_eq!(req.kind.kind, "Pod");
        assert!(req.user_info.username.is_some() && req.user_info.groups.is_some());
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
            excepted: Vec::new(),
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

    /// Answer `review` with the default policy, no cluster, and these limits.
    fn answer_within(
        review: &serde_json::Value,
        limits: DecodeLimits,
        memory: Option<Arc<Budget>>,
    ) -> Result<serde_json::Value, BadReview> {
        let mut admission = Admission::new(
            EngineHandle::new(crate::engine::Engine::new(
                crate::config::Policy::default(),
                Default::default(),
                None,
            )),
            Metrics::new().expect("metrics"),
            Arc::new(crate::context::NoCluster),
        );
        admission.decode_limits = limits;
        admission.memory = memory;
        let body = serde_json::to_vec(review).expect("json");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let out =
            rt.block_on(admission.handle(Webhook::Validate, &body, Duration::from_secs(5)))?;
        let v: serde_json::Value = serde_json::from_slice(&out).expect("response");
        Ok(v["response"].clone())
    }

    fn fixture(name: &str) -> serde_json::Value {
        let path = format!(
            "{}/tests/fixtures/admission/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json")
    }

    const ONE_MIB: DecodeLimits = DecodeLimits {
        max_decoded_bytes: 1024 * 1024,
    };

    #[test]
    fn bodies_decoded_as_text_are_refused_with_the_words_bytes_were() {
        // `decode_review` checks UTF-8 once and decodes text; what it refuses must be refused
        // with the words (and line and column) of a decode from the bytes, as before.
        let body = serde_json::to_vec(&fixture("pod-create-by-replicaset.json")).expect("json");
        let bytes_error = |b: &[u8]| {
            serde_json::from_slice::<Envelope>(b)
                .err()
                .map(|e| BadReview::from(e).to_string())
        };
        let text_error = |b: &[u8]| decode_review(b).err().map(|e| e.to_string());
        let name = body
            .windows(6)
            .position(|w| w == b"\"name\"")
            .expect("a name key");
        let mut cases: Vec<Vec<u8>> = vec![
            body.clone(),
            body[..body.len() / 2].to_vec(),
            body[..body.len() - 1].to_vec(),
        ];
        // Not UTF-8 inside a string (decoded from the bytes), a syntax error in valid text, a
        // non-ASCII string, a repeated envelope key.
        for (at, insert) in [
            (name + 2, &b"\xff"[..]),
            (name + 2, &b"\xc3\x28"[..]),
            (name, &b"}"[..]),
            (name + 2, "é€😀".as_bytes()),
            (1, &b"\"kind\":\"AdmissionReview\","[..]),
        ] {
            let mut b = body.clone();
            b.splice(at..at, insert.iter().copied());
            cases.push(b);
        }
        let mut refused = 0;
        for b in &cases {
            assert_eq!(
                text_error(b),
                bytes_error(b),
                "{}",
                String::from_utf8_lossy(b)
            );
            refused += usize::from(text_error(b).is_some());
        }
        assert!(refused >= 5, "only {refused} refused");
        assert!(text_error(&body).is_none());
    }

    #[test]
    fn objects_too_large_to_decode_are_refused_never_judged_in_part() {
        // Allowed as it is; with a list in its spec that takes more than the limit to build, it
        // is refused as too large (a partial object is never judged: the cut-off part could
        // hold what a rule denies).
        let mut review = fixture("peerauthentication-create-v1beta1.json");
        let resp = answer_within(&review, ONE_MIB, None).expect("answered");
        assert_eq!(resp["allowed"], true, "{resp}");
        review["request"]["object"]["spec"]["padding"] = serde_json::json!(vec![0; 100_000]);
        let resp = answer_within(&review, ONE_MIB, None).expect("answered");
        assert_eq!(resp["allowed"], false, "{resp}");
        assert_eq!(resp["status"]["code"], 413);
        let message = resp["status"]["message"].as_str().expect("message");
        assert!(
            message.contains(&format!("[{TOO_LARGE_RULE}]")),
            "{message}"
        );
        assert!(resp["auditAnnotations"][AUDIT_ANNOTATION]
            .as_str()
            .is_some_and(|a| a.contains(TOO_LARGE_RULE)));
        // Within a larger limit the same object is judged (and allowed).
        let roomy = DecodeLimits {
            max_decoded_bytes: 64 * 1024 * 1024,
        };
        assert_eq!(
            answer_within(&review, roomy, None).expect("answered")["allowed"],
            true
        );

        // The same for the old object of a DELETE, for maps (metadata labels), and for
        // `userInfo` (nothing a client inflates is built unbounded).
        let mut delete = fixture("peerauthentication-delete-strict-v1beta1.json");
        let labels: serde_json::Map<String, serde_json::Value> = (0..20_000)
            .map(|i| (format!("l{i}"), serde_json::json!("v")))
            .collect();
        delete["request"]["oldObject"]["metadata"]["labels"] = serde_json::Value::Object(labels);
        let resp = answer_within(&delete, ONE_MIB, None).expect("answered");
        assert_eq!(resp["status"]["code"], 413, "{resp}");
        let mut r = fixture("peerauthentication-create-v1beta1.json");
        r["request"]["userInfo"] =
            serde_json::json!({"username": "u", "groups": vec!["g"; 100_000]});
        let resp = answer_within(&r, ONE_MIB, None).expect("answered");
        assert_eq!(resp["status"]["code"], 413, "userInfo: {resp}");
        // `options` is scanned past without being built (nothing reads it): however large,
        // it costs the meter nothing, and the review is judged whole.
        let mut r = fixture("peerauthentication-create-v1beta1.json");
        r["request"]["options"] = serde_json::json!({"a": vec![vec![0; 10]; 20_000]});
        let resp = answer_within(&r, ONE_MIB, None).expect("answered");
        assert_eq!(resp["allowed"], true, "options: {resp}");

        // A kind meshguard does not judge passes, whatever its size.
        let mut other = review.clone();
        other["request"]["kind"]["kind"] = serde_json::json!("ConfigMap");
        other["request"]["kind"]["group"] = serde_json::json!("");
        other["request"]["kind"]["version"] = serde_json::json!("v1");
        assert_eq!(
            answer_within(&other, ONE_MIB, None).expect("answered")["allowed"],
            true
        );
    }

    #[test]
    fn a_full_memory_budget_answers_busy_and_frees_what_it_held() {
        let review = fixture("peerauthentication-update-strict-to-permissive.json");
        let budget = Budget::new(4 * 1024 * 1024);
        let mut hog = budget.reserve();
        assert!(hog.grow(4 * 1024 * 1024 - 1000));
        let err = answer_within(&review, DecodeLimits::default(), Some(budget.clone()))
            .expect_err("no room");
        assert!(matches!(err, BadReview::Busy), "{err}");
        assert_eq!(budget.used(), 4 * 1024 * 1024 - 1000, "nothing kept");
        drop(hog);
        let resp = answer_within(&review, DecodeLimits::default(), Some(budget.clone()))
            .expect("answered");
        assert_eq!(resp["allowed"], false);
        assert_eq!(
            budget.used(),
            0,
            "the decoded review's bytes are given back"
        );
    }

    #[test]
    fn uids_are_bounded() {
        let mut review = fixture("peerauthentication-update-strict-to-permissive.json");
        review["request"]["uid"] = serde_json::json!("u".repeat(MAX_UID_BYTES + 1));
        let err = answer_within(&review, DecodeLimits::default(), None).expect_err("refused");
        assert!(err.to_string().contains("request.uid"), "{err}");
    }

    #[test]
    fn deny_messages_and_the_audit_annotation_are_capped_with_the_count_left_out() {
        use crate::finding::{Finding, Violation};
        let findings: Vec<Finding> = (0..200)
            .map(|i| Finding {
                rule: "ap-wildcard-source",
                action: if i % 2 == 0 {
                    Action::Deny
                } else {
                    Action::Audit
                },
                violation: Violation::new(
                    format!("spec.rules[{i}]"),
                    format!("quotes \"{}\"", "x".repeat(100_000)),
                    "fix it",
                ),
            })
            .collect();
        let eval = Evaluation {
            findings,
            exempt: false,
            excepted: Vec::new(),
        };
        let req: AdmissionRequest<ReviewObject> = decode_review(include_bytes!(
            "../tests/fixtures/admission/peerauthentication-update-strict-to-permissive.json"
        ))
        .expect("decodes")
        .try_into()
        .expect("request");
        let (resp, outcome) = decide(AdmissionResponse::from(&req), &eval);
        assert_eq!(outcome, Outcome::Denied);
        let m = &resp.result.message;
        assert!(m.len() <= MAX_DENY_MESSAGE, "{}", m.len());
        assert!(m.starts_with("meshguard: 100 violations:"), "{}", &m[..80]);
        assert!(m.contains("more bytes)"), "each quoted value is clipped");
        let tail = m.lines().last().expect("lines");
        assert!(
            tail.starts_with("… and ") && tail.contains(" more"),
            "{tail}"
        );
        let annotation = &resp.audit_annotations[AUDIT_ANNOTATION];
        assert!(annotation.len() <= AUDIT_ANNOTATION_MAX);
        let entries: Vec<String> = serde_json::from_str(annotation).expect("still a JSON list");
        assert!(
            entries.last().is_some_and(|e| e.starts_with("… and ")),
            "{entries:?}"
        );
        let encoded = encode(resp).expect("encodes");
        assert!(encoded.len() < 48 * 1024, "{}", encoded.len());
    }

    fn request_of(review: &serde_json::Value) -> AdmissionRequest<ReviewObject> {
        let body = serde_json::to_vec(review).expect("json");
        decode_review(&body)
            .expect("decodes")
            .try_into()
            .expect("request")
    }

    #[test]
    fn malformed_reviews_are_refused_not_judged_as_something_else() {
        // A PeerAuthentication request carrying a Pod.
        let mut pod_as_pa = fixture("peerauthentication-create-disable-denied.json");
        let pod = fixture("pod-create-bare-with-serviceaccount.json")["request"]["object"].clone();
        pod_as_pa["request"]["object"] = pod;
        let err = recognise_checked(&request_of(&pod_as_pa)).expect_err("refused");
        assert!(
            err.to_string().contains("request.kind is security.istio.io/v1/PeerAuthentication but request.object is v1 Pod"),
            "{err}"
        );
        // The same kind in another version is another object too.
        let mut other_version = fixture("peerauthentication-create-disable-denied.json");
        other_version["request"]["object"]["apiVersion"] =
            serde_json::json!("security.istio.io/v1beta1");
        assert!(recognise_checked(&request_of(&other_version)).is_err());
        // CREATE and UPDATE without object, UPDATE and DELETE without oldObject.
        for (file, field, missing) in [
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
            let mut r = fixture(file);
            r["request"][field] = serde_json::Value::Null;
            let err = recognise_checked(&request_of(&r)).expect_err("refused");
            assert!(err.to_string().contains(missing), "{file} {field}: {err}");
            assert!(matches!(err, BadReview::Malformed(_)));
        }
        // Kinds meshguard does not judge pass as before, malformed or not.
        let mut other = fixture("deployment-scale-subresource-update.json");
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
        let mut r = fixture("pod-update-labels.json");
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
        let mut r = fixture("pod-create-by-replicaset.json");
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
    fn control_characters_are_found_wherever_they_are() {
        for len in 0..20 {
            for at in 0..len {
                for c in (0u8..0x80).map(char::from) {
                    let mut s = "a".repeat(len);
                    s.replace_range(at..=at, &c.to_string());
                    assert_eq!(ascii_control(s.as_bytes()), c.is_ascii_control(), "{s:?}");
                }
            }
            assert!(!ascii_control("a".repeat(len).as_bytes()));
        }
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        let s = "é".repeat(300);
        let t = truncate(s.clone(), 256);
        assert!(t.len() <= 256);
        assert!(t.ends_with('…'));
    }

    /// The tutorial's manifests as the cluster, indexed for `impact`.
    fn tutorial_cluster() -> (Inventory, crate::reach::impact::ImpactIndex) {
        let mut loaded = crate::manifest::Loaded::default();
        for (name, text) in [
            (
                "test-apps.yaml",
                include_str!("../tests/fixtures/tutorial/test-apps.yaml"),
            ),
            (
                "service-accounts.yaml",
                include_str!("../tests/fixtures/tutorial/service-accounts.yaml"),
            ),
            (
                "peer-auth-strict.yaml",
                include_str!("../tests/fixtures/tutorial/peer-auth-strict.yaml"),
            ),
            (
                "authz-deny-all.yaml",
                include_str!("../tests/fixtures/tutorial/authz-deny-all.yaml"),
            ),
            (
                "authz-rbac.yaml",
                include_str!("../tests/fixtures/tutorial/authz-rbac.yaml"),
            ),
        ] {
            crate::manifest::parse_into(name, text, &mut loaded);
        }
        let mut prepared = crate::check::prepare(&mut loaded, "default", false, true);
        prepared.inventory.insert_namespace(
            "production",
            [("istio-injection".to_owned(), "enabled".to_owned())].into(),
        );
        let mesh = crate::check::mesh_context(&prepared, None, None);
        let index = crate::reach::impact::ImpactIndex::new(
            prepared.inventory.clone(),
            &mesh,
            "cluster.local",
        );
        (prepared.inventory, index)
    }

    /// An UPDATE of the tutorial's backend-rbac whose first rule allows `paths`.
    fn rbac_update(paths: serde_json::Value) -> serde_json::Value {
        let policy = |paths: serde_json::Value| {
            serde_json::json!({
                "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                "metadata": {"name": "backend-rbac", "namespace": "production"},
                "spec": {"selector": {"matchLabels": {"app": "backend"}}, "rules": [
                    {"from": [{"source": {"principals": ["cluster.local/ns/production/sa/frontend"]}}],
                     "to": [{"operation": {"methods": ["GET"], "paths": paths}}]}]}
            })
        };
        serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "impact-1",
                "kind": {"group": "security.istio.io", "version": "v1", "kind": "AuthorizationPolicy"},
                "resource": {"group": "security.istio.io", "version": "v1", "resource": "authorizationpolicies"},
                "requestKind": {"group": "security.istio.io", "version": "v1", "kind": "AuthorizationPolicy"},
                "requestResource": {"group": "security.istio.io", "version": "v1", "resource": "authorizationpolicies"},
                "name": "backend-rbac", "namespace": "production", "operation": "UPDATE",
                "userInfo": {"username": "alice"},
                "object": policy(paths),
                "oldObject": policy(serde_json::json!(["/api/data"])),
                "dryRun": false
            }
        })
    }

    fn answer_with_impact(
        setting: crate::config::ImpactSetting,
        review: &serde_json::Value,
    ) -> serde_json::Value {
        let (cluster, index) = tutorial_cluster();
        let policy = crate::config::Policy {
            impact: setting,
            ..Default::default()
        };
        let admission = Admission::new(
            EngineHandle::new(crate::engine::Engine::new(policy, Default::default(), None)),
            Metrics::new().expect("metrics"),
            Arc::new(cluster),
        );
        admission.impact.set(index);
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

    #[test]
    fn impact_warns_what_an_update_opens_and_costs_nothing_when_off() {
        use crate::config::ImpactSetting;
        let widen = rbac_update(serde_json::json!(["/api/data", "/api/export"]));
        let resp = answer_with_impact(ImpactSetting::Warn, &widen);
        assert_eq!(resp["allowed"], true, "{resp}");
        let want = "[impact] this change lets cluster.local/ns/production/sa/frontend call backend:80 (GET /api/export)";
        assert_eq!(resp["warnings"], serde_json::json!([want]), "{resp}");
        assert_eq!(
            resp["auditAnnotations"]["impact"],
            serde_json::json!([want.trim_start_matches("[impact] ")]).to_string(),
            "{resp}"
        );
        // audit: the annotation only.
        let resp = answer_with_impact(ImpactSetting::Audit, &widen);
        assert!(resp.get("warnings").is_none_or(|w| w.is_null()), "{resp}");
        assert!(resp["auditAnnotations"]["impact"].is_string(), "{resp}");
        // off: nothing, though the index is there.
        let resp = answer_with_impact(ImpactSetting::Off, &widen);
        assert!(resp.get("warnings").is_none_or(|w| w.is_null()), "{resp}");
        assert!(resp["auditAnnotations"].get("impact").is_none(), "{resp}");
        // Narrowing opens nothing: quiet.
        let mut narrow = rbac_update(serde_json::json!(["/api/data"]));
        narrow["request"]["oldObject"]["spec"]["rules"][0]["to"][0]["operation"]["paths"] =
            serde_json::json!(["/api/data", "/api/export"]);
        let resp = answer_with_impact(ImpactSetting::Warn, &narrow);
        assert_eq!(resp["allowed"], true, "{resp}");
        assert!(resp.get("warnings").is_none_or(|w| w.is_null()), "{resp}");
        // A denied change opens nothing either: no impact is said.
        let mut all = rbac_update(serde_json::json!(["/api/data"]));
        all["request"]["object"]["spec"]["rules"] = serde_json::json!([{}]);
        let resp = answer_with_impact(ImpactSetting::Warn, &all);
        assert_eq!(resp["allowed"], false, "{resp}");
        assert!(resp["auditAnnotations"].get("impact").is_none(), "{resp}");
    }
}
