//! Admission cases in `meshguard test`: what the webhook answers to a CREATE, UPDATE or DELETE,
//! written down next to the policy and checked in CI. A test file may hold them beside
//! authorization requests (`policy_tests`); an entry with an `admission` key is an admission
//! case:
//!
//! ```yaml
//! manifests: [../cluster/]     # cluster state the rules look up (Namespaces, ServiceAccounts,
//!                              # the mesh's ConfigMaps and webhooks, PolicyExceptions), as check
//!                              # reads them; optional for admission cases
//! policy: ../policy.yaml       # optional: the policy (else --config, else the built-in one)
//! now: 2026-05-01T00:00:00Z    # optional: the time exceptions expire by (else the clock)
//! tests:
//!   - name: STRICT to PERMISSIVE is refused
//!     admission:
//!       webhook: validate      # validate (default) | mutate
//!       operation: UPDATE      # CREATE (default) | UPDATE | DELETE
//!       object: {...}          # inline, or objectFile: FILE[#[KIND/]NAME] (relative to this file)
//!       oldObject: {...}       # or oldObjectFile: …; UPDATE needs one; DELETE's object is the old one
//!       userInfo: {username: alice, groups: [dev]}    # optional
//!       dryRun: true           # optional
//!     now: 2026-07-01          # optional, this case only
//!     expect:
//!       result: denied         # allowed | warned | denied
//!       rules: [pa-permissive-mtls]   # the rule ids the answer names (any action), as a set
//!       excepted: []           # the rule ids exceptions covered
//!       message: PERMISSIVE    # text the deny message or a warning contains
//!       patch: [...]           # mutate: the JSON patch, exactly ([] for none)
//!       object: {...}          # mutate: fields the patched object has
//! ```
//!
//! Each case becomes an `admission.k8s.io/v1` AdmissionReview and goes through
//! [`Admission::handle`], the webhook's own decode → recognise → evaluate → decide → respond
//! (no HTTP), with the file's manifests as the cluster view: a verdict in a test file is the
//! verdict in the cluster. `meshguard test --record REVIEW.json…` turns captured reviews into
//! such entries.

use super::results::Reported;
use super::TestArgs;
use crate::admission::{Admission, Webhook};
use crate::config::exceptions::{self, Clock, FixedClock, SystemClock};
use crate::config::Policy;
use crate::engine::{Engine, EngineHandle};
use crate::inventory::Inventory;
use crate::load::{Loader, MeshArgs, PolicyArgs};
use crate::metrics::Metrics;
use crate::resource::Kind;
use base64::Engine as _;
use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;
use serde_json::{json, Value};
use serde_saphyr::Spanned;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The key that makes a test entry an admission case.
const MARK: &str = "admission";

/// Whether a test file holds admission cases.
pub(super) fn has_cases(text: &str) -> bool {
    serde_saphyr::from_str::<Value>(text)
        .ok()
        .and_then(|v| {
            v.get("tests")
                .and_then(Value::as_array)
                .map(|t| t.iter().any(|e| e.get(MARK).is_some()))
        })
        .unwrap_or(false)
}

/// A file with admission cases, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MixedFile {
    #[serde(default)]
    manifests: Vec<String>,
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    now: Option<String>,
    tests: Vec<Spanned<Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Entry {
    name: String,
    admission: RequestSpec,
    #[serde(default)]
    now: Option<String>,
    expect: Expect,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum WebhookName {
    #[default]
    Validate,
    Mutate,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
enum OperationName {
    #[default]
    #[serde(rename = "CREATE")]
    Create,
    #[serde(rename = "UPDATE")]
    Update,
    #[serde(rename = "DELETE")]
    Delete,
}

impl OperationName {
    fn as_str(self) -> &'static str {
        match self {
            OperationName::Create => "CREATE",
            OperationName::Update => "UPDATE",
            OperationName::Delete => "DELETE",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RequestSpec {
    #[serde(default)]
    webhook: WebhookName,
    #[serde(default)]
    operation: OperationName,
    #[serde(default)]
    object: Option<Value>,
    #[serde(default)]
    object_file: Option<String>,
    #[serde(default)]
    old_object: Option<Value>,
    #[serde(default)]
    old_object_file: Option<String>,
    #[serde(default)]
    user_info: Option<UserInfo>,
    #[serde(default)]
    dry_run: bool,
    /// The request's namespace when the object names none (default: `-n`).
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Clone, Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct UserInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Allowed,
    Warned,
    Denied,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Warned => "warned",
            Verdict::Denied => "denied",
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Expect {
    #[serde(default)]
    result: Option<Verdict>,
    #[serde(default)]
    rules: Option<Vec<String>>,
    #[serde(default)]
    excepted: Option<Vec<String>>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    patch: Option<Value>,
    #[serde(default)]
    object: Option<Value>,
}

/// One admission case ready to run.
#[derive(Clone, Debug)]
struct Case {
    file: String,
    line: usize,
    name: String,
    webhook: Webhook,
    operation: OperationName,
    object: Option<Value>,
    old_object: Option<Value>,
    user_info: Option<UserInfo>,
    dry_run: bool,
    namespace: Option<String>,
    now: Option<Timestamp>,
    expect: Expect,
}

/// The admission cases of one file, with what they run against.
struct FileCases {
    path: PathBuf,
    manifests: Vec<PathBuf>,
    policy: Option<PathBuf>,
    now: Option<Timestamp>,
    cases: Vec<Case>,
}

/// A file split by [`Suites::take_file`]: its manifests, its request entries (line and entry,
/// for `policy_tests`) and errors about its admission cases (`file:line: …`).
pub(super) struct Split {
    pub manifests: Vec<PathBuf>,
    pub requests: Vec<(usize, Value)>,
    pub errors: Vec<String>,
}

/// Every admission case of a run.
#[derive(Default)]
pub(super) struct Suites {
    files: Vec<FileCases>,
}

fn parse_time(s: &str, at: &str) -> Result<Timestamp, String> {
    exceptions::parse_expires(s).map_err(|_| {
        format!("{at}: {s:?} is not a date (2026-06-30) or an RFC 3339 time (2026-06-30T12:00:00Z)")
    })
}

/// `file:line: message` from a saphyr error.
fn yaml_error(file: &str, e: &serde_saphyr::Error) -> String {
    let line = e.location().map_or(0, |l| l.line());
    let msg = e.to_string();
    let msg = msg.lines().next().unwrap_or("invalid YAML").trim();
    let msg = msg.strip_prefix("error: ").unwrap_or(msg);
    let msg = msg
        .strip_prefix("line ")
        .and_then(|m| m.split_once(": ").map(|(_, m)| m))
        .unwrap_or(msg);
    format!("{file}:{line}: {msg}")
}

impl Suites {
    /// Take a file's admission cases; hand back its manifests and its request entries.
    pub(super) fn take_file(&mut self, path: &Path, text: &str) -> Result<Split, String> {
        let file = path.display().to_string();
        let parsed: MixedFile = serde_saphyr::from_str(text).map_err(|e| yaml_error(&file, &e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let now = parsed
            .now
            .as_deref()
            .map(|s| parse_time(s, &format!("{file}: now")))
            .transpose()?;
        let mut split = Split {
            manifests: parsed.manifests.iter().map(|m| base.join(m)).collect(),
            requests: Vec::new(),
            errors: Vec::new(),
        };
        let mut cases = Vec::new();
        for t in parsed.tests {
            let line = t.referenced.line() as usize;
            if t.value.get(MARK).is_none() {
                split.requests.push((line, t.value));
                continue;
            }
            let name = t
                .value
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            match case_of(base, &file, line, t.value) {
                Ok(c) => cases.push(c),
                Err(e) => split
                    .errors
                    .push(format!("{file}:{line}: test \"{name}\": {e}")),
            }
        }
        self.files.push(FileCases {
            path: path.to_path_buf(),
            manifests: split.manifests.clone(),
            policy: parsed.policy.as_ref().map(|p| base.join(p)),
            now,
            cases,
        });
        Ok(split)
    }

    /// Whether any case came from this file.
    pub(super) fn holds(&self, path: &Path) -> bool {
        self.files
            .iter()
            .any(|f| f.path == path && !f.cases.is_empty())
    }

    /// Run every case. `extra`: manifests from the command line; `test_files`: left out of
    /// manifest directories.
    pub(super) fn run(
        &self,
        args: &TestArgs,
        extra: &[PathBuf],
        test_files: &[PathBuf],
    ) -> Result<Vec<Reported>, Vec<String>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| vec![format!("cannot start the async runtime: {e}")])?;
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for f in self.files.iter().filter(|f| !f.cases.is_empty()) {
            let file = f.path.display().to_string();
            if args.live.cluster {
                errors.push(format!(
                    "{file}: admission cases read their cluster state from manifests, not --cluster"
                ));
                continue;
            }
            let policy = match load_policy(f.policy.as_deref().or(args.policy.config.as_deref())) {
                Ok(p) => p,
                Err(e) => {
                    errors.push(format!("{file}: {e}"));
                    continue;
                }
            };
            let paths: Vec<PathBuf> = f.manifests.iter().chain(extra).cloned().collect();
            let world = match World::load(&args.mesh, &paths, &args.input.namespace, test_files) {
                Ok(w) => w,
                Err(e) => {
                    errors.push(format!("{file}: {e}"));
                    continue;
                }
            };
            for case in &f.cases {
                let now = case.now.or(f.now);
                match run_case(&runtime, &policy, &world, now, case, &args.input.namespace) {
                    Ok(r) => out.push(r),
                    Err(e) => errors.push(format!(
                        "{}:{}: test \"{}\": {e}",
                        case.file, case.line, case.name
                    )),
                }
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }
}

fn load_policy(path: Option<&Path>) -> Result<Policy, String> {
    match path {
        Some(p) => crate::catalogue::load_policy(p).map_err(|e| e.to_string()),
        None => Ok(Policy::builtin()),
    }
}

/// The cluster the cases run against: the manifests' objects, mesh and PolicyExceptions.
struct World {
    inventory: Arc<Inventory>,
    mesh: Arc<crate::mesh::MeshContext>,
    exceptions: Vec<exceptions::Exception>,
}

impl World {
    /// The manifests' objects and mesh (with the mesh flags), as every batch command reads them.
    fn load(
        mesh: &MeshArgs,
        paths: &[PathBuf],
        namespace: &str,
        skip: &[PathBuf],
    ) -> Result<World, String> {
        // The cases carry their own policy: the loader reads only the manifests and the mesh.
        let loader = Loader::new(&PolicyArgs::default(), mesh)?;
        if paths.is_empty() {
            return Ok(World {
                inventory: Arc::new(Inventory::partial(Vec::new())),
                mesh: Arc::new(loader.manifests_mesh(&Default::default())),
                exceptions: Vec::new(),
            });
        }
        let loaded = loader.manifests_strict(paths, &mut std::io::empty(), namespace, skip)?;
        Ok(World {
            inventory: Arc::new(loaded.inventory),
            mesh: Arc::new(loaded.mesh),
            exceptions: loaded.exceptions,
        })
    }
}

/// Read an admission entry.
fn case_of(base: &Path, file: &str, line: usize, value: Value) -> Result<Case, String> {
    let e: Entry = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let r = e.admission;
    let object = pick(base, r.object, r.object_file.as_deref(), "object")?;
    let old_object = pick(
        base,
        r.old_object,
        r.old_object_file.as_deref(),
        "oldObject",
    )?;
    let (object, old_object) = match r.operation {
        OperationName::Create if object.is_none() => {
            return Err("a CREATE needs an object (object or objectFile)".into())
        }
        OperationName::Update if object.is_none() || old_object.is_none() => {
            return Err("an UPDATE needs object and oldObject".into())
        }
        // DELETE: the object being deleted is the review's oldObject.
        OperationName::Delete => match (object, old_object) {
            (Some(o), None) | (None, Some(o)) => (None, Some(o)),
            _ => {
                return Err(
                    "a DELETE names the object being deleted (object or oldObject, once)".into(),
                )
            }
        },
        _ => (object, old_object),
    };
    let x = &e.expect;
    if x.result.is_none()
        && x.rules.is_none()
        && x.excepted.is_none()
        && x.message.is_none()
        && x.patch.is_none()
        && x.object.is_none()
    {
        return Err(
            "expect nothing: give result, rules, excepted, message, patch or object".into(),
        );
    }
    if r.webhook == WebhookName::Validate && (x.patch.is_some() || x.object.is_some()) {
        return Err(
            "patch and object are what the mutating webhook answers: set webhook: mutate".into(),
        );
    }
    let now = e.now.as_deref().map(|s| parse_time(s, "now")).transpose()?;
    Ok(Case {
        file: file.to_owned(),
        line,
        name: e.name,
        webhook: match r.webhook {
            WebhookName::Validate => Webhook::Validate,
            WebhookName::Mutate => Webhook::Mutate,
        },
        operation: r.operation,
        object,
        old_object,
        user_info: r.user_info,
        dry_run: r.dry_run,
        namespace: r.namespace,
        now,
        expect: e.expect,
    })
}

/// An object given inline or as `FILE[#[KIND/]NAME]`.
fn pick(
    base: &Path,
    inline: Option<Value>,
    file: Option<&str>,
    what: &str,
) -> Result<Option<Value>, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(format!("give {what} or {what}File, not both")),
        (Some(v), None) => Ok(Some(v)),
        (None, None) => Ok(None),
        (None, Some(spec)) => {
            let (path, selector) = match spec.split_once('#') {
                Some((p, s)) => (p, Some(s)),
                None => (spec, None),
            };
            let full = base.join(path);
            let loaded =
                crate::manifest::load_from(std::slice::from_ref(&full), &mut std::io::empty())
                    .map_err(|e| format!("{what}File: {e}"))?;
            if let Some(e) = loaded.errors.first() {
                return Err(format!("{what}File: {e}"));
            }
            let found: Vec<&crate::manifest::ManifestObject> = loaded
                .objects
                .iter()
                .filter(|o| {
                    let Some(sel) = selector else { return true };
                    let name = o.object.metadata.name.as_deref().unwrap_or("");
                    let kind = o.object.types.as_ref().map_or("", |t| t.kind.as_str());
                    match sel.split_once('/') {
                        Some((k, n)) => k == kind && n == name,
                        None => sel == name,
                    }
                })
                .collect();
            match found.as_slice() {
                [one] => serde_json::to_value(&one.object)
                    .map(Some)
                    .map_err(|e| format!("{what}File: {e}")),
                [] => Err(format!(
                    "{what}File: no object {} in {}",
                    selector.unwrap_or("at all"),
                    full.display()
                )),
                _ => Err(format!(
                    "{what}File: {} objects in {}; name one with {path}#NAME or {path}#KIND/NAME",
                    found.len(),
                    full.display()
                )),
            }
        }
    }
}

/// `(group, version, kind, plural, namespaced)` of an object.
fn type_of(o: &Value) -> Result<(String, String, String, String, bool), String> {
    let api_version = o["apiVersion"]
        .as_str()
        .ok_or("the object has no apiVersion")?;
    let kind = o["kind"].as_str().ok_or("the object has no kind")?;
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let (plural, namespaced) = match Kind::from_gvk(group, version, kind) {
        Some(k) => (k.facts().plural.to_owned(), k.facts().namespaced),
        None if kind == exceptions::KIND => (exceptions::PLURAL.to_owned(), true),
        None => (format!("{}s", kind.to_ascii_lowercase()), true),
    };
    Ok((
        group.into(),
        version.into(),
        kind.into(),
        plural,
        namespaced,
    ))
}

/// The AdmissionReview the API server would send for a case.
fn review_of(
    case: &Case,
    n: usize,
    default_namespace: &str,
) -> Result<(Value, Option<Value>), String> {
    let subject = case
        .object
        .as_ref()
        .or(case.old_object.as_ref())
        .ok_or("no object")?;
    let (group, version, kind, plural, namespaced) = type_of(subject)?;
    let meta_ns = subject["metadata"]["namespace"].as_str();
    let namespace = namespaced.then(|| {
        meta_ns
            .or(case.namespace.as_deref())
            .unwrap_or(default_namespace)
            .to_owned()
    });
    // The API server sends namespaced objects with their namespace set.
    let fill = |o: &Option<Value>| {
        o.clone().map(|mut o| {
            if let (Some(ns), Some(meta)) = (&namespace, o.get_mut("metadata")) {
                if meta.get("namespace").is_none() {
                    meta["namespace"] = json!(ns);
                }
            }
            o
        })
    };
    let object = fill(&case.object);
    let old_object = fill(&case.old_object);
    let name = subject["metadata"]["name"].as_str().unwrap_or("");
    let user = match &case.user_info {
        Some(u) => serde_json::to_value(u).map_err(|e| e.to_string())?,
        None => json!({"username": "meshguard-test", "groups": ["system:authenticated"]}),
    };
    let mut request = json!({
        "uid": format!("meshguard-test-{n}"),
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": plural},
        "name": name,
        "operation": case.operation.as_str(),
        "userInfo": user,
        "object": object,
        "oldObject": old_object,
        "dryRun": case.dry_run,
    });
    if let Some(ns) = &namespace {
        request["namespace"] = json!(ns);
    }
    Ok((
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}),
        object,
    ))
}

/// What the webhook answered, read back from its response.
#[derive(Clone, Debug, Default)]
struct Answer {
    result: Option<Verdict>,
    rules: BTreeSet<String>,
    excepted: BTreeSet<String>,
    message: String,
    warnings: Vec<String>,
    patch: Option<Value>,
    /// Mutations applied (the webhook's own `meshguard_mutations_total`).
    mutations: BTreeSet<String>,
}

/// Read a response the way kube-apiserver and kubectl would.
fn read_answer(body: &[u8], metrics: &Metrics) -> Result<Answer, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("unreadable response: {e}"))?;
    let r = &v["response"];
    let allowed = r["allowed"].as_bool().ok_or("response without allowed")?;
    let mut a = Answer {
        message: r["status"]["message"].as_str().unwrap_or("").to_owned(),
        warnings: r["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str().map(str::to_owned))
            .collect(),
        ..Answer::default()
    };
    let mut warned = false;
    if let Some(annotation) = r["auditAnnotations"][crate::admission::AUDIT_ANNOTATION].as_str() {
        let entries: Vec<String> = serde_json::from_str(annotation)
            .map_err(|e| format!("the audit annotation is not a JSON list ({e}): {annotation}"))?;
        for e in entries {
            let Some(rule) = e
                .strip_prefix('[')
                .and_then(|s| s.split_once(']'))
                .map(|(r, _)| r)
            else {
                continue;
            };
            if e.contains(" (excepted by ") {
                a.excepted.insert(rule.to_owned());
            } else {
                warned |= e.contains(" (warn)");
                a.rules.insert(rule.to_owned());
            }
        }
    }
    a.result = Some(match (allowed, warned) {
        (false, _) => Verdict::Denied,
        (true, true) => Verdict::Warned,
        (true, false) => Verdict::Allowed,
    });
    if let Some(p) = r["patch"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(p)
            .map_err(|e| format!("patch is not base64: {e}"))?;
        a.patch =
            Some(serde_json::from_slice(&bytes).map_err(|e| format!("patch is not JSON: {e}"))?);
    }
    for m in crate::mutation::REGISTRY {
        for k in m.kinds {
            if metrics
                .mutations
                .get_metric_with_label_values(&[m.id, k.as_str()])
                .is_ok_and(|c| c.get() > 0)
            {
                a.mutations.insert(m.id.to_owned());
            }
        }
    }
    Ok(a)
}

/// Send one review through the webhook's code path.
fn answer(
    runtime: &tokio::runtime::Runtime,
    engine: Engine,
    world: &World,
    webhook: Webhook,
    body: &[u8],
) -> Result<Answer, String> {
    let metrics = Metrics::new().map_err(|e| e.to_string())?;
    let admission = Admission::new(
        EngineHandle::new(engine),
        metrics.clone(),
        world.inventory.clone(),
    );
    let out = runtime
        .block_on(admission.handle(webhook, body, Duration::from_secs(10)))
        .map_err(|e| format!("the webhook refused the review (HTTP 400): {e}"))?;
    read_answer(&out, &metrics)
}

fn engine_for(policy: &Policy, world: &World, now: Option<Timestamp>) -> Engine {
    let clock: Arc<dyn Clock> = match now {
        Some(t) => Arc::new(FixedClock(t)),
        None => Arc::new(SystemClock),
    };
    Engine::new(policy.clone(), world.mesh.clone(), None)
        .with_exception_resources(world.exceptions.clone())
        .with_clock(clock)
}

fn run_case(
    runtime: &tokio::runtime::Runtime,
    policy: &Policy,
    world: &World,
    now: Option<Timestamp>,
    case: &Case,
    default_namespace: &str,
) -> Result<Reported, String> {
    let (review, object) = review_of(case, case.line, default_namespace)?;
    let body = serde_json::to_vec(&review).map_err(|e| e.to_string())?;
    let got = answer(
        runtime,
        engine_for(policy, world, now),
        world,
        case.webhook,
        &body,
    )?;
    let mut mismatches = Vec::new();
    let x = &case.expect;
    let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<String>>();
    let list = |s: &BTreeSet<String>| {
        if s.is_empty() {
            "none".to_owned()
        } else {
            s.iter().cloned().collect::<Vec<_>>().join(", ")
        }
    };
    if let Some(want) = x.result {
        if got.result != Some(want) {
            let why = match got.rules.is_empty() {
                true => first_line(&got),
                false => list(&got.rules),
            };
            mismatches.push(format!(
                "expected {}, got {} ({why})",
                want.as_str(),
                got.result.map_or("no answer", Verdict::as_str)
            ));
        }
    }
    if let Some(want) = &x.rules {
        if set(want) != got.rules {
            mismatches.push(format!(
                "expected rules {}, got {}",
                list(&set(want)),
                list(&got.rules)
            ));
        }
    }
    if let Some(want) = &x.excepted {
        if set(want) != got.excepted {
            mismatches.push(format!(
                "expected excepted {}, got {}",
                list(&set(want)),
                list(&got.excepted)
            ));
        }
    }
    if let Some(want) = &x.message {
        let seen = got.message.contains(want.as_str())
            || got.warnings.iter().any(|w| w.contains(want.as_str()));
        if !seen {
            mismatches.push(format!(
                "expected a message or warning containing {want:?}, got {:?}",
                first_line(&got)
            ));
        }
    }
    let patch = got.patch.clone().unwrap_or_else(|| json!([]));
    if let Some(want) = &x.patch {
        if *want != patch {
            mismatches.push(format!("expected patch {want}, got {patch}"));
        }
    }
    if let Some(want) = &x.object {
        let mut patched = object.clone().unwrap_or(Value::Null);
        let ops: json_patch::Patch =
            serde_json::from_value(patch.clone()).map_err(|e| e.to_string())?;
        json_patch::patch(&mut patched, &ops)
            .map_err(|e| format!("the patch does not apply: {e}"))?;
        if let Some(at) = subset_mismatch(want, &patched, "") {
            mismatches.push(format!("the patched object differs at {at}"));
        }
    }
    let passed = mismatches.is_empty();
    let what = match (case.webhook, got.result) {
        (Webhook::Mutate, _) => match got.patch.as_ref().and_then(Value::as_array) {
            Some(ops) if !ops.is_empty() => format!("patched: {}", list(&got.mutations)),
            _ => "no patch".to_owned(),
        },
        (_, r) => {
            let mut s = r.map_or("no answer", Verdict::as_str).to_owned();
            if !got.rules.is_empty() {
                s.push_str(&format!(": {}", list(&got.rules)));
            }
            if !got.excepted.is_empty() {
                s.push_str(&format!("; excepted: {}", list(&got.excepted)));
            }
            s
        }
    };
    let text = if passed {
        format!("PASS  {}:{}  {} ({what})", case.file, case.line, case.name)
    } else {
        format!(
            "FAIL  {}:{}  {}: {}",
            case.file,
            case.line,
            case.name,
            mismatches.join("; ")
        )
    };
    let failure = (!passed).then(|| {
        (
            mismatches.join("; "),
            format!(
                "{}\n{}\nwarnings:\n{}",
                mismatches.join("\n"),
                got.message,
                got.warnings.join("\n")
            ),
        )
    });
    let json = json!({
        "kind": "admission",
        "file": case.file,
        "line": case.line,
        "name": case.name,
        "webhook": case.webhook.as_str(),
        "operation": case.operation.as_str(),
        "passed": passed,
        "mismatches": mismatches,
        "got": {
            "result": got.result.map(Verdict::as_str),
            "rules": got.rules,
            "excepted": got.excepted,
            "mutations": got.mutations,
            "patch": got.patch,
            "message": got.message,
            "warnings": got.warnings,
        },
    });
    Ok(Reported {
        file: case.file.clone(),
        line: case.line,
        name: case.name.clone(),
        passed,
        text,
        failure,
        json,
    })
}

fn first_line(a: &Answer) -> String {
    a.message
        .lines()
        .next()
        .map(str::to_owned)
        .or_else(|| a.warnings.first().cloned())
        .unwrap_or_default()
}

/// Where `have` lacks what `want` says: maps by key (extra keys allowed), everything else equal.
fn subset_mismatch(want: &Value, have: &Value, at: &str) -> Option<String> {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w.iter().find_map(|(k, wv)| {
            let path = format!("{at}.{k}");
            match h.get(k) {
                Some(hv) => subset_mismatch(wv, hv, &path),
                None => Some(format!("{path} (absent)")),
            }
        }),
        _ if want == have => None,
        _ => Some(format!(
            "{} (want {want}, have {have})",
            if at.is_empty() { "." } else { at }
        )),
    }
}

/// `meshguard test --record REVIEW.json…`: run captured AdmissionReviews through the webhook's
/// code path and print them as a test file (one validating case per review, and a mutating one
/// when the review gets a patch), with what meshguard answers now as the expectation: review it,
/// then commit it.
pub(super) fn record(
    args: &TestArgs,
    reviews: &[PathBuf],
    manifests: &[PathBuf],
    out: &mut dyn Write,
) -> Result<(), String> {
    let policy = load_policy(args.policy.config.as_deref())?;
    let world = World::load(&args.mesh, manifests, &args.input.namespace, &[])?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let mut entries = Vec::new();
    for path in reviews {
        let file = path.display().to_string();
        let body = std::fs::read(path).map_err(|e| format!("{file}: {e}"))?;
        let captured: Value =
            serde_json::from_slice(&body).map_err(|e| format!("{file}: not JSON: {e}"))?;
        let req = &captured["request"];
        if !req.is_object() {
            return Err(format!("{file}: not an AdmissionReview with a request"));
        }
        let stem = path
            .file_stem()
            .map_or_else(|| file.clone(), |s| s.to_string_lossy().into_owned());
        // What no check reads and nobody wants to review: managedFields, last-applied.
        let clean = |v: &Value| -> Option<Value> {
            if v.is_null() {
                return None;
            }
            let mut v = v.clone();
            if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("managedFields");
                if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                    a.remove("kubectl.kubernetes.io/last-applied-configuration");
                }
                if meta
                    .get("annotations")
                    .and_then(Value::as_object)
                    .is_some_and(|a| a.is_empty())
                {
                    meta.remove("annotations");
                }
            }
            Some(v)
        };
        let object = clean(&req["object"]);
        let old_object = clean(&req["oldObject"]);
        let subject = object
            .as_ref()
            .or(old_object.as_ref())
            .ok_or_else(|| format!("{file}: the review has no object"))?;
        let namespaced = type_of(subject).map_err(|e| format!("{file}: {e}"))?.4;
        let namespace = req["namespace"]
            .as_str()
            .filter(|_| namespaced && subject["metadata"]["namespace"].is_null())
            .map(str::to_owned);
        let user: UserInfo = serde_json::from_value(json!({
            "username": req["userInfo"]["username"],
            "uid": req["userInfo"]["uid"],
            "groups": req["userInfo"]["groups"].as_array().cloned().unwrap_or_default(),
        }))
        .map_err(|e| format!("{file}: userInfo: {e}"))?;
        let mut admission = Recorded {
            webhook: None,
            operation: req["operation"].as_str().unwrap_or("CREATE").to_owned(),
            namespace,
            user_info: user,
            dry_run: req["dryRun"].as_bool().filter(|d| *d),
            object,
            old_object,
        };
        let engine = || engine_for(&policy, &world, None);
        let validated = answer(&runtime, engine(), &world, Webhook::Validate, &body)
            .map_err(|e| format!("{file}: {e}"))?;
        entries.push(RecordedEntry {
            name: format!("{stem} (recorded)"),
            admission: admission.clone(),
            expect: RecordedExpect {
                result: validated.result,
                rules: Some(validated.rules.into_iter().collect()),
                excepted: (!validated.excepted.is_empty())
                    .then(|| validated.excepted.into_iter().collect()),
                patch: None,
            },
        });
        let mutated = answer(&runtime, engine(), &world, Webhook::Mutate, &body)
            .map_err(|e| format!("{file}: {e}"))?;
        if let Some(patch) = mutated
            .patch
            .filter(|p| p.as_array().is_some_and(|a| !a.is_empty()))
        {
            admission.webhook = Some("mutate");
            entries.push(RecordedEntry {
                name: format!("{stem} (recorded, mutate)"),
                admission,
                expect: RecordedExpect {
                    result: None,
                    rules: None,
                    excepted: None,
                    patch: Some(patch),
                },
            });
        }
    }
    let text =
        serde_saphyr::to_string(&RecordedFile { tests: entries }).map_err(|e| e.to_string())?;
    let sources: Vec<String> = reviews.iter().map(|p| p.display().to_string()).collect();
    let _ = writeln!(
        out,
        "# Recorded by `meshguard test --record` from {}: what meshguard answers now.\n# Check each expectation before committing it.",
        sources.join(", ")
    );
    let _ = out.write_all(text.as_bytes());
    Ok(())
}

/// `--record`'s output, in the order people read a test entry.
#[derive(serde::Serialize)]
struct RecordedFile {
    tests: Vec<RecordedEntry>,
}

#[derive(serde::Serialize)]
struct RecordedEntry {
    name: String,
    admission: Recorded,
    expect: RecordedExpect,
}

#[derive(Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Recorded {
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook: Option<&'static str>,
    operation: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    user_info: UserInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    dry_run: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    object: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_object: Option<Value>,
}

#[derive(serde::Serialize)]
struct RecordedExpect {
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rules: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    excepted: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_compare_maps_by_key_and_the_rest_exactly() {
        let have =
            json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}}, "spec": [1, 2]});
        assert_eq!(
            subset_mismatch(&json!({"metadata": {"labels": {"x": "1"}}}), &have, ""),
            None
        );
        assert_eq!(
            subset_mismatch(&json!({"metadata": {"labels": {"z": "1"}}}), &have, ""),
            Some(".metadata.labels.z (absent)".to_owned())
        );
        assert!(subset_mismatch(&json!({"spec": [1]}), &have, "").is_some());
    }

    #[test]
    fn admission_entries_are_recognised_and_checked() {
        assert!(has_cases(
            "tests:\n  - name: a\n    admission: {object: {}}\n    expect: {result: allowed}\n"
        ));
        assert!(!has_cases(
            "tests:\n  - name: a\n    from: a/b\n    to: c/d\n    expect: allow\n"
        ));
        let case = |v: Value| case_of(Path::new("."), "t.yaml", 3, v);
        let pa = json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "p"}});
        let e = case(json!({"name": "u", "admission": {"operation": "UPDATE", "object": pa}, "expect": {"result": "denied"}}))
            .expect_err("update without old object");
        assert!(e.contains("UPDATE needs object and oldObject"), "{e}");
        let e = case(json!({"name": "n", "admission": {"object": pa}, "expect": {}}))
            .expect_err("no expectation");
        assert!(e.contains("expect nothing"), "{e}");
        let e = case(json!({"name": "p", "admission": {"object": pa}, "expect": {"patch": []}}))
            .expect_err("patch on validate");
        assert!(e.contains("webhook: mutate"), "{e}");
        let d = case(json!({"name": "d", "admission": {"operation": "DELETE", "object": pa}, "expect": {"result": "denied"}})).expect("delete");
        assert!(d.object.is_none() && d.old_object.is_some());
        let e = case(json!({"name": "x", "admission": {"object": pa, "bogus": 1}, "expect": {"result": "denied"}})).expect_err("unknown field");
        assert!(e.contains("unknown field `bogus`"), "{e}");
    }
}
