//! Conformance against peer projects' own test data (tests/conformance, see its README.md for
//! the upstream attribution): Istio's CRD/webhook validation cases and Kyverno's istio policies.
//!
//! Every object goes through meshguard the way kube-apiserver sends it (see [`admit`]):
//! defaulting and built-in mutating admission (`metadata.namespace` from the request, the
//! `kubernetes.io/metadata.name` label on Namespaces, the ServiceAccount plugin's
//! `serviceAccountName: default` on Pods), then meshguard's mutating webhook (`Engine::mutate`, patch applied with `json_patch`),
//! then meshguard's validating webhook (`Engine::evaluate`) on the patched object. A second
//! mutate pass over the patched object must emit nothing (`reinvocationPolicy: IfNeeded`).
//! Lookups go to a `Inventory` built per case from its `role: context` resources and its
//! Namespaces, each admitted through meshguard first (see [`Mapping::namespace`]).
//!
//! What is asserted:
//! - Every case has a [`MAPPINGS`] entry naming the meshguard rules/mutations it corresponds
//!   to, how the case's implicit namespace is modelled, and why.
//! - `istio-validation-*` (Istio's own verdicts): every object Istio rejects is denied, with
//!   Istio's error text in a finding (or by the named meshguard rule that already covers that
//!   error); every object Istio accepts raises no `istio-*` parity finding and is admitted or only
//!   warned, except where a documented zero-trust rule is stricter.
//! - `aligned` and `partial` kyverno cases: the verdict agrees, a mapped rule fires on every
//!   upstream deny and none fires on an upstream allow; `expected_fields` hold after patching.
//!   Where meshguard differs, the difference is a documented entry of exactly one table:
//!   [`STRICTER`] (meshguard denies; the deny-rule set must match exactly), [`FIXED`] (meshguard's
//!   mutation makes the object satisfy upstream's rule instead of rejecting it), or [`GAPS`]
//!   (meshguard admits what upstream flags, with the reason).
//! - `adjacent`, `n/a` and `generate` cases are reported, not compared with upstream, but the
//!   patch must apply and be idempotent and every firing rule must be explained in the case's
//!   mapping ([`Mapping::explained`]); the report line carries that explanation.

use json_patch::{Patch, PatchOperation};
use kube::core::DynamicObject;
use meshguard::config::Policy;
use meshguard::engine::{Engine, Evaluation, Mutated};
use meshguard::finding::Action;
use meshguard::inventory::Inventory;
use meshguard::resource::{Kind, Review};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How the namespace a case's objects land in is known to the cluster view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ns {
    /// The case defines no namespace and nothing implies one (Istio's validation files come from
    /// Go unit tests, not a cluster): objects without `metadata.namespace` go to `default`, and
    /// every lookup is `Unknown` (`partial: true`), as with no cluster connection.
    Unknown,
    /// Upstream's chainsaw test applies the objects into the fresh, unlabeled namespace it
    /// creates for the test, and creates nothing else. In a meshguard cluster that Namespace
    /// CREATE goes through meshguard too, so the view holds it with the labels meshguard's
    /// mutation gives it and its `default` ServiceAccount, and is otherwise complete.
    Fresh(&'static str),
    /// The case creates every namespace it uses: the view is complete (`partial: false`).
    Complete,
}

/// One case and the meshguard rules and mutations it corresponds to.
struct Mapping {
    case: &'static str,
    /// Rules implementing the upstream rule: one must fire on each upstream deny, none on an
    /// upstream allow (aligned and partial cases).
    rules: &'static [&'static str],
    /// Mutations implementing the upstream mutation (mutate cases).
    mutations: &'static [&'static str],
    namespace: Ns,
    /// How meshguard relates to the upstream rule; printed with every report line.
    note: &'static str,
    /// Adjacent / n/a cases: rules that may fire although the upstream concern is a different
    /// one, and why. A firing rule not listed here fails the test.
    explained: &'static [(&'static str, &'static str)],
}

const WHY_DEFAULT_SA: &str = "the upstream pods name no ServiceAccount, so the ServiceAccount admission plugin runs them as \"default\", the namespace's shared identity";
const WHY_NO_PROXY: &str = "upstream's test cluster runs no Istio injector, so a Pod CREATE in a namespace labeled for injection arrives without an istio-proxy container (the injector failed open)";
const WHY_HAND_WRITTEN_INIT: &str = "the pods carry a hand-written istio-init that no sidecar.istio.io/status annotation of Istio's injector lists, so meshguard does not take it for Istio's: a container under Istio's name the injector did not add is refused";
const WHY_NET_ADMIN: &str = "NET_ADMIN, NET_RAW or privileged on a container that is not Istio's own (the hand-written istio-init, or any app container) can rewrite the pod's iptables and send its traffic around the sidecar";
const WHY_FOREIGN_IMAGE: &str =
    "an istio-init running an image that is not Istio's proxy image replaces the iptables setup";

const MAPPINGS: &[Mapping] = &[
    Mapping {
        case: "istio-validation-authorizationpolicy",
        rules: &[],
        mutations: &[],
        namespace: Ns::Unknown,
        note: "Istio's own validation: istio-* parity rules",
        explained: &[],
    },
    Mapping {
        case: "istio-validation-peerauthentication",
        rules: &[],
        mutations: &["peer-authentication-strict-default"],
        namespace: Ns::Unknown,
        note: "Istio's own validation: istio-* parity rules (a PeerAuthentication without a mode is validated as patched to STRICT)",
        explained: &[],
    },
    Mapping {
        case: "istio-validation-requestauthentication",
        rules: &[],
        mutations: &[],
        namespace: Ns::Unknown,
        note: "Istio's own validation: istio-* parity rules",
        explained: &[],
    },
    Mapping {
        case: "kyverno-enforce-strict-mtls",
        rules: &["pa-permissive-mtls", "pa-disabled-mtls"],
        mutations: &["peer-authentication-strict-default"],
        namespace: Ns::Fresh("chainsaw-enforce-strict-mtls"),
        note: "pa-permissive-mtls / pa-disabled-mtls; peer-authentication-strict-default writes STRICT where no mode is given",
        explained: &[],
    },
    Mapping {
        case: "kyverno-enforce-tls-hosts-host-subnets",
        rules: &["dr-tls-disabled"],
        mutations: &[],
        namespace: Ns::Fresh("chainsaw-enforce-tls-hosts"),
        note: "dr-tls-disabled; host ratings.prod.svc.cluster.local is in-mesh by its cluster-domain suffix, so namespace prod is not looked up",
        explained: &[],
    },
    Mapping {
        case: "kyverno-enforce-sidecar-injection-namespace",
        rules: &["ns-injection-missing", "ns-injection-disabled"],
        mutations: &["namespace-injection-label"],
        namespace: Ns::Complete,
        note: "ns-injection-missing / ns-injection-disabled; namespace-injection-label adds istio-injection=enabled to a namespace that has no injection label",
        explained: &[],
    },
    Mapping {
        case: "kyverno-add-sidecar-injection-namespace",
        rules: &[],
        mutations: &["namespace-injection-label"],
        namespace: Ns::Complete,
        note: "namespace-injection-label (defaulting only; an explicit opt-out is refused by ns-injection-disabled, never overwritten)",
        explained: &[],
    },
    Mapping {
        case: "kyverno-enforce-ambient-mode-namespace",
        rules: &[],
        mutations: &["namespace-injection-label"],
        namespace: Ns::Complete,
        note: "n/a: meshguard enrolls namespaces in sidecar mode; it accepts istio.io/dataplane-mode=ambient as enrolled but never demands it, and labels an unenrolled namespace istio-injection=enabled instead of rejecting it",
        explained: &[],
    },
    Mapping {
        case: "kyverno-add-ambient-mode-namespace",
        rules: &[],
        mutations: &["namespace-injection-label"],
        namespace: Ns::Complete,
        note: "n/a: meshguard defaults namespaces to sidecar mode (istio-injection=enabled), never to ambient; an ambient namespace is left as it is",
        explained: &[],
    },
    Mapping {
        case: "kyverno-create-authorizationpolicy",
        rules: &[],
        mutations: &["namespace-injection-label"],
        namespace: Ns::Complete,
        note: "n/a (generate): meshguard is an admission webhook and creates no objects; the generated default-deny AuthorizationPolicy is admitted when created by hand",
        explained: &[],
    },
    Mapping {
        case: "kyverno-require-authorizationpolicy",
        rules: &[],
        mutations: &["namespace-injection-label"],
        namespace: Ns::Complete,
        note: "no meshguard rule: upstream is a background scan, see GAPS",
        explained: &[],
    },
    Mapping {
        case: "kyverno-prevent-disabling-injection-pods",
        rules: &["wl-injection-disabled"],
        mutations: &["default-service-account"],
        namespace: Ns::Fresh("chainsaw-prevent-disabling-injection"),
        note: "wl-injection-disabled (label or annotation sidecar.istio.io/inject)",
        explained: &[],
    },
    Mapping {
        case: "kyverno-service-mesh-disallow-capabilities",
        rules: &[],
        mutations: &[],
        namespace: Ns::Fresh("chainsaw-disallow-capabilities"),
        note: "adjacent: meshguard has no general container-capabilities rule (Pod Security admission's job); it refuses only what can undo the capture (NET_ADMIN, NET_RAW, privileged) outside Istio's own containers, which it tells by the injector's sidecar.istio.io/status annotation, name, placement, image and args rather than by image alone",
        explained: &[
            ("wl-default-service-account", WHY_DEFAULT_SA),
            ("wl-missing-sidecar", WHY_NO_PROXY),
            ("wl-proxy-override", WHY_HAND_WRITTEN_INIT),
            ("wl-net-admin", WHY_NET_ADMIN),
            ("wl-proxy-image", WHY_FOREIGN_IMAGE),
        ],
    },
    Mapping {
        case: "kyverno-service-mesh-require-run-as-nonroot",
        rules: &[],
        mutations: &[],
        namespace: Ns::Fresh("chainsaw-require-run-as-nonroot"),
        note: "adjacent: meshguard has no runAsNonRoot rule (Pod Security admission's job); it only refuses UID and GID 1337 (wl-proxy-uid), which no pod here uses",
        explained: &[
            ("wl-default-service-account", WHY_DEFAULT_SA),
            ("wl-missing-sidecar", WHY_NO_PROXY),
            ("wl-proxy-override", WHY_HAND_WRITTEN_INIT),
            ("wl-net-admin", WHY_NET_ADMIN),
            ("wl-proxy-image", WHY_FOREIGN_IMAGE),
        ],
    },
    Mapping {
        case: "kyverno-restrict-virtual-service-wildcard",
        rules: &[],
        mutations: &[],
        namespace: Ns::Fresh("chainsaw-restrict-virtual-service-wildcard"),
        note: "adjacent: meshguard does not admit VirtualServices (not a meshguard kind; its webhooks do not register them)",
        explained: &[],
    },
];

/// Where meshguard is deliberately stricter than the upstream verdict:
/// (case, resource file, meshguard's verdict, exactly the rules that deny, why).
const STRICTER: &[(&str, &str, &str, &[&str], &str)] = &[
    (
        "istio-validation-peerauthentication",
        "resources/01-peerauthentication-full.yaml",
        "deny",
        &["pa-permissive-mtls"],
        "Istio accepts mtls.mode PERMISSIVE; the zero-trust policy does not (the expected.yaml note says the org policy may deny it)",
    ),
    (
        "kyverno-enforce-tls-hosts-host-subnets",
        "resources/03-destinationrule-good-dr01.yaml",
        "deny",
        &["istio-invalid-spec"],
        "tls.mode MUTUAL without credentialName needs clientCertificate and privateKey: istiod's webhook rejects it (\"client certificate required for mutual tls\"); Kyverno only looks at DISABLE",
    ),
    (
        "kyverno-add-sidecar-injection-namespace",
        "resources/02-namespace-istio-test-dis-ns.yaml",
        "deny",
        &["ns-injection-disabled"],
        "upstream overwrites an explicit istio-injection=disabled with enabled; meshguard never silently overrides an explicit opt-out (the case's note allows an org webhook to deny instead), so the namespace is refused and expected_fields do not apply to an object that is never stored",
    ),
    (
        "kyverno-prevent-disabling-injection-pods",
        "resources/07-pod-goodpod01.yaml",
        "deny",
        &["wl-default-service-account", "wl-missing-sidecar"],
        "the pod names no ServiceAccount (the API server runs it as \"default\", a shared identity), and its namespace is labeled for injection but upstream's cluster runs no injector, so the Pod CREATE has no istio-proxy; wl-injection-disabled, the mapped rule, does not fire",
    ),
    (
        "kyverno-prevent-disabling-injection-pods",
        "resources/08-pod-goodpod02.yaml",
        "deny",
        &["wl-default-service-account", "wl-missing-sidecar"],
        "as goodpod01: shared \"default\" identity, and no istio-proxy on a Pod CREATE in a namespace labeled for injection; wl-injection-disabled does not fire",
    ),
    (
        "kyverno-prevent-disabling-injection-pods",
        "resources/09-deployment-gooddeploy01.yaml",
        "deny",
        &["wl-default-service-account"],
        "the template names no ServiceAccount and ServiceAccount \"busybox\" (from the app label) does not exist, so default-service-account cannot patch it; wl-injection-disabled does not fire",
    ),
    (
        "kyverno-prevent-disabling-injection-pods",
        "resources/10-deployment-gooddeploy02.yaml",
        "deny",
        &["wl-default-service-account"],
        "as gooddeploy01: no ServiceAccount named, and ServiceAccount \"busybox\" (from the app label) does not exist, so default-service-account cannot patch it; wl-injection-disabled does not fire",
    ),
    (
        "kyverno-prevent-disabling-injection-pods",
        "resources/11-cronjob-goodcronjob01.yaml",
        "deny",
        &["wl-default-service-account"],
        "the job template names no ServiceAccount and has no app.kubernetes.io/name or app label to derive one from, so default-service-account cannot patch it; wl-injection-disabled does not fire",
    ),
    (
        "kyverno-prevent-disabling-injection-pods",
        "resources/12-cronjob-goodcronjob02.yaml",
        "deny",
        &["wl-default-service-account"],
        "the job template names no ServiceAccount and has no app.kubernetes.io/name or app label to derive one from, so default-service-account cannot patch it; wl-injection-disabled does not fire",
    ),
];

/// Where upstream rejects and meshguard's mutating webhook instead patches the object so that
/// it satisfies upstream's rule: (case, file, mutation, rule that denies the unpatched object
/// (validation-only install, `webhook.mutating: false`), fields that hold after the patch, why).
type Fixed = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);
const FIXED: &[Fixed] = &[
    (
        "kyverno-enforce-sidecar-injection-namespace",
        "resources/02-namespace-bad-istio-sinj03.yaml",
        "namespace-injection-label",
        "ns-injection-missing",
        &[("/metadata/labels/istio-injection", "enabled")],
        "no injection label: meshguard adds istio-injection=enabled, so the stored namespace meets upstream's rule",
    ),
    (
        "kyverno-enforce-sidecar-injection-namespace",
        "resources/03-namespace-bad-istio-sinj02.yaml",
        "namespace-injection-label",
        "ns-injection-missing",
        &[("/metadata/labels/istio-injection", "enabled")],
        "only an unrelated label (foo=enabled): meshguard adds istio-injection=enabled, so the stored namespace meets upstream's rule",
    ),
];

/// Where meshguard admits what an aligned upstream rule flags: (case, file, why).
const GAPS: &[(&str, &str, &str)] = &[(
    "kyverno-require-authorizationpolicy",
    "resources/03-namespace-istio-reqauthzpol-bad-ns.yaml",
    "upstream is a background scan (ClusterPolicyReport), not an admission decision: an AuthorizationPolicy can only be created in a namespace that already exists, so no Namespace CREATE could pass an admission-time version of the rule, and meshguard's cluster view does not list AuthorizationPolicies",
)];

/// Objects upstream generates (generate cases): (case, file). meshguard creates nothing, but
/// must admit them when someone creates them by hand.
const GENERATED: &[(&str, &str)] = &[(
    "kyverno-create-authorizationpolicy",
    "expected/generated-authorizationpolicy-default-deny.yaml",
)];

/// Istio errors that an existing meshguard rule covers with its own wording:
/// (case, resource file, rule that denies it).
const COVERED_BY: &[(&str, &str, &str)] = &[(
    "istio-validation-peerauthentication",
    "resources/05-peerauthentication-port-level-global.yaml",
    "pa-port-level-without-selector",
)];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance")
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One object through the apiserver's admission chain.
struct Admitted {
    kind: Kind,
    namespace: String,
    /// The object as the webhooks receive it (after built-in admission).
    submitted: Value,
    /// Validation of the object as submitted: what a validation-only install would answer.
    before: Evaluation,
    mutated: Mutated,
    /// The object as stored, after meshguard's patch.
    patched: Value,
    /// Validation of the patched object: the verdict.
    after: Evaluation,
    /// A second mutate pass over the patched object (must be empty).
    again: Vec<PatchOperation>,
}

impl Admitted {
    fn verdict(&self) -> &'static str {
        if self.after.denied() {
            "deny"
        } else {
            "allow"
        }
    }
    fn denying_rules(&self) -> Vec<&'static str> {
        let mut r: Vec<_> = self
            .after
            .with_action(Action::Deny)
            .map(|f| f.rule)
            .collect();
        r.sort_unstable();
        r.dedup();
        r
    }
    fn fires(&self, rule: &str) -> bool {
        self.after.findings.iter().any(|f| f.rule == rule)
    }
    fn summary(&self) -> String {
        let findings = self
            .after
            .findings
            .iter()
            .map(|f| format!("{}({})", f.rule, f.action))
            .collect::<Vec<_>>()
            .join(", ");
        if self.mutated.applied.is_empty() {
            format!("[{findings}]")
        } else {
            format!(
                "[{findings}] patched by {}",
                self.mutated.applied.join(", ")
            )
        }
    }
}

/// Send one object through admission as a CREATE: built-in mutating admission, meshguard's
/// mutating webhook, then its validating webhook on the patched object. `Ok(None)` for kinds
/// meshguard does not handle; `Err` when meshguard's patch does not apply or parse.
fn admit(
    engine: &Engine,
    cluster: &Inventory,
    mut v: Value,
    default_ns: &str,
) -> Result<Option<Admitted>, String> {
    if let Some(m) = v.as_object_mut() {
        m.remove("_err"); // upstream's test-only key in Istio's validation files
    }
    let api_version = v["apiVersion"].as_str().unwrap_or("").to_owned();
    let kind_name = v["kind"].as_str().unwrap_or("").to_owned();
    let Some(kind) = Kind::from_api_version(&api_version, &kind_name) else {
        return Ok(None);
    };
    let name = v["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let namespace = if kind == Kind::Namespace {
        name.clone()
    } else {
        v["metadata"]["namespace"]
            .as_str()
            .unwrap_or(default_ns)
            .to_owned()
    };
    // Before any webhook: the request's namespace is set on a namespaced object, and API
    // defaulting labels every Namespace with kubernetes.io/metadata.name.
    if kind == Kind::Namespace {
        if !v["metadata"]["labels"].is_object() {
            v["metadata"]["labels"] = json!({});
        }
        v["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
    } else if v["metadata"]["namespace"].as_str().is_none() {
        v["metadata"]["namespace"] = json!(namespace);
    }
    // The ServiceAccount admission plugin runs before any webhook and fills the account in;
    // the v1 conversion mirrors it into the deprecated field.
    if kind == Kind::Pod {
        let spec = &mut v["spec"];
        if spec["serviceAccountName"]
            .as_str()
            .is_none_or(str::is_empty)
        {
            spec["serviceAccountName"] = json!("default");
        }
        if spec["serviceAccount"].as_str().is_none_or(str::is_empty) {
            spec["serviceAccount"] = spec["serviceAccountName"].clone();
        }
    }
    let obj: DynamicObject =
        serde_json::from_value(v.clone()).map_err(|e| format!("not an object: {e}"))?;
    let version = api_version.rsplit('/').next().unwrap_or("v1").to_owned();
    let review = Review::create(kind, &version, &namespace, &name, &obj);
    let before = engine.evaluate(&review, cluster);
    let mutated = engine.mutate(&review, cluster);
    let mut patched = serde_json::to_value(&obj).map_err(|e| e.to_string())?;
    json_patch::patch(&mut patched, &Patch(mutated.patch.clone()))
        .map_err(|e| format!("meshguard's patch does not apply: {e}"))?;
    let patched_obj: DynamicObject = serde_json::from_value(patched.clone())
        .map_err(|e| format!("patched object does not parse: {e}"))?;
    let review = Review {
        object: Some(&patched_obj),
        ..review
    };
    let after = engine.evaluate(&review, cluster);
    let again = engine.mutate(&review, cluster).patch;
    Ok(Some(Admitted {
        kind,
        namespace,
        submitted: v,
        before,
        mutated,
        patched,
        after,
        again,
    }))
}

/// Add an admitted Namespace to the view: the labels it is stored with, and the `default`
/// ServiceAccount the ServiceAccount controller creates in it.
fn record_namespace(cluster: &mut Inventory, a: &Admitted) {
    let labels: BTreeMap<String, String> = a.patched["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    cluster.insert_namespace(&a.namespace, labels);
    cluster.insert_service_account(&a.namespace, "default");
}

/// Build a case's cluster view: its implicit namespace, its Namespaces and its `role: context`
/// resources, each admitted through meshguard first (what is denied does not exist). Context
/// objects the view cannot represent are still admitted; a refusal is a failure because the
/// upstream scenario could not be set up under meshguard.
fn cluster_for(
    engine: &Engine,
    case: &str,
    case_dir: &Path,
    mapping: &Mapping,
    resources: &serde_json::Map<String, Value>,
    failures: &mut Vec<String>,
    report: &mut Vec<String>,
) -> (Inventory, String) {
    let mut cluster = if mapping.namespace == Ns::Unknown {
        Inventory::partial(Vec::new())
    } else {
        Inventory::complete(Vec::new())
    };
    let default_ns = match mapping.namespace {
        Ns::Fresh(name) => {
            let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            match admit(engine, &cluster.clone(), ns, name) {
                Ok(Some(a)) if !a.after.denied() => record_namespace(&mut cluster, &a),
                Ok(Some(a)) => failures.push(format!(
                    "{case}: the test namespace {name} is refused: {}",
                    a.summary()
                )),
                other => failures.push(format!(
                    "{case}: the test namespace {name} cannot be admitted: {:?}",
                    other.err()
                )),
            }
            name.to_owned()
        }
        Ns::Unknown | Ns::Complete => "default".to_owned(),
    };
    // Namespaces first (subjects too: later objects of the case live in them), then the rest.
    let mut entries: Vec<(&String, &Value)> = resources.iter().collect();
    entries.sort_by_key(|(_, e)| e["kind"].as_str() != Some("Namespace"));
    for (file, entry) in entries {
        let is_ns = entry["kind"].as_str() == Some("Namespace");
        let context = entry["role"].as_str() == Some("context");
        if !is_ns && !context {
            continue;
        }
        let v = yaml(&case_dir.join(file));
        if entry["kind"].as_str() == Some("ServiceAccount") {
            let ns = v["metadata"]["namespace"].as_str().unwrap_or(&default_ns);
            let name = v["metadata"]["name"].as_str().unwrap_or("");
            cluster.insert_service_account(ns, name);
            continue;
        }
        match admit(engine, &cluster.clone(), v, &default_ns) {
            Ok(Some(a)) if a.kind == Kind::Namespace => {
                if !a.after.denied() {
                    record_namespace(&mut cluster, &a);
                }
            }
            Ok(Some(a)) if a.after.denied() => failures.push(format!(
                "{case}/{file}: context resource refused, so the upstream scenario cannot be set up: {}",
                a.summary()
            )),
            Ok(Some(a)) => report.push(format!(
                "CONTEXT {case}/{file}: admitted {} ({} objects are not part of the cluster view)",
                a.summary(),
                a.kind
            )),
            Ok(None) => report.push(format!("CONTEXT {case}/{file}: not a meshguard kind")),
            Err(e) => failures.push(format!("{case}/{file}: {e}")),
        }
    }
    (cluster, default_ns)
}

/// Partial match as chainsaw asserts it: every field of `want` is in `got` with the same value.
fn subset(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => w
            .iter()
            .all(|(k, v)| g.get(k).is_some_and(|gv| subset(v, gv))),
        _ => want == got,
    }
}

/// The `expected_fields` of an entry that do not hold in `obj` (RFC 6901 pointers).
fn unmet_fields(entry: &Value, obj: &Value) -> Vec<String> {
    entry["expected_fields"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(ptr, want)| obj.pointer(ptr) != Some(*want))
        .map(|(ptr, want)| format!("{ptr} = {want} (is {:?})", obj.pointer(ptr)))
        .collect()
}

#[derive(Default)]
struct Tally {
    verdicts: usize,
    mapped_rules: usize,
    fields: usize,
    idempotent: usize,
    explained: usize,
}

#[test]
fn conformance_cases() {
    let engine = Engine::new(Policy::default(), Default::default(), None);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root())
        .expect("tests/conformance exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("expected.yaml").is_file())
        .collect();
    cases.sort();
    assert!(cases.len() >= 15, "conformance data missing");

    let mut failures = Vec::new();
    let mut report = Vec::new();
    let mut tally = Tally::default();
    let mut used_tables = Vec::new();
    for case_dir in cases {
        let case = case_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let Some(mapping) = MAPPINGS.iter().find(|m| m.case == case) else {
            failures.push(format!("{case}: no MAPPINGS entry"));
            continue;
        };
        let expected = yaml(&case_dir.join("expected.yaml"));
        let alignment = expected["org_rule_alignment"].as_str().unwrap_or("");
        let check_type = expected["check_type"].as_str().unwrap_or("");
        let istio = case.starts_with("istio-validation-");
        let compared = istio
            || (check_type != "generate"
                && (alignment.starts_with("aligned") || alignment.starts_with("partial")));
        let Some(resources) = expected["resources"].as_object() else {
            panic!("{case}: no resources");
        };
        let (cluster, default_ns) = cluster_for(
            &engine,
            &case,
            &case_dir,
            mapping,
            resources,
            &mut failures,
            &mut report,
        );
        for (file, entry) in resources {
            if entry["role"].as_str() == Some("context") {
                continue;
            }
            let want = entry["verdict"].as_str().unwrap_or("n/a");
            let a = match admit(&engine, &cluster, yaml(&case_dir.join(file)), &default_ns) {
                Err(e) => {
                    failures.push(format!("{case}/{file}: {e}"));
                    continue;
                }
                Ok(None) => {
                    if compared {
                        failures.push(format!(
                            "{case}/{file}: compared case, but not a meshguard kind"
                        ));
                    }
                    report.push(format!(
                        "REPORT {case}/{file}: expected {want}, meshguard n/a — {}",
                        mapping.note
                    ));
                    continue;
                }
                Ok(Some(a)) => a,
            };
            let line = format!(
                "{case}/{file}: expected {want}, meshguard {} {}",
                a.verdict(),
                a.summary()
            );
            // Every subject: meshguard's patch applied (above) and is idempotent.
            tally.idempotent += 1;
            if !a.again.is_empty() {
                failures.push(format!(
                    "{line} — a second mutate pass patches again: {}",
                    serde_json::to_string(&a.again).unwrap_or_default()
                ));
            }
            if let Some(m) = a
                .mutated
                .applied
                .iter()
                .find(|m| !mapping.mutations.contains(m))
            {
                failures.push(format!(
                    "{line} — mutation {m} is not in the case's mapping"
                ));
            }

            if !compared {
                // Adjacent, n/a, generate: report, and every finding must be explained.
                tally.explained += 1;
                let mut why = vec![mapping.note.to_owned()];
                for rule in a.after.findings.iter().map(|f| f.rule) {
                    match mapping.explained.iter().find(|(r, _)| *r == rule) {
                        Some((r, w)) if !why.iter().any(|s| s.starts_with(r)) => {
                            why.push(format!("{r}: {w}"))
                        }
                        Some(_) => {}
                        None => failures.push(format!(
                            "{line} — {rule} fires but the case's mapping does not explain it"
                        )),
                    }
                }
                let unmet = unmet_fields(entry, &a.patched);
                if entry.get("expected_fields").is_some() {
                    why.push(if unmet.is_empty() {
                        "expected_fields hold".to_owned()
                    } else {
                        format!("expected_fields not met: {}", unmet.join(", "))
                    });
                }
                report.push(format!("REPORT {line} — {}", why.join("; ")));
                continue;
            }

            tally.verdicts += 1;
            let stricter = STRICTER
                .iter()
                .find(|(c, f, ..)| *c == case && *f == file.as_str());
            let fixed = FIXED
                .iter()
                .find(|(c, f, ..)| *c == case && *f == file.as_str());
            let gap = GAPS
                .iter()
                .find(|(c, f, _)| *c == case && *f == file.as_str());
            if let Some((_, _, verdict, rules, why)) = stricter {
                used_tables.push(format!("STRICTER {case}/{file}"));
                println!("asserted stricter {line} — {why}");
                let mut rules = rules.to_vec();
                rules.sort_unstable();
                if a.verdict() != *verdict || a.denying_rules() != rules {
                    failures.push(format!(
                        "{line} — documented stricter verdict {verdict} by exactly {rules:?} ({why}) not reached"
                    ));
                }
                if want == "allow" {
                    tally.mapped_rules += 1;
                    if let Some(r) = mapping.rules.iter().find(|r| a.fires(r)) {
                        failures.push(format!(
                            "{line} — mapped rule {r} fires on an upstream allow"
                        ));
                    }
                }
                continue;
            }
            if let Some((_, _, mutation, rule, fields, why)) = fixed {
                used_tables.push(format!("FIXED {case}/{file}"));
                println!("asserted fixed {line} — {why}");
                tally.mapped_rules += 1;
                tally.fields += fields.len();
                if !a.before.findings.iter().any(|f| f.rule == *rule) {
                    failures.push(format!(
                        "{line} — {rule} does not deny the unpatched object"
                    ));
                }
                if !a.mutated.applied.contains(mutation) || a.after.denied() {
                    failures.push(format!(
                        "{line} — expected {mutation} to patch the object into an admitted one"
                    ));
                }
                for (ptr, value) in fields.iter() {
                    if a.patched.pointer(ptr) != Some(&json!(value)) {
                        failures.push(format!("{line} — after the patch {ptr} is not {value:?}"));
                    }
                }
                continue;
            }
            if let Some((_, _, why)) = gap {
                used_tables.push(format!("GAP {case}/{file}"));
                println!("asserted gap {line} — {why}");
                if a.verdict() != "allow" {
                    failures.push(format!(
                        "{line} — documented gap, but meshguard now denies: update GAPS"
                    ));
                }
                continue;
            }
            println!("asserted {line}");
            if a.verdict() != want {
                failures.push(line);
                continue;
            }
            if !mapping.rules.is_empty() {
                tally.mapped_rules += 1;
                let fired: Vec<_> = mapping.rules.iter().filter(|r| a.fires(r)).collect();
                if want == "deny" && fired.is_empty() {
                    failures.push(format!(
                        "{line} — none of the mapped rules {:?} fires",
                        mapping.rules
                    ));
                }
                if want == "allow" && !fired.is_empty() {
                    failures.push(format!(
                        "{line} — mapped rule(s) {fired:?} fire on an upstream allow"
                    ));
                }
            }
            if want == "allow" && entry.get("expected_fields").is_some() {
                let n = entry["expected_fields"].as_object().map_or(0, |m| m.len());
                tally.fields += n;
                let unmet = unmet_fields(entry, &a.patched);
                if !unmet.is_empty() {
                    failures.push(format!(
                        "{line} — expected_fields not met: {}",
                        unmet.join(", ")
                    ));
                }
                if let Some(expected_object) = entry["expected_object"].as_str() {
                    tally.fields += 1;
                    let want_obj = yaml(&case_dir.join(expected_object));
                    if !subset(&want_obj, &a.patched) {
                        failures.push(format!(
                            "{line} — patched object does not contain {expected_object}: {}",
                            a.patched
                        ));
                    }
                }
                let already = unmet_fields(entry, &a.submitted).is_empty();
                if !already
                    && !a
                        .mutated
                        .applied
                        .iter()
                        .any(|m| mapping.mutations.contains(m))
                {
                    failures.push(format!("{line} — fields set, but not by a mapped mutation"));
                }
            }
            if istio && want == "deny" {
                let substring = entry["expected_error_substring"].as_str().unwrap_or("");
                let covered = COVERED_BY
                    .iter()
                    .find(|(c, f, _)| *c == case && *f == file.as_str())
                    .map(|(_, _, r)| *r);
                let ok = match covered {
                    Some(rule) => a.fires(rule),
                    None => a.after.findings.iter().any(|f| {
                        f.rule.starts_with("istio-") && f.violation.message.contains(substring)
                    }),
                };
                if !ok {
                    failures.push(format!(
                        "{line} — no istio-* finding carries Istio's error {substring:?}"
                    ));
                }
            }
            if istio && want == "allow" {
                if let Some(f) = a
                    .after
                    .findings
                    .iter()
                    .find(|f| f.rule.starts_with("istio-"))
                {
                    failures.push(format!(
                        "{line} — Istio accepts it but meshguard reports {f}"
                    ));
                }
            }
        }
    }

    // Generated objects: meshguard does not generate them, but must admit them by hand.
    for (case, file) in GENERATED {
        let v = yaml(&root().join(case).join(file));
        let cluster = Inventory::complete(Vec::new());
        match admit(&engine, &cluster, v, "default") {
            Ok(Some(a)) if !a.after.denied() => report.push(format!(
                "REPORT {case}/{file}: generated upstream, admitted by meshguard when created by hand {}",
                a.summary()
            )),
            other => failures.push(format!(
                "{case}/{file}: the default-deny AuthorizationPolicy upstream generates is not admitted: {:?}",
                other.map(|o| o.map(|a| a.summary()))
            )),
        }
    }

    // Every documented exception must still be exercised.
    for (c, f, ..) in STRICTER {
        if !used_tables.contains(&format!("STRICTER {c}/{f}")) {
            failures.push(format!(
                "STRICTER entry {c}/{f} matches no compared subject"
            ));
        }
    }
    for (c, f, ..) in FIXED {
        if !used_tables.contains(&format!("FIXED {c}/{f}")) {
            failures.push(format!("FIXED entry {c}/{f} matches no compared subject"));
        }
    }
    for (c, f, _) in GAPS {
        if !used_tables.contains(&format!("GAP {c}/{f}")) {
            failures.push(format!("GAPS entry {c}/{f} matches no compared subject"));
        }
    }

    println!(
        "conformance: {} verdicts asserted ({} with mapped-rule checks), {} expected fields, {} idempotent patches, {} reported with explanations",
        tally.verdicts, tally.mapped_rules, tally.fields, tally.idempotent, tally.explained
    );
    for r in &report {
        println!("{r}");
    }
    assert!(
        failures.is_empty(),
        "conformance failures:\n{}",
        failures.join("\n")
    );
    assert!(
        tally.verdicts >= 71,
        "only {} verdicts asserted",
        tally.verdicts
    );
}

/// The `partial`/`aligned` notes name what an org rule must do beyond upstream's test data
/// ("not exercised here"). Derive those inputs from the upstream objects and check meshguard
/// does it: (case, file, JSON merge patch applied to the upstream object, the rule that must
/// fire, or `None` when none of the case's mapped rules may fire, why).
type Variant = (
    &'static str,
    &'static str,
    fn() -> Value,
    Option<&'static str>,
    &'static str,
);
const NOTE_VARIANTS: &[Variant] = &[
    (
        "kyverno-prevent-disabling-injection-pods",
        "resources/01-pod-badpod01.yaml",
        || json!({"metadata": {"annotations": {"sidecar.istio.io/inject": null}, "labels": {"sidecar.istio.io/inject": "false"}}}),
        Some("wl-injection-disabled"),
        "the note: the org rule must also reject the label sidecar.istio.io/inject=\"false\"",
    ),
    (
        "kyverno-prevent-disabling-injection-pods",
        "resources/03-deployment-baddeploy01.yaml",
        || json!({"spec": {"template": {"metadata": {"annotations": {"sidecar.istio.io/inject": null}, "labels": {"sidecar.istio.io/inject": "false"}}}}}),
        Some("wl-injection-disabled"),
        "the label form in a Deployment template",
    ),
    (
        "kyverno-prevent-disabling-injection-pods",
        "resources/01-pod-badpod01.yaml",
        || json!({"metadata": {"labels": {"sidecar.istio.io/inject": "true"}}}),
        None,
        "Istio reads the label before the deprecated annotation: label \"true\" with annotation \"false\" is injected (upstream, reading only the annotation, would deny)",
    ),
    (
        "kyverno-enforce-strict-mtls",
        "resources/03-peerauthentication-pa-bad03.yaml",
        || json!({"spec": {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}}}),
        Some("pa-disabled-mtls"),
        "the note: a port-level DISABLE passes upstream",
    ),
    (
        "kyverno-enforce-tls-hosts-host-subnets",
        "resources/07-destinationrule-good-dr05.yaml",
        || json!({"spec": {"trafficPolicy": {"portLevelSettings": [{"port": {"number": 8080}, "tls": {"mode": "DISABLE"}}]}}}),
        Some("dr-tls-disabled"),
        "the note: DISABLE in portLevelSettings",
    ),
    (
        "kyverno-enforce-tls-hosts-host-subnets",
        "resources/07-destinationrule-good-dr05.yaml",
        || json!({"spec": {"subsets": [{"name": "v1", "labels": {"version": "v1"}, "trafficPolicy": {"tls": {"mode": "DISABLE"}}}]}}),
        Some("dr-tls-disabled"),
        "the note: DISABLE in a subset",
    ),
    (
        "kyverno-enforce-sidecar-injection-namespace",
        "resources/04-namespace-good-istio-sinj01.yaml",
        || json!({"metadata": {"labels": {"istio-injection": null, "istio.io/rev": "canary"}}}),
        None,
        "the note: istio.io/rev=<revision> enrolls a namespace too",
    ),
    (
        "kyverno-enforce-sidecar-injection-namespace",
        "resources/02-namespace-bad-istio-sinj03.yaml",
        || json!({"metadata": {"name": "istio-system"}}),
        None,
        "the note: system namespaces are exempt (the root namespace is always exempt)",
    ),
];

#[test]
fn notes_beyond_upstream_data() {
    let engine = Engine::new(Policy::default(), Default::default(), None);
    let mut failures = Vec::new();
    for (case, file, merge, rule, why) in NOTE_VARIANTS {
        let mapping = MAPPINGS
            .iter()
            .find(|m| m.case == *case)
            .unwrap_or_else(|| panic!("{case}: no mapping"));
        let mut v = yaml(&root().join(case).join(file));
        json_patch::merge(&mut v, &merge());
        // A fresh namespace labeled for injection, as in the case's own cluster view.
        let mut cluster = Inventory::complete(Vec::new());
        let ns = match mapping.namespace {
            Ns::Fresh(n) => n,
            _ => "default",
        };
        cluster.insert_namespace(
            ns,
            [("istio-injection".to_owned(), "enabled".to_owned())].into(),
        );
        let a = match admit(&engine, &cluster, v, ns) {
            Ok(Some(a)) => a,
            other => panic!("{case}/{file}: {:?}", other.err()),
        };
        let line = format!(
            "{case}/{file} variant ({why}): {} {}",
            a.verdict(),
            a.summary()
        );
        println!("{line}");
        match rule {
            Some(r) if !(a.fires(r) && a.after.denied()) => {
                failures.push(format!("{line} — expected {r} to deny"))
            }
            None if mapping.rules.iter().any(|r| a.fires(r)) => failures.push(format!(
                "{line} — expected no finding of {:?}",
                mapping.rules
            )),
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
