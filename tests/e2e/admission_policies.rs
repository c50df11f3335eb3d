//! The generated ValidatingAdmissionPolicies (`meshguard generate admission-policies`) against
//! the webhook, on the same requests, on a real kube-apiserver.
//!
//! Phase 0 prepares the cluster with nothing registered: the run's namespaces (renamed from the
//! ones the inputs name), the ServiceAccounts their pods run as, and the stored objects of every
//! UPDATE and DELETE case. The cases are every captured review (tests/fixtures/admission), every
//! object of the fixtures and conformance files, and the synthetic cases below, each replayed as
//! a server-side dry run (CREATE, UPDATE or DELETE, as the captured user where a capture says who).
//!
//! **Parity** (meshguard running): the validating webhook is registered (`failurePolicy: Fail`)
//! and the generated policies are bound with `validationActions: [Warn]`, so that one request
//! shows both verdicts: the webhook's (its denial, its warnings) and every policy that fires (a
//! warning each). For every rule with a CEL form: a rule the policies state completely fires on
//! exactly the requests where the webhook reports it (deny rules: in its denial; warn rules: in its
//! warnings); a rule they state partly fires only where the webhook reports it too. Every form
//! fires on at least one case.
//!
//! **meshguard down**: the webhook's `failurePolicy` is set to Ignore, meshguard is stopped and
//! the generated bindings (Deny, Warn as the policy says) replace the parity ones. Every case is
//! sent again: refused by kube-apiserver exactly when a deny-level policy fired in the parity
//! pass, with that rule's id in the message; a PERMISSIVE PeerAuthentication is refused with
//! `[pa-permissive-mtls]`.

use crate::harness::{self, Run, PATIENCE, RUN_LABEL};
use http_body_util::BodyExt;
use meshguard::resource::Kind;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn run(kubeconfig: &Path) {
    harness::block_on(scenario(kubeconfig));
}

/// The namespaces the inputs name, renamed into the run (`<run>-<name>`).
const NAMESPACES: &[&str] = &[
    "production",
    "default",
    "istio-system",
    "kube-system",
    "prod",
    "payments",
    "legacy",
    "ambient",
    "other",
    "sandbox",
    "relaxed",
];

/// The meshguard policy of the run: the defaults with the renamed system namespaces, exemptions of
/// every kind (namespaces, object and namespace selectors), the audit-level rules raised to
/// warn so that both paths report them where a client sees it, and policy operations:
/// per-namespace actions (every rule warns in `sandbox`; PERMISSIVE only warns where the
/// platform label `env` is `relaxed`), the policy's exceptions (by name prefix; by namespace
/// label), and a platform group the run's admin is not in, so that its relabelling of `env` is
/// the platform-label guard's.
fn policy(run: &Run) -> String {
    let ns = |n: &str| run.ns(n);
    format!(
        r#"rootNamespace: {root}
exemptNamespaces: [{ks}, {kp}, {kn}]
platform: {{labels: [env], groups: [e2e-platform]}}
overrides:
  - namespaces: [{sandbox}]
    mode: warn
exceptions:
  - name: e2e-excepted-pa
    rules: [pa-permissive-mtls]
    namespaces: [{production}]
    names: [s-excepted-*]
    reason: the end-to-end exception by name
    owner: e2e
    expires: 2099-01-01
  - name: e2e-relaxed-allow-all
    rules: [ap-allow-all]
    namespaceSelector: {{matchLabels: {{env: relaxed}}}}
    reason: the end-to-end exception by namespace label
    owner: e2e
    expires: 2099-01-01
rules:
  pa-permissive-mtls:
    exemptions:
      - namespaces: [{payments}]
      - objectSelector: {{matchLabels: {{mesh-migration: in-progress}}}}
      - namespaceSelector: {{matchExpressions: [{{key: team, operator: In, values: [legacy]}}]}}
    overrides:
      - namespaceSelector: {{matchLabels: {{env: relaxed}}}}
        action: warn
  ap-remote-ip-untrusted:
    action: warn
  ap-source-ip-behind-gateway:
    action: warn
"#,
        root = ns("istio-system"),
        ks = ns("kube-system"),
        kp = ns("kube-public"),
        kn = ns("kube-node-lease"),
        payments = ns("payments"),
        sandbox = ns("sandbox"),
        production = ns("production"),
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Create,
    Update,
    Delete,
}

/// One request to replay.
#[derive(Clone, Debug)]
struct Case {
    label: String,
    op: Op,
    kind: Kind,
    /// The object written (CREATE, UPDATE) or deleted (DELETE: its stored form).
    object: Value,
    /// The stored object an UPDATE starts from.
    old: Option<Value>,
    /// Impersonate this user and groups.
    user: Option<(String, Vec<String>)>,
}

/// What the apiserver answered.
#[derive(Clone, Debug, Default)]
struct Answer {
    status: u16,
    message: String,
    warnings: Vec<String>,
}

impl Answer {
    fn allowed(&self) -> bool {
        (200..300).contains(&self.status) || self.status == 409
    }
    fn webhook_denied(&self) -> bool {
        self.message
            .contains("admission webhook \"validate.meshguard.io\" denied the request")
    }
    /// Rule ids in meshguard's denial (`[rule] path: ...` lines).
    fn webhook_denies(&self) -> BTreeSet<String> {
        if !self.webhook_denied() {
            return BTreeSet::new();
        }
        self.message
            .lines()
            .filter_map(|l| rule_tag(l.trim_start()))
            .collect()
    }
    /// Rule ids of meshguard's warnings.
    fn webhook_warns(&self) -> BTreeSet<String> {
        self.warnings
            .iter()
            // An excepted finding is answered with a warning too, but it is not the rule's.
            .filter(|w| !w.contains(": excepted by "))
            .filter_map(|w| rule_tag(w))
            .collect()
    }
    /// Some warnings may be missing: meshguard's own cut-off, or kube-apiserver's (it keeps
    /// 4096 characters of warnings per response and drops the rest, k8s.io/apiserver
    /// `pkg/endpoints/filters/warning.go`).
    fn warnings_cut(&self) -> bool {
        let total: usize = self.warnings.iter().map(|w| w.chars().count()).sum();
        total + 256 >= 4096
            || self
                .warnings
                .iter()
                .any(|w| w.starts_with("meshguard: more warnings omitted"))
    }
    /// Names of the policies whose (Warn) binding reported the request.
    fn policies_warned(&self) -> BTreeSet<String> {
        self.warnings
            .iter()
            .filter_map(|w| {
                let rest = w.strip_prefix("Validation failed for ValidatingAdmissionPolicy '")?;
                Some(rest.split('\'').next()?.to_owned())
            })
            .collect()
    }
    /// The policy that refused the request, if one did.
    fn policy_denied(&self) -> Option<String> {
        let at = self.message.find("ValidatingAdmissionPolicy '")?;
        let rest = &self.message[at + "ValidatingAdmissionPolicy '".len()..];
        self.message
            .contains("denied request")
            .then(|| rest.split('\'').next().unwrap_or("").to_owned())
    }
}

/// A JSON object of strings (labels) as a map.
fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

/// `[rule-id] ...` → `rule-id`.
fn rule_tag(line: &str) -> Option<String> {
    let rest = line.strip_prefix('[')?;
    let (id, _) = rest.split_once("] ")?;
    id.chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        .then(|| id.to_owned())
}

/// The text of a `Warning: 299 - "text"` header (Go-quoted).
fn warning_text(header: &str) -> String {
    let quoted = header
        .split_once(" - ")
        .map(|(_, q)| q)
        .unwrap_or(header)
        .trim();
    let inner = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(quoted);
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The API path of `kind` objects (in `namespace`), for the version `api_version` names.
fn collection_path(kind: Kind, api_version: &str, namespace: &str) -> String {
    let f = kind.facts();
    let base = if f.group.is_empty() {
        format!("/api/{api_version}")
    } else {
        format!("/apis/{api_version}")
    };
    if f.namespaced {
        format!("{base}/namespaces/{namespace}/{}", f.plural)
    } else {
        format!("{base}/{}", f.plural)
    }
}

fn object_path(kind: Kind, object: &Value) -> String {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1");
    let ns = object["metadata"]["namespace"].as_str().unwrap_or("");
    collection_path(kind, api_version, ns)
}

/// One request to the apiserver, as `user` when given; never panics on an API error.
async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Option<&Value>,
    user: Option<&(String, Vec<String>)>,
) -> Answer {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json");
    if let Some((name, groups)) = user {
        builder = builder.header("Impersonate-User", name);
        for g in groups {
            builder = builder.header("Impersonate-Group", g);
        }
    }
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let request = builder
        .body(kube::client::Body::from(bytes))
        .expect("request");
    let response = match client.send(request).await {
        Ok(r) => r,
        Err(e) => {
            return Answer {
                status: 0,
                message: e.to_string(),
                warnings: Vec::new(),
            }
        }
    };
    let status = response.status().as_u16();
    let warnings = response
        .headers()
        .get_all("warning")
        .iter()
        // Not `to_str`: meshguard's cut warnings end in "…", which is not visible ASCII.
        .map(|v| warning_text(&String::from_utf8_lossy(v.as_bytes())))
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let message = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Answer {
        status,
        message,
        warnings,
    }
}

/// Replay a case as a server-side dry run.
async fn dry_run(client: &kube::Client, case: &Case) -> Answer {
    let q = "?dryRun=All&fieldValidation=Ignore";
    let path = object_path(case.kind, &case.object);
    let name = case.object["metadata"]["name"].as_str().unwrap_or("");
    match case.op {
        Op::Create => {
            send(
                client,
                "POST",
                &format!("{path}{q}"),
                Some(&case.object),
                case.user.as_ref(),
            )
            .await
        }
        Op::Update => {
            // Start from the stored resourceVersion: an update of exactly that object.
            let mut object = case.object.clone();
            let stored = get_json(client, &format!("{path}/{name}")).await;
            if let Some(rv) = stored["metadata"]["resourceVersion"].as_str() {
                object["metadata"]["resourceVersion"] = json!(rv);
            }
            send(
                client,
                "PUT",
                &format!("{path}/{name}{q}"),
                Some(&object),
                case.user.as_ref(),
            )
            .await
        }
        Op::Delete => {
            send(
                client,
                "DELETE",
                &format!("{path}/{name}?dryRun=All"),
                None,
                case.user.as_ref(),
            )
            .await
        }
    }
}

async fn get_json(client: &kube::Client, path: &str) -> Value {
    let request = http::Request::builder()
        .method("GET")
        .uri(path)
        .body(Vec::new())
        .expect("request");
    client
        .request::<Value>(request)
        .await
        .unwrap_or(Value::Null)
}

/// Drop what the apiserver sets itself, so that an object read from a capture can be created.
fn clean(mut object: Value) -> Value {
    if let Some(m) = object["metadata"].as_object_mut() {
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "generation",
            "selfLink",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            m.remove(k);
        }
    }
    if let Some(o) = object.as_object_mut() {
        o.remove("status");
        o.remove("_err");
    }
    object
}

/// Put an object into the run: its namespace renamed (`<run>-<ns>`, `default` when it names
/// none), Namespaces renamed to `new_name` and labelled for the run.
fn into_run(run: &Run, kind: Kind, mut object: Value, new_name: Option<&str>) -> Value {
    if kind == Kind::Namespace {
        let name = new_name
            .map(str::to_owned)
            .unwrap_or_else(|| run.ns(object["metadata"]["name"].as_str().unwrap_or("ns")));
        object["metadata"]["name"] = json!(name);
        object["metadata"]["labels"][RUN_LABEL] = json!(run.id);
    } else {
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned();
        object["metadata"]["namespace"] = json!(run.ns(&ns));
        if let Some(n) = new_name {
            object["metadata"]["name"] = json!(n);
        }
    }
    object
}

fn kind_of(object: &Value) -> Option<Kind> {
    Kind::from_api_version(
        object["apiVersion"].as_str().unwrap_or(""),
        object["kind"].as_str().unwrap_or(""),
    )
}

/// Every YAML document under `dir` (recursively), with its file.
fn documents(dir: &Path) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    let mut files = Vec::new();
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(p);
            }
        }
    }
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap_or_default();
        let rel = f
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap_or(&f)
            .display()
            .to_string();
        for (i, d) in docs.into_iter().enumerate() {
            if d.is_object() {
                out.push((format!("{rel}#{i}"), d));
            }
        }
    }
    out
}

/// The synthetic cases: each form's findings and the engine's exemptions, on purpose. `NS` is
/// the run's injected namespace, `ROOT` the root namespace, `AMB` an ambient one, `LEGACY` one
/// exempted by label, `PAYMENTS` one exempted by name, `OTHER` another namespace, `SANDBOX` one
/// where every rule only warns, `RELAXED` one whose platform label relaxes PERMISSIVE to a warning
/// and excepts allow-all policies.
const SYNTHETIC_CREATE: &str = r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: s-sandbox-permissive, namespace: SANDBOX}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: s-sandbox-allow-all, namespace: SANDBOX}
spec: {rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: s-relaxed-permissive, namespace: RELAXED}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: s-relaxed-allow-all, namespace: RELAXED}
spec: {rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: s-excepted-permissive, namespace: NS}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: s-permissive, namespace: NS}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: s-port-disable, namespace: NS}
spec: {selector: {matchLabels: {app: a}}, mtls: {mode: STRICT}, portLevelMtls: {"8080": {mode: DISABLE}, "9090": {mode: PERMISSIVE}}}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: s-root-unset, namespace: ROOT}
spec: {}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: s-root-unset-mode, namespace: ROOT}
spec: {mtls: {mode: UNSET}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: s-root-selector, namespace: ROOT}
spec: {selector: {matchLabels: {app: a}}, mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: s-exempt-label, namespace: NS, labels: {mesh-migration: in-progress}}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: s-exempt-namespace-label, namespace: LEGACY}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: s-exempt-namespace, namespace: PAYMENTS}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: s-allow-all, namespace: NS}
spec: {rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: s-allow-all-root, namespace: ROOT}
spec: {selector: {matchLabels: {app: a}}, action: ALLOW, rules: [{}, {from: [{source: {principals: ["*"], namespaces: ["*"]}}]}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: s-no-source, namespace: NS}
spec: {rules: [{to: [{operation: {methods: [GET], paths: ["/api/", "/v1/{*}/", "/x*/"], notPaths: ["/admin/"]}}]}, {when: [{key: "request.headers[x-a]", values: ["1"]}]}, {when: [{key: source.namespace, values: ["a"]}]}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: s-principals, namespace: NS}
spec:
  rules:
  - from:
    - source:
        principals: ["spiffe://cluster.local/ns/a/sa/b", "ns/a/sa/b", "a/b", "cluster.local/ns/a", "clus*ter.local/ns/a/sa/b", "", "*/sa/x", "cluster.local/ns/*", "cluster.local/n*", "*", "x/y*", "*a/ns/b/sa/c", "SPIFFE://x/ns/a/sa/b", "web", "cluster.local/ns/prod/sa/web", "partner.example/ns/a/sa/b", "partner.example/ns/*", "*.example/ns/a/sa/b"]
        notPrincipals: ["a/ns/b"]
    to: [{operation: {ports: ["80"]}}]
    when: [{key: source.principal, values: ["spiffe://a/ns/b/sa/c", "other.example/ns/x/sa/y"], notValues: ["a/b/c"]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: s-conditions, namespace: NS}
spec:
  action: DENY
  rules:
  - when:
    - {key: destination.namespace, values: ["a"]}
    - {key: request.headers, values: ["a"]}
    - {key: 'request.headers["x-api"]', values: ["a"]}
    - {key: "request.auth.claims['role']", values: ["a"]}
    - {key: "request.auth.claims[a][b]", values: ["a"]}
    - {key: experimental.envoy.filters.x, values: ["a"]}
    - {key: sourceip, values: ["a"]}
    - {key: source.namespace, values: ["a"]}
    - {key: source.ip, values: ["10.0.0.0/8"]}
    - {key: remote.ip, values: ["10.0.0.0/8"]}
  - from: [{source: {principals: ["cluster.local/ns/a/sa/b"], remoteIpBlocks: ["1.2.3.4"], notIpBlocks: ["5.6.7.8"]}}]
    to: [{operation: {paths: ["/admin"]}}]
  - to: [{operation: {paths: ["/admin"], ports: ["8080"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: s-negative, namespace: NS}
spec:
  rules:
  - from: [{source: {notPrincipals: ["cluster.local/ns/a/sa/b"], notRequestPrincipals: ["*"]}}]
    when: [{key: "request.auth.claims[iss]", notValues: ["x"]}, {key: source.namespace, notValues: ["y"]}]
  - from: [{source: {principals: ["cluster.local/ns/a/sa/b"], notNamespaces: ["z"], requestPrincipals: ["*"], notRequestPrincipals: ["a/b"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: s-deny-no-rules, namespace: NS}
spec: {action: DENY}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: s-custom-empty-rules, namespace: NS}
spec: {action: CUSTOM, provider: {name: ext}, rules: []}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: s-deny-identity, namespace: NS}
spec: {action: DENY, rules: [{from: [{source: {namespaces: ["a"], ipBlocks: ["10.0.0.1"]}}], when: [{key: source.principal, values: ["a/ns/b/sa/c"]}, {key: "request.auth.claims[x]", values: ["y"]}]}]}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: s-jwt, namespace: NS}
spec:
  jwtRules:
  - {issuer: "https://a.example", jwksUri: "http://a.example/jwks"}
  - {issuer: "https://b.example", jwksUri: "HTTP://b.example/jwks", audiences: ["x"]}
  - {issuer: "https://c.example", jwksUri: "https://10.1.2.3:8443/jwks", audiences: ["x"]}
  - {issuer: "https://d.example", jwksUri: "https://user@LocalHost./jwks", audiences: ["x"]}
  - {issuer: "https://e.example", jwksUri: "https://[fd00::1]/jwks"}
  - {issuer: "https://f.example", jwksUri: "https://169.254.169.254/x", audiences: ["x"]}
  - {issuer: "https://g.example", jwksUri: "https://100.64.0.1/x", audiences: ["x"]}
  - {issuer: "https://h.example", jwksUri: "https://issuer.example/jwks", audiences: ["x"]}
  - {issuer: "https://i.example", jwksUri: "https://8.8.8.8/jwks", audiences: ["x"]}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: s-jwt-empty-issuer, namespace: NS}
spec: {jwtRules: [{jwksUri: "https://a.example/jwks", audiences: ["x"]}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: s-dr-disable, namespace: NS}
spec:
  host: reviews.NS.svc.cluster.local.
  trafficPolicy:
    tls: {mode: DISABLE}
    portLevelSettings: [{port: {number: 80}, tls: {mode: SIMPLE}}, {port: {number: 81}, tls: {mode: MUTUAL, caCertificates: /ca.pem, insecureSkipVerify: true}}]
  subsets: [{name: v1, labels: {v: "1"}, trafficPolicy: {tls: {mode: SIMPLE, credentialName: cred}}}]
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: s-dr-two-labels-own, namespace: NS}
spec: {host: reviews.NS, trafficPolicy: {tls: {mode: DISABLE}}}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: s-dr-two-labels-other, namespace: NS}
spec: {host: reviews.OTHER, trafficPolicy: {tls: {mode: DISABLE}}}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: s-dr-external, namespace: NS}
spec: {host: api.example.com, trafficPolicy: {tls: {mode: SIMPLE}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: s-dr-wildcard, namespace: NS}
spec: {host: "*.local", workloadSelector: {matchLabels: {app: a}}, trafficPolicy: {tls: {mode: MUTUAL, credentialName: c}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: s-dr-short, namespace: NS}
spec: {host: reviews, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: s-deploy, namespace: NS}
spec:
  selector: {matchLabels: {app: s}}
  template:
    metadata:
      labels: {app: s, sidecar.istio.io/inject: "false"}
      annotations: {traffic.sidecar.istio.io/excludeInboundPorts: "8080", traffic.sidecar.istio.io/includeInboundPorts: " * ", sidecar.istio.io/interceptionMode: none}
    spec:
      hostNetwork: true
      securityContext: {runAsUser: 1337}
      containers:
      - {name: app, image: app}
      - {name: app2, image: app, securityContext: {runAsUser: 1337}}
      - {name: istio-proxy, image: "registry.example/mesh/envoy:1.0@sha256:abc"}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: s-cron, namespace: NS}
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        metadata: {annotations: {sidecar.istio.io/inject: "false", traffic.sidecar.istio.io/excludeOutboundIPRanges: "10.0.0.0/8"}}
        spec:
          restartPolicy: Never
          serviceAccountName: default
          containers: [{name: app, image: app}, {name: istio-proxy, image: docker.io/istio/proxyv2:1.27.1}]
---
apiVersion: v1
kind: Pod
metadata: {name: s-pod-auto, namespace: NS}
spec:
  serviceAccountName: web
  initContainers: [{name: istio-proxy, image: auto, restartPolicy: Always}]
  containers: [{name: app, image: app}]
---
apiVersion: v1
kind: Pod
metadata: {name: s-pod-ambient, namespace: AMB, labels: {sidecar.istio.io/inject: "false"}, annotations: {ambient.istio.io/bypass-inbound-capture: "true", traffic.sidecar.istio.io/excludeInboundPorts: "80"}}
spec: {serviceAccountName: web, containers: [{name: app, image: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: s-pod-ambient-out, namespace: AMB, labels: {sidecar.istio.io/inject: "false", istio.io/dataplane-mode: none}, annotations: {traffic.sidecar.istio.io/excludeInboundPorts: "80"}}
spec: {serviceAccountName: web, containers: [{name: app, image: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: s-pod-ambient-sidecar-annotations, namespace: AMB, annotations: {traffic.sidecar.istio.io/excludeInboundPorts: "80"}}
spec: {serviceAccountName: web, containers: [{name: app, image: app}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: s-ns-disabled, labels: {istio-injection: disabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: s-ns-odd, labels: {istio-injection: "Enabled"}}
---
apiVersion: v1
kind: Namespace
metadata: {name: s-ns-conflict, labels: {istio-injection: enabled, istio.io/rev: canary, istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Namespace
metadata: {name: s-ns-conflict-rev, labels: {istio.io/rev: "", istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Service
metadata: {name: s-svc, namespace: NS}
spec: {ports: [{port: 8080, name: web}, {port: 9090, name: grpc-x}, {port: 53, name: dns, protocol: UDP}, {port: 81, name: x, appProtocol: http}, {port: 82, name: HTTP2-a}]}
---
apiVersion: v1
kind: Service
metadata: {name: s-svc-unnamed, namespace: NS}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: s-svc-external, namespace: NS}
spec: {type: ExternalName, externalName: api.example.com, ports: [{port: 80}]}
---
# wl-net-admin, the EnvoyFilter rules and sidecar-ingress-tls: each fires, and stays quiet on
# Istio's own containers (an injected pod, istio-init in a template), outbound and external patches,
# patches that add no security filter, and Istio's mutual TLS on a Sidecar's ingress.
apiVersion: v1
kind: Pod
metadata: {name: s-net-admin, namespace: NS}
spec:
  serviceAccountName: web
  containers:
  - {name: app, image: app, securityContext: {privileged: true, capabilities: {add: [NET_ADMIN, " cap_net_raw", SYS_TIME, all]}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: s-net-admin-injected
  namespace: NS
  annotations: {sidecar.istio.io/status: '{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["istio-envoy"],"imagePullSecrets":null,"revision":"default"}'}
spec:
  serviceAccountName: web
  initContainers:
  - {name: istio-init, image: docker.io/istio/proxyv2:1.27.1, args: [istio-iptables, -p, "15001", -z, "15006", -u, "1337"], securityContext: {runAsUser: 0, runAsNonRoot: false, capabilities: {add: [NET_ADMIN, NET_RAW], drop: [ALL]}}}
  containers:
  - {name: app, image: app}
  - {name: istio-proxy, image: docker.io/istio/proxyv2:1.27.1, args: [proxy, sidecar, --domain, prod.svc.cluster.local], securityContext: {runAsUser: 1337, capabilities: {drop: [ALL]}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: s-net-admin-not-listed
  namespace: NS
  annotations: {sidecar.istio.io/status: '{"initContainers":[],"containers":["istio-proxy"]}'}
spec:
  serviceAccountName: web
  initContainers:
  - {name: istio-init, image: docker.io/istio/proxyv2:1.27.1, args: [istio-iptables], securityContext: {capabilities: {add: [NET_ADMIN]}}}
  containers:
  - {name: app, image: app}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: s-net-admin-init, namespace: NS}
spec:
  selector: {matchLabels: {app: na}}
  template:
    metadata: {labels: {app: na}}
    spec:
      serviceAccountName: web
      initContainers:
      - {name: istio-init, image: docker.io/istio/proxyv2:1.27.1, securityContext: {capabilities: {add: [NET_ADMIN, NET_RAW]}}}
      - {name: istio-validation, image: docker.io/istio/proxyv2:1.27.1, command: [sh, -c, "iptables -F"], securityContext: {capabilities: {add: [NET_ADMIN]}}}
      containers:
      - {name: app, image: app, securityContext: {capabilities: {add: [NET_BIND_SERVICE]}, privileged: false}}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: s-ef-remove-rbac, namespace: NS}
spec:
  workloadSelector: {labels: {app: web}}
  configPatches:
  - applyTo: HTTP_FILTER
    match: {context: SIDECAR_INBOUND, listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: envoy.filters.http.rbac}}}}}
    patch: {operation: REMOVE}
  - applyTo: HTTP_FILTER
    match: {context: SIDECAR_OUTBOUND, listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: envoy.filters.http.rbac}}}}}
    patch: {operation: REMOVE}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: s-ef-every-filter, namespace: NS}
spec:
  configPatches:
  - applyTo: NETWORK_FILTER
    match: {listener: {portNumber: 8080}}
    patch: {operation: MERGE, value: {name: x}}
  - applyTo: NETWORK_FILTER
    match: {context: GATEWAY, listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager}}}}
    patch: {operation: REPLACE, value: {name: envoy.filters.network.tcp_proxy}}
  - applyTo: HTTP_FILTER
    match: {context: SIDECAR_INBOUND}
    patch: {operation: MERGE, value: {typed_config: {"@type": type.googleapis.com/udpa.type.v1.TypedStruct}}}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: s-ef-add-authz, namespace: ROOT}
spec:
  configPatches:
  - applyTo: HTTP_FILTER
    match: {context: GATEWAY, listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: envoy.filters.http.router}}}}}
    patch:
      operation: INSERT_BEFORE
      value: {name: my.ext_authz, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz, zz: [{a: jwt_authn}], "Aa b": istio_authn}}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: s-ef-listener-deep, namespace: NS}
spec:
  configPatches:
  - applyTo: LISTENER
    match: {context: SIDECAR_INBOUND}
    patch:
      operation: ADD
      value:
        name: plain
        filter_chains:
        - filters:
          - name: envoy.filters.network.http_connection_manager
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
              http_filters:
              - {name: envoy.filters.http.rbac}
              - {name: envoy.filters.http.router}
          transport_socket: {name: envoy.transport_sockets.raw_buffer}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: s-ef-transport, namespace: NS}
spec:
  configPatches:
  - applyTo: FILTER_CHAIN
    match: {context: SIDECAR_INBOUND, listener: {portNumber: 15006}}
    patch: {operation: MERGE, value: {transport_socket: {name: envoy.transport_sockets.tls}}}
  - applyTo: CLUSTER
    match: {context: SIDECAR_OUTBOUND, cluster: {service: reviews.prod.svc.cluster.local}}
    patch: {operation: MERGE, value: {transportSocketMatches: [{name: plain}]}}
  - applyTo: CLUSTER
    match: {context: SIDECAR_OUTBOUND, cluster: {service: api.example.com}}
    patch: {operation: MERGE, value: {transport_socket: {name: envoy.transport_sockets.tls}}}
  - applyTo: CLUSTER
    match: {context: SIDECAR_OUTBOUND, cluster: {service: reviews.prod}}
    patch: {operation: MERGE, value: {transport_socket: {name: envoy.transport_sockets.tls}}}
  - applyTo: CLUSTER
    match: {context: SIDECAR_OUTBOUND, cluster: {service: shop.com}}
    patch: {operation: MERGE, value: {transport_socket: {name: envoy.transport_sockets.tls}}}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: s-ef-external-tls, namespace: NS}
spec:
  configPatches:
  - applyTo: CLUSTER
    match: {context: SIDECAR_OUTBOUND, cluster: {service: api.example.com}}
    patch: {operation: MERGE, value: {transport_socket: {name: envoy.transport_sockets.tls}}}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: s-ef-virtual-inbound, namespace: NS}
spec:
  configPatches:
  - applyTo: LISTENER_FILTER
    match: {context: SIDECAR_OUTBOUND, listener: {name: virtualInbound}}
    patch: {operation: REMOVE}
  - applyTo: LISTENER
    match: {context: GATEWAY}
    patch: {operation: MERGE, value: {per_connection_buffer_limit_bytes: 1024}}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: s-ef-lua, namespace: NS}
spec:
  workloadSelector: {labels: {app: web}}
  configPatches:
  - applyTo: HTTP_FILTER
    match: {context: SIDECAR_INBOUND, listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: envoy.filters.http.router}}}}}
    patch: {operation: INSERT_BEFORE, value: {name: envoy.filters.http.lua, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua, inlineCode: "function envoy_on_request(h) end"}}}
  - applyTo: CLUSTER
    match: {context: SIDECAR_OUTBOUND, cluster: {service: api.example.com}}
    patch: {operation: MERGE, value: {connect_timeout: 2s}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: s-sidecar-tls, namespace: NS}
spec:
  workloadSelector: {labels: {app: web}}
  ingress:
  - {port: {number: 8443, protocol: HTTPS, name: https}, defaultEndpoint: "127.0.0.1:8080", tls: {mode: SIMPLE, privateKey: /etc/k.pem, serverCertificate: /etc/c.pem}}
  - {port: {number: 9443, protocol: HTTPS, name: https2}, defaultEndpoint: "127.0.0.1:9080", tls: {mode: ISTIO_MUTUAL}}
  - {port: {number: 9080, protocol: HTTP, name: http}, defaultEndpoint: "127.0.0.1:9080"}
  - {port: {number: 7443, protocol: HTTPS, name: https3}, defaultEndpoint: "127.0.0.1:7080", tls: {credentialName: c}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: s-sidecar-plain, namespace: NS}
spec:
  ingress:
  - {port: {number: 9080, protocol: HTTP, name: http}, defaultEndpoint: "127.0.0.1:9080", tls: {mode: ISTIO_MUTUAL}}
"#;

/// Synthetic UPDATEs: (stored, written, user).
const SYNTHETIC_UPDATE: &[(&str, &str)] = &[
    // A platform-owned label changed by someone outside the platform's groups.
    (
        r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "relabel", "labels": {"istio-injection": "enabled", "env": "staging"}}}"#,
        r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "relabel", "labels": {"istio-injection": "enabled", "env": "prod"}}}"#,
    ),
    // Other labels: the guard stays quiet.
    (
        r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "relabel-other", "labels": {"istio-injection": "enabled", "env": "staging"}}}"#,
        r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "relabel-other", "labels": {"istio-injection": "enabled", "env": "staging", "team": "a"}}}"#,
    ),
    // STRICT → PERMISSIVE: a new finding.
    (
        r#"{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "u1", "namespace": "NS"}, "spec": {"mtls": {"mode": "STRICT"}}}"#,
        r#"{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "u1", "namespace": "NS"}, "spec": {"mtls": {"mode": "PERMISSIVE"}}}"#,
    ),
    // PERMISSIVE already: a relabel is allowed (allowExistingViolations).
    (
        r#"{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "u2", "namespace": "NS"}, "spec": {"mtls": {"mode": "PERMISSIVE"}}}"#,
        r#"{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "u2", "namespace": "NS", "labels": {"x": "y"}}, "spec": {"mtls": {"mode": "PERMISSIVE"}}}"#,
    ),
    // PERMISSIVE for one workload → for the whole namespace: a different finding.
    (
        r#"{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "u3", "namespace": "NS"}, "spec": {"selector": {"matchLabels": {"app": "a"}}, "mtls": {"mode": "PERMISSIVE"}}}"#,
        r#"{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "u3", "namespace": "NS"}, "spec": {"mtls": {"mode": "PERMISSIVE"}}}"#,
    ),
    // Exempt by label before, not after: no pardon.
    (
        r#"{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "u4", "namespace": "NS", "labels": {"mesh-migration": "in-progress"}}, "spec": {"mtls": {"mode": "PERMISSIVE"}}}"#,
        r#"{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "u4", "namespace": "NS"}, "spec": {"mtls": {"mode": "PERMISSIVE"}}}"#,
    ),
    // A second principal problem next to an existing one.
    (
        r#"{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "u5", "namespace": "NS"}, "spec": {"rules": [{"from": [{"source": {"principals": ["a/b"]}}]}]}}"#,
        r#"{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "u5", "namespace": "NS"}, "spec": {"rules": [{"from": [{"source": {"principals": ["a/b", "spiffe://x/ns/a/sa/b"]}}]}]}}"#,
    ),
    // Same exclusion, widened: a different message, so denied.
    (
        r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "u6", "namespace": "NS"}, "spec": {"selector": {"matchLabels": {"app": "u6"}}, "template": {"metadata": {"labels": {"app": "u6"}, "annotations": {"traffic.sidecar.istio.io/excludeInboundPorts": "8080"}}, "spec": {"serviceAccountName": "web", "containers": [{"name": "app", "image": "app"}]}}}}"#,
        r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "u6", "namespace": "NS"}, "spec": {"selector": {"matchLabels": {"app": "u6"}}, "template": {"metadata": {"labels": {"app": "u6"}, "annotations": {"traffic.sidecar.istio.io/excludeInboundPorts": "1-65535"}}, "spec": {"serviceAccountName": "web", "containers": [{"name": "app", "image": "app"}]}}}}"#,
    ),
    // An existing default ServiceAccount, scaled: allowed.
    (
        r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "u7", "namespace": "NS"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "u7"}}, "template": {"metadata": {"labels": {"app": "u7"}}, "spec": {"containers": [{"name": "app", "image": "app"}]}}}}"#,
        r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "u7", "namespace": "NS"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "u7"}}, "template": {"metadata": {"labels": {"app": "u7"}}, "spec": {"containers": [{"name": "app", "image": "app"}]}}}}"#,
    ),
    // A namespace losing its injection label to a disabled one.
    (
        r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "u8", "labels": {"istio-injection": "enabled"}}}"#,
        r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "u8", "labels": {"istio-injection": "disabled"}}}"#,
    ),
    // Namespace-wide STRICT → PERMISSIVE and allow-nothing → allow-all: weakening UPDATEs.
    (
        r#"{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "u9", "namespace": "NS"}, "spec": {}}"#,
        r#"{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "u9", "namespace": "NS"}, "spec": {"rules": [{"from": [{"source": {"principals": ["cluster.local/ns/a/sa/b"]}}]}]}}"#,
    ),
];

/// Synthetic DELETEs: (stored object, user).
const SYNTHETIC_DELETE: &[(&str, Option<&str>)] = &[
    (
        r#"{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "d1", "namespace": "NS"}, "spec": {"mtls": {"mode": "STRICT"}}}"#,
        None,
    ),
    (
        r#"{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "d2", "namespace": "ROOT"}, "spec": {"mtls": {"mode": "STRICT"}}}"#,
        None,
    ),
    (
        r#"{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "d3", "namespace": "NS"}, "spec": {"selector": {"matchLabels": {"app": "a"}}, "mtls": {"mode": "STRICT"}}}"#,
        None,
    ),
    (
        r#"{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "d4", "namespace": "NS"}, "spec": {"mtls": {"mode": "STRICT"}}}"#,
        Some("system:serviceaccount:kube-system:namespace-controller"),
    ),
    (
        r#"{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "d5", "namespace": "NS"}, "spec": {}}"#,
        None,
    ),
    (
        r#"{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "d6", "namespace": "NS", "annotations": {"istio.io/dry-run": "true"}}, "spec": {}}"#,
        None,
    ),
    (
        r#"{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy", "metadata": {"name": "d7", "namespace": "ROOT"}, "spec": {"action": "ALLOW"}}"#,
        None,
    ),
];

/// Pods created by the ReplicaSet controller for their owner: the owner's findings are the
/// owner's (allowed with a warning), a missing sidecar is not.
fn controller_pod(run: &Run) -> Case {
    Case {
        label: "synthetic: Pod created by the replicaset controller".to_owned(),
        op: Op::Create,
        kind: Kind::Pod,
        object: json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "s-owned", "namespace": run.ns("production"),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x", "uid": "6c7a0e4e-0000-4000-8000-000000000001", "controller": true}],
                "annotations": {"traffic.sidecar.istio.io/excludeInboundPorts": "80"}},
            "spec": {"containers": [{"name": "app", "image": "app"}]}}),
        old: None,
        user: Some((
            "system:serviceaccount:kube-system:replicaset-controller".to_owned(),
            vec![
                "system:serviceaccounts".to_owned(),
                "system:serviceaccounts:kube-system".to_owned(),
                "system:authenticated".to_owned(),
            ],
        )),
    }
}

fn substitute(text: &str, run: &Run) -> String {
    // Longer placeholders first.
    text.replace("SANDBOX", &run.ns("sandbox"))
        .replace("RELAXED", &run.ns("relaxed"))
        .replace("PAYMENTS", &run.ns("payments"))
        .replace("LEGACY", &run.ns("legacy"))
        .replace("OTHER", &run.ns("other"))
        .replace("ROOT", &run.ns("istio-system"))
        .replace("AMB", &run.ns("ambient"))
        .replace(".NS", &format!(".{}", run.ns("production")))
        .replace("\"NS\"", &format!("\"{}\"", run.ns("production")))
        .replace(
            "namespace: NS",
            &format!("namespace: {}", run.ns("production")),
        )
}

/// Every case, and the stored objects phase 0 creates for them.
fn cases(run: &Run) -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    let mut unique = 0usize;
    let mut next = |prefix: &str| {
        unique += 1;
        format!("{prefix}{unique}")
    };

    // Captured reviews.
    let mut captures: Vec<PathBuf> = std::fs::read_dir(root.join("tests/fixtures/admission"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    captures.sort();
    for path in captures {
        let label = format!(
            "capture {}",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let Ok(review) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let r = &review["request"];
        if r["subResource"].as_str().is_some_and(|s| !s.is_empty()) {
            continue;
        }
        let gvk = &r["kind"];
        let Some(kind) = Kind::from_gvk(
            gvk["group"].as_str().unwrap_or(""),
            gvk["version"].as_str().unwrap_or(""),
            gvk["kind"].as_str().unwrap_or(""),
        ) else {
            continue;
        };
        let user = r["userInfo"]["username"].as_str().map(|u| {
            let groups = r["userInfo"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect();
            (u.to_owned(), groups)
        });
        let op = match r["operation"].as_str() {
            Some("CREATE") => Op::Create,
            Some("UPDATE") => Op::Update,
            Some("DELETE") => Op::Delete,
            _ => continue,
        };
        let name = next("c");
        match op {
            Op::Create => {
                let new_name = (kind == Kind::Namespace).then(|| run.ns(&name));
                out.push(Case {
                    label,
                    op,
                    kind,
                    object: into_run(run, kind, clean(r["object"].clone()), new_name.as_deref()),
                    old: None,
                    user,
                });
            }
            Op::Update => {
                let new_name = if kind == Kind::Namespace {
                    run.ns(&name)
                } else {
                    name.clone()
                };
                let old = into_run(run, kind, clean(r["oldObject"].clone()), Some(&new_name));
                let object = into_run(run, kind, clean(r["object"].clone()), Some(&new_name));
                out.push(Case {
                    label,
                    op,
                    kind,
                    object,
                    old: Some(old),
                    user,
                });
            }
            Op::Delete => {
                if kind == Kind::Namespace {
                    continue; // no rule judges a Namespace DELETE; the webhook is not called
                }
                let old = into_run(run, kind, clean(r["oldObject"].clone()), Some(&name));
                out.push(Case {
                    label,
                    op,
                    kind,
                    object: old.clone(),
                    old: Some(old),
                    user,
                });
            }
        }
    }

    // Fixtures and conformance files: each object as a CREATE.
    for dir in [
        "tests/fixtures/tutorial",
        "tests/fixtures/check",
        "tests/fixtures/mesh",
        "tests/conformance",
    ] {
        for (label, doc) in documents(&root.join(dir)) {
            let Some(kind) = kind_of(&doc) else { continue };
            let new_name = (kind == Kind::Namespace).then(|| run.ns(&next("f")));
            out.push(Case {
                label,
                op: Op::Create,
                kind,
                object: into_run(run, kind, clean(doc), new_name.as_deref()),
                old: None,
                user: None,
            });
        }
    }

    // Synthetic cases.
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&substitute(SYNTHETIC_CREATE, run)).expect("synthetic YAML");
    for doc in docs {
        let kind = kind_of(&doc).expect("synthetic kind");
        let label = format!(
            "synthetic {} {}",
            doc["kind"].as_str().unwrap_or(""),
            doc["metadata"]["name"].as_str().unwrap_or("")
        );
        let mut object = doc;
        if kind == Kind::Namespace {
            let n = run.ns(object["metadata"]["name"].as_str().unwrap_or("ns"));
            object["metadata"]["name"] = json!(n);
            object["metadata"]["labels"][RUN_LABEL] = json!(run.id);
        }
        out.push(Case {
            label,
            op: Op::Create,
            kind,
            object,
            old: None,
            user: None,
        });
    }
    out.push(controller_pod(run));
    for (old, new) in SYNTHETIC_UPDATE {
        let mut old: Value = serde_json::from_str(&substitute(old, run)).expect("synthetic old");
        let mut new: Value = serde_json::from_str(&substitute(new, run)).expect("synthetic new");
        let kind = kind_of(&old).expect("kind");
        if kind == Kind::Namespace {
            let n = run.ns(old["metadata"]["name"].as_str().unwrap_or("ns"));
            for o in [&mut old, &mut new] {
                o["metadata"]["name"] = json!(n);
                o["metadata"]["labels"][RUN_LABEL] = json!(run.id);
            }
        }
        let label = format!(
            "synthetic UPDATE {} {}",
            old["kind"].as_str().unwrap_or(""),
            old["metadata"]["name"].as_str().unwrap_or("")
        );
        out.push(Case {
            label,
            op: Op::Update,
            kind,
            object: new,
            old: Some(old),
            user: None,
        });
    }
    for (old, user) in SYNTHETIC_DELETE {
        let old: Value = serde_json::from_str(&substitute(old, run)).expect("synthetic delete");
        let kind = kind_of(&old).expect("kind");
        let label = format!(
            "synthetic DELETE {} {}",
            old["kind"].as_str().unwrap_or(""),
            old["metadata"]["name"].as_str().unwrap_or("")
        );
        out.push(Case {
            label,
            op: Op::Delete,
            kind,
            object: old.clone(),
            old: Some(old),
            user: user.map(|u| {
                (
                    u.to_owned(),
                    vec![
                        "system:serviceaccounts".to_owned(),
                        "system:authenticated".to_owned(),
                    ],
                )
            }),
        });
    }
    out
}

/// A generated object's name, kind and (for bindings) actions.
struct Generated {
    objects: Vec<Value>,
    /// policy name → (rule id, validation action of its binding)
    policies: BTreeMap<String, (String, String)>,
}

fn generate(run: &Run, policy_file: &Path) -> Generated {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshguard"))
        .args([
            "generate",
            "admission-policies",
            "--format",
            "json",
            "--config",
        ])
        .arg(policy_file)
        .args(["--istio-namespace", &run.ns("istio-system")])
        .args(["--name-prefix", &format!("{}-", run.id)])
        .args(["--namespace-selector", &format!("{RUN_LABEL}={}", run.id)])
        .env_remove("POD_NAMESPACE")
        .output()
        .expect("meshguard generate");
    assert!(
        out.status.success(),
        "meshguard generate admission-policies failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).expect("generated JSON");
    let objects: Vec<Value> = list["items"].as_array().cloned().unwrap_or_default();
    let mut policies = BTreeMap::new();
    for o in &objects {
        if o["kind"] == "ValidatingAdmissionPolicyBinding" {
            let name = o["spec"]["policyName"].as_str().unwrap_or("").to_owned();
            let rule = o["metadata"]["labels"]["meshguard.io/rule"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let action = o["spec"]["validationActions"][0]
                .as_str()
                .unwrap_or("")
                .to_owned();
            policies.insert(name, (rule, action));
        }
    }
    Generated { objects, policies }
}

fn to_yaml(objects: &[Value]) -> String {
    serde_saphyr::to_string_multiple(objects).expect("YAML")
}

/// The parity bindings: the generated ones renamed `-parity`, reporting only (Warn).
fn parity_bindings(generated: &Generated) -> Vec<Value> {
    generated
        .objects
        .iter()
        .filter(|o| o["kind"] == "ValidatingAdmissionPolicyBinding")
        .map(|o| {
            let mut b = o.clone();
            let name = format!("{}-parity", o["metadata"]["name"].as_str().unwrap_or(""));
            b["metadata"]["name"] = json!(name);
            b["spec"]["validationActions"] = json!(["Warn"]);
            b
        })
        .collect()
}

/// Wait until the policies answer: a PERMISSIVE PeerAuthentication is reported (`deny`: refused)
/// by the run's pa-permissive-mtls policy.
async fn wait_policies(run: &Run, client: &kube::Client, deny: bool) {
    let probe = json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "probe", "namespace": run.ns("production")},
        "spec": {"mtls": {"mode": "PERMISSIVE"}}});
    let path = format!(
        "{}?dryRun=All",
        object_path(Kind::PeerAuthentication, &probe)
    );
    let policy = format!("{}-pa-permissive-mtls", run.id);
    harness::eventually("the generated policies answer", PATIENCE, || {
        let (path, probe, policy) = (&path, &probe, &policy);
        async move {
            let a = send(client, "POST", path, Some(probe), None).await;
            let ok = if deny {
                a.policy_denied().as_deref() == Some(policy.as_str())
            } else {
                a.policies_warned().contains(policy)
            };
            if ok {
                Ok(())
            } else {
                Err(format!("{a:?}"))
            }
        }
    })
    .await;
    // Bindings reach the apiserver's policy cache one by one; give the rest a moment.
    tokio::time::sleep(Duration::from_secs(3)).await;
}

async fn scenario(kubeconfig: &Path) {
    let run = Run::new(kubeconfig, "vap").await;
    let client = run.client.clone();

    // --- Phase 0: the cluster as the cases need it, nothing registered yet.
    for ns in NAMESPACES {
        let labels: &[(&str, &str)] = match *ns {
            "production" | "prod" | "default" | "payments" | "other" => {
                &[("istio-injection", "enabled")]
            }
            "legacy" => &[("istio-injection", "enabled"), ("team", "legacy")],
            "sandbox" => &[("istio-injection", "enabled")],
            "relaxed" => &[("istio-injection", "enabled"), ("env", "relaxed")],
            "ambient" => &[("istio.io/dataplane-mode", "ambient")],
            _ => &[],
        };
        run.create_namespace(ns, labels).await.ok();
    }
    let all_cases = cases(&run);
    // Every other namespace a case lives in.
    let mut more: BTreeSet<String> = BTreeSet::new();
    for c in &all_cases {
        if c.kind != Kind::Namespace {
            if let Some(ns) = c.object["metadata"]["namespace"].as_str() {
                more.insert(ns.to_owned());
            }
        }
    }
    for ns in NAMESPACES {
        more.remove(&run.ns(ns));
    }
    for ns in &more {
        let suffix = ns.strip_prefix(&format!("{}-", run.id)).unwrap_or(ns);
        run.create_namespace(suffix, &[]).await.ok();
    }
    // ServiceAccounts the pods run as (the ServiceAccount admission plugin wants them).
    let mut accounts: BTreeSet<(String, String)> = BTreeSet::new();
    for c in &all_cases {
        if c.kind == Kind::Pod {
            let ns = c.object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let sa = c.object["spec"]["serviceAccountName"]
                .as_str()
                .unwrap_or("default")
                .to_owned();
            accounts.insert((ns, sa));
        }
    }
    for ns in NAMESPACES {
        accounts.insert((run.ns(ns), "web".to_owned()));
    }
    for (ns, sa) in &accounts {
        if sa != "default" {
            let body = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": ns}});
            send(
                &client,
                "POST",
                &format!("/api/v1/namespaces/{ns}/serviceaccounts"),
                Some(&body),
                None,
            )
            .await;
        }
    }
    // Every namespace's default ServiceAccount (kube-controller-manager creates them).
    let every: Vec<String> = NAMESPACES
        .iter()
        .map(|n| run.ns(n))
        .chain(more.iter().cloned())
        .collect();
    for ns in &every {
        let path = format!("/api/v1/namespaces/{ns}/serviceaccounts/default");
        harness::eventually("default ServiceAccounts", PATIENCE, || {
            let (client, path) = (&client, &path);
            async move {
                let a = send(client, "GET", path, None, None).await;
                if a.allowed() {
                    Ok(())
                } else {
                    Err(format!("{a:?}"))
                }
            }
        })
        .await;
    }
    // Stored objects of the UPDATE and DELETE cases.
    let mut stored_failures = Vec::new();
    for c in &all_cases {
        let Some(old) = &c.old else { continue };
        let path = object_path(c.kind, old);
        let a = send(
            &client,
            "POST",
            &format!("{path}?fieldValidation=Ignore"),
            Some(old),
            None,
        )
        .await;
        if !a.allowed() {
            stored_failures.push(format!("{}: {} {}", c.label, a.status, a.message));
        }
    }
    run.step(format!(
        "phase 0: {} cases; stored objects that could not be created: {stored_failures:?}",
        all_cases.len()
    ));

    // --- Generated policies, and meshguard with the same policy.
    let policy_file = run.dir.path().join("policy.yaml");
    std::fs::write(&policy_file, policy(&run)).expect("policy file");
    let generated = generate(&run, &policy_file);
    assert!(
        generated.policies.len() >= 30,
        "{} policies",
        generated.policies.len()
    );
    let mg = run
        .serve(&[
            "--config",
            policy_file.to_str().expect("path"),
            "--istio-namespace",
            &run.ns("istio-system"),
        ])
        .await;
    let (validating_rules, _) = harness::chart_rules();
    let ca = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &mg.pki.ca_pem);
    let webhook_name = format!("meshguard-{}", run.id);
    let webhook = |policy: &str| {
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": webhook_name},
            "webhooks": [{"name": "validate.meshguard.io", "admissionReviewVersions": ["v1"],
                "sideEffects": "None", "failurePolicy": policy, "matchPolicy": "Equivalent",
                "timeoutSeconds": 10,
                "clientConfig": {"url": format!("https://{}/validate", mg.addr), "caBundle": ca},
                "namespaceSelector": {"matchLabels": {RUN_LABEL: run.id}},
                "rules": validating_rules}]})
    };
    run.apply_cluster_scoped(&to_yaml(&[webhook("Fail")]))
        .await
        .ok();
    let policies: Vec<Value> = generated
        .objects
        .iter()
        .filter(|o| o["kind"] == "ValidatingAdmissionPolicy")
        .cloned()
        .collect();
    run.apply_cluster_scoped(&to_yaml(&policies)).await.ok();
    let parity = parity_bindings(&generated);
    run.apply_cluster_scoped(&to_yaml(&parity)).await.ok();
    // The webhook answers (it refuses a disabled namespace) and the policies report.
    let disabled = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": run.ns("probe"), "labels": {RUN_LABEL: run.id, "istio-injection": "disabled"}}});
    harness::eventually("the webhook answers", PATIENCE, || {
        let (client, disabled) = (&client, &disabled);
        async move {
            let a = send(
                client,
                "POST",
                "/api/v1/namespaces?dryRun=All",
                Some(disabled),
                None,
            )
            .await;
            if a.webhook_denies().contains("ns-injection-disabled") {
                Ok(())
            } else {
                Err(format!("{a:?}"))
            }
        }
    })
    .await;
    wait_policies(&run, &client, false).await;

    // --- Parity pass.
    let forms: BTreeMap<&str, &meshguard::rules::cel::CelForm> = meshguard::rules::cel::REGISTRY
        .iter()
        .map(|f| (f.rule.id, *f))
        .collect();
    let mut mismatches = Vec::new();
    let mut fired: BTreeMap<String, usize> = BTreeMap::new();
    let mut admissible = 0usize;
    let mut skipped: Vec<String> = Vec::new();
    // Per case: the deny-level rules the policies fired (what the down pass must refuse).
    let mut expected_down: Vec<Option<BTreeSet<String>>> = Vec::new();
    let mut fired_policies: BTreeSet<String> = BTreeSet::new();
    let policy_in_force =
        meshguard::catalogue::policy_from_yaml(&policy(&run), "the run's policy").expect("policy");
    let mut namespace_labels: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut excepted_cases = 0usize;
    // The apiserver loads policies and bindings into its admission cache one by one, after
    // `wait_policies` saw the first answer: a pass that differs is run again (up to three
    // times, 10 s apart) before the difference counts, so a late binding is not a failure
    // while a difference that stays is.
    for attempt in 1..=3 {
        mismatches.clear();
        fired.clear();
        admissible = 0;
        skipped.clear();
        expected_down.clear();
        fired_policies.clear();
        excepted_cases = 0;
        for c in &all_cases {
            let a = dry_run(&client, c).await;
            let warned_policies = a.policies_warned();
            fired_policies.extend(warned_policies.iter().cloned());
            if ["s-excepted-permissive", "s-relaxed-allow-all"]
                .iter()
                .any(|n| c.label.ends_with(n))
            {
                // Excepted by the policy: allowed, with the exception named, by both paths.
                assert!(
                    a.allowed()
                        && a.warnings
                            .iter()
                            .any(|w| w.contains("excepted by policy:e2e-"))
                        && warned_policies.is_empty(),
                    "{}: {a:?}",
                    c.label
                );
                excepted_cases += 1;
            }
            let reached_admission =
                a.allowed() || a.webhook_denied() || !warned_policies.is_empty();
            if !reached_admission {
                skipped.push(format!(
                    "{} ({:?}): {} {}",
                    c.label,
                    c.op,
                    a.status,
                    a.message.chars().take(160).collect::<String>()
                ));
                expected_down.push(None);
                continue;
            }
            admissible += 1;
            let w_deny = a.webhook_denies();
            let w_warn = a.webhook_warns();
            let cut = a.warnings_cut();
            let mut v_deny = BTreeSet::new();
            let mut v_warn = BTreeSet::new();
            for p in &warned_policies {
                let Some((rule, action)) = generated.policies.get(p) else {
                    continue;
                };
                *fired.entry(rule.clone()).or_default() += 1;
                match action.as_str() {
                    "Deny" => v_deny.insert(rule.clone()),
                    _ => v_warn.insert(rule.clone()),
                };
            }
            // The action each rule takes in this case's namespace, as meshguard resolves it
            // (per-namespace overrides): the policy of that action is the one to compare.
            let (ns, labels) = match c.kind {
                Kind::Namespace => {
                    let stored = c.old.as_ref().unwrap_or(&c.object);
                    (
                        stored["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                        string_map(&stored["metadata"]["labels"]),
                    )
                }
                _ => {
                    let ns = c.object["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned();
                    let labels = match namespace_labels.get(&ns) {
                        Some(l) => l.clone(),
                        None => {
                            let got = string_map(
                                &get_json(&client, &format!("/api/v1/namespaces/{ns}")).await
                                    ["metadata"]["labels"],
                            );
                            namespace_labels.insert(ns.clone(), got.clone());
                            got
                        }
                    };
                    (ns, labels)
                }
            };
            let rules: BTreeSet<&String> = generated.policies.values().map(|(r, _)| r).collect();
            for rule in rules {
                let Some(form) = forms.get(rule.as_str()) else {
                    continue;
                };
                let here =
                    policy_in_force.action_in(rule, form.rule.default_action, &ns, Some(&labels));
                let (action, v, w, other) = match here {
                    meshguard::finding::Action::Deny => (
                        "Deny",
                        v_deny.contains(rule),
                        w_deny.contains(rule),
                        v_warn.contains(rule),
                    ),
                    meshguard::finding::Action::Warn => (
                        "Warn",
                        v_warn.contains(rule),
                        w_warn.contains(rule),
                        v_deny.contains(rule),
                    ),
                    _ => (
                        "",
                        false,
                        false,
                        v_deny.contains(rule) || v_warn.contains(rule),
                    ),
                };
                // With warnings cut, any warning may be the one missing: only a policy that fired
                // for a deny rule the webhook did not deny is then a certain difference.
                let ok = !other
                    && match form.coverage {
                        _ if action.is_empty() => true,
                        _ if cut => action != "Deny" || !v || w,
                        meshguard::rules::cel::Coverage::Full => v == w,
                        meshguard::rules::cel::Coverage::Partly(_) => !v || w,
                    };
                if !ok {
                    mismatches.push(format!(
                    "{} ({:?} {}): rule {rule} ({here:?} in {ns}): policy {v}, webhook {w}, a policy of another action fired: {other}\n    webhook: {} {:?}\n    warnings: {:?}",
                    c.label, c.op, c.kind, a.status, a.message, a.warnings
                ));
                }
            }
            expected_down.push(Some(v_deny));
        }
        if mismatches.is_empty() || attempt == 3 {
            break;
        }
        run.step(format!(
        "parity pass {attempt}: {} differences; the policy cache may still be filling, again in 10 s",
        mismatches.len()
    ));
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    run.step(format!(
        "parity pass: {admissible} cases reached admission, {} did not: {skipped:#?}",
        skipped.len()
    ));
    assert!(
        mismatches.is_empty(),
        "{} verdicts differ between the webhook and the generated policies:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    // Every form is exercised, except those the CRD schemas keep from ever reaching admission.
    let unreachable = ["pa-port-level-without-selector"];
    let never: Vec<&str> = forms
        .keys()
        .filter(|id| !unreachable.contains(id) && !fired.contains_key(**id))
        .copied()
        .collect();
    assert!(
        never.is_empty(),
        "forms no case fired: {never:?} (fired: {fired:?})"
    );
    assert!(
        admissible >= 150,
        "only {admissible} cases reached admission: {skipped:#?}"
    );
    // Per-namespace actions: the rules' warn policies fired where the overrides say so.
    assert_eq!(excepted_cases, 2);
    for policy in ["pa-permissive-mtls-warn", "ap-allow-all-warn"] {
        let name = format!("{}-{policy}", run.id);
        assert!(
            fired_policies.contains(&name),
            "{name} never fired: {fired_policies:?}"
        );
    }

    // --- meshguard down: webhook fail-open and stopped, the generated bindings in force.
    run.apply_cluster_scoped(&to_yaml(&[webhook("Ignore")]))
        .await
        .ok();
    let names: Vec<String> = parity
        .iter()
        .map(|b| {
            format!(
                "validatingadmissionpolicybinding/{}",
                b["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    let mut args = vec!["delete", "--ignore-not-found"];
    args.extend(names.iter().map(String::as_str));
    run.kubectl(&args).await.ok();
    drop(mg);
    let bindings: Vec<Value> = generated
        .objects
        .iter()
        .filter(|o| o["kind"] == "ValidatingAdmissionPolicyBinding")
        .cloned()
        .collect();
    run.apply_cluster_scoped(&to_yaml(&bindings)).await.ok();
    wait_policies(&run, &client, true).await;

    let mut down_mismatches = Vec::new();
    let mut refused = 0usize;
    for (c, expected) in all_cases.iter().zip(&expected_down) {
        let Some(expected) = expected else { continue };
        let a = dry_run(&client, c).await;
        let denied_by = a
            .policy_denied()
            .and_then(|p| generated.policies.get(&p).map(|(r, _)| r.clone()));
        let ok = match (&denied_by, expected.is_empty()) {
            (None, true) => a.allowed(),
            (Some(rule), false) => {
                refused += 1;
                expected.contains(rule) && a.message.contains(&format!("[{rule}]"))
            }
            _ => false,
        };
        if !ok {
            down_mismatches.push(format!(
                "{} ({:?}): expected refusal by {expected:?}, got {} {}",
                c.label, c.op, a.status, a.message
            ));
        }
    }
    assert!(
        down_mismatches.is_empty(),
        "with meshguard down, {} answers differ from the parity pass:\n{}",
        down_mismatches.len(),
        down_mismatches.join("\n")
    );
    // The issue's own example: a PERMISSIVE PeerAuthentication, refused by kube-apiserver.
    let permissive = json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "while-down", "namespace": run.ns("production")},
        "spec": {"mtls": {"mode": "PERMISSIVE"}}});
    let out = run.apply(&to_yaml(&[permissive]), &[]).await;
    assert!(
        !out.success()
            && out.stderr.contains("ValidatingAdmissionPolicy")
            && out.stderr.contains("[pa-permissive-mtls]"),
        "a PERMISSIVE PeerAuthentication must be refused by kube-apiserver while meshguard is down:\n{out}"
    );
    println!(
        "e2e admission_policies: {} cases, {admissible} reached admission; parity on {} rules; with meshguard down {refused} refused by the policies",
        all_cases.len(),
        forms.len()
    );
}
