//! `meshguard generate admission-policies`: the rules CEL can state, as ValidatingAdmissionPolicies
//! (`admissionregistration.k8s.io/v1`, evaluated inside kube-apiserver), so that they keep holding
//! while the webhook is unreachable. Pure: the engine's policy and mesh values plus the rules' CEL
//! forms ([`crate::rules::cel`]) in, Kubernetes objects out, deterministically.
//!
//! One policy and one binding per rule with a CEL form whose action is not `off`:
//!
//! * **match**: the rule's kinds (every served version, `matchPolicy: Equivalent`) and the
//!   operations it judges;
//! * **match conditions**: what makes the engine pass a review untouched: the exempt namespaces
//!   (not for Istio's kinds), an UPDATE of an object being deleted, the namespace controller
//!   emptying a namespace (DELETE rules), a controller creating an object for its owner
//!   (`allowExistingViolations`), and the rule's own `exemptions` (namespaces, object and
//!   namespace label selectors, as CEL);
//! * **variables**: the settings the CEL reads (root namespace, trust domain, ...), the form's
//!   variables, its findings on the object, and for `allowExistingViolations` the findings the
//!   old object of an UPDATE already had: only new ones deny, as in the webhook;
//! * **one validation** with the rule id and every new finding's `path: message. Fix: fix` in
//!   its `messageExpression`;
//! * **binding**: `validationActions` from the rule's action under the policy (deny → `Deny`,
//!   warn → `Warn`, audit → `Audit`).

use crate::config::{Exemption, LabelSelector, SelectorOperator};
use crate::context::NoCluster;
use crate::engine::Engine;
use crate::finding::Action;
use crate::resource::{Kind, Review};
use crate::rules::cel::{self, lit, lit_list, CelForm, Coverage, On};
use crate::rules::{Ctx, ReviewCache};
use kube::core::admission::Operation;
use kube::core::DynamicObject;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// How the generated objects are named and scoped.
#[derive(Clone, Debug)]
pub struct Options {
    /// Prefix of every object's name (`<prefix><rule id>`).
    pub name_prefix: String,
    /// Labels a namespace must carry for the bindings to apply (`matchResources.namespaceSelector`;
    /// for Namespace objects, their own labels). Empty: every namespace.
    pub namespace_selector: BTreeMap<String, String>,
    /// `failurePolicy` of the policies: what kube-apiserver does when an expression cannot be
    /// evaluated (cost budget exceeded, a type it did not expect).
    pub failure_policy: FailurePolicy,
    /// Extra labels on every object.
    pub labels: BTreeMap<String, String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            name_prefix: "meshguard-".to_owned(),
            namespace_selector: BTreeMap::new(),
            failure_policy: FailurePolicy::Fail,
            labels: BTreeMap::new(),
        }
    }
}

/// `failurePolicy` of the generated policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailurePolicy {
    Fail,
    Ignore,
}

impl FailurePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::Fail => "Fail",
            FailurePolicy::Ignore => "Ignore",
        }
    }
}

/// Why the generator refused (a form that does not fit its own rules: a bug, caught by tests).
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("CEL form of {rule}: {message}")]
    Form { rule: &'static str, message: String },
}

/// The identities of Kubernetes' controllers that create pods (and their controllers) for an
/// owner; the engine's `created_for` recognises the same ([`crate::admission`]).
pub use crate::admission::{CONTROLLER_IDENTITIES, NAMESPACE_CONTROLLER};

/// The values behind the settings `@name` of the forms, for this engine.
pub fn settings(engine: &Engine) -> BTreeMap<&'static str, Value> {
    let mesh = engine.mesh();
    let policy = engine.policy();
    let mut trust_domains: Vec<String> =
        vec![crate::mesh::mesh_config::DEFAULT_TRUST_DOMAIN.to_owned()];
    for td in mesh.trust_domains() {
        if !trust_domains.iter().any(|t| t == td) {
            trust_domains.push(td.to_owned());
        }
    }
    let suffixes: Vec<String> = policy
        .mesh_host_suffixes
        .iter()
        .map(|s| s.to_ascii_lowercase().trim_start_matches('.').to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let (key, value) = crate::rules::namespace::wanted_label(policy);
    let mut out = BTreeMap::new();
    out.insert("rootNamespace", json!(mesh.root_namespace().value));
    out.insert("trustDomain", json!(mesh.trust_domain().value));
    out.insert("trustDomains", json!(trust_domains));
    out.insert(
        "clusterDomain",
        json!(policy.cluster_domain.trim_matches('.').to_ascii_lowercase()),
    );
    out.insert("meshHostSuffixes", json!(suffixes));
    out.insert("injectionLabel", json!(format!("{key}: {value}")));
    out
}

/// A JSON value as a CEL literal (strings, lists of strings, booleans).
fn cel_literal(v: &Value) -> String {
    match v {
        Value::String(s) => lit(s),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(cel_literal).collect();
            format!("[{}]", parts.join(", "))
        }
        other => other.to_string(),
    }
}

/// Fill in a form's placeholders: `$o` (and `$n`) become the objects judged, `$name` the form's
/// variable `name` for the same object (`variables.<prefix><name>`), `@name` a setting
/// (`variables.<name>`, recorded in `used`). String literals are left alone.
fn instantiate(
    expr: &str,
    o: &str,
    n: Option<&str>,
    prefix: &str,
    declared: &[&str],
    used: &mut BTreeSet<&'static str>,
) -> Result<String, String> {
    let mut out = String::with_capacity(expr.len() + 64);
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            out.push(c);
            if c == '\\' {
                if let Some(next) = chars.get(i + 1) {
                    out.push(*next);
                    i += 1;
                }
            } else if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if c == '\'' || c == '"' {
            quote = Some(c);
            out.push(c);
            i += 1;
            continue;
        }
        if c == '$' || c == '@' {
            let start = i + 1;
            let mut end = start;
            while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_') {
                end += 1;
            }
            let name: String = chars[start..end].iter().collect();
            if name.is_empty() {
                return Err(format!("a bare {c} in {expr:?}"));
            }
            if c == '@' {
                let Some((setting, _)) = cel::SETTINGS.iter().find(|(s, _)| *s == name) else {
                    return Err(format!("unknown setting @{name}"));
                };
                used.insert(setting);
                out.push_str("variables.");
                out.push_str(setting);
            } else if name == "o" {
                out.push_str(o);
            } else if name == "n" {
                match n {
                    Some(n) => out.push_str(n),
                    None => return Err("$n outside a weakening UPDATE".to_owned()),
                }
            } else if declared.contains(&name.as_str()) {
                out.push_str("variables.");
                out.push_str(prefix);
                out.push_str(&name);
            } else {
                return Err(format!("${name} is not a variable declared before it"));
            }
            i = end;
            continue;
        }
        out.push(c);
        i += 1;
    }
    if quote.is_some() {
        return Err(format!("unterminated string literal in {expr:?}"));
    }
    Ok(out)
}

/// A label selector as a CEL condition on the labels map `labels` (a CEL expression).
pub fn selector_cel(sel: &LabelSelector, labels: &str) -> String {
    let mut conds = Vec::new();
    for (k, v) in &sel.match_labels {
        conds.push(format!("{k} in l && l[{k}] == {v}", k = lit(k), v = lit(v)));
    }
    for e in &sel.match_expressions {
        let k = lit(&e.key);
        let values = lit_list(&e.values);
        conds.push(match e.operator {
            SelectorOperator::In => format!("{k} in l && l[{k}] in {values}"),
            SelectorOperator::NotIn => format!("!({k} in l && l[{k}] in {values})"),
            SelectorOperator::Exists => format!("{k} in l"),
            SelectorOperator::DoesNotExist => format!("!({k} in l)"),
        });
    }
    if conds.is_empty() {
        return "true".to_owned();
    }
    format!("[{labels}].all(l, {})", conds.join(" && "))
}

/// The rule's `exemptions` as one CEL condition (true: exempt), with the object's labels read
/// from `subject_labels` (a CEL expression) and a namespace selector turned into CEL by
/// `namespace_selector`.
pub fn exemptions_cel(
    exemptions: &[Exemption],
    subject_labels: &str,
    namespace_selector: &dyn Fn(&LabelSelector) -> String,
) -> Option<String> {
    let mut any = Vec::new();
    for ex in exemptions {
        let mut all = Vec::new();
        if !ex.namespaces.is_empty() {
            all.push(format!("request.namespace in {}", lit_list(&ex.namespaces)));
        }
        if let Some(sel) = &ex.object_selector {
            all.push(selector_cel(sel, subject_labels));
        }
        if let Some(sel) = &ex.namespace_selector {
            all.push(namespace_selector(sel));
        }
        if all.is_empty() {
            continue; // no condition: exempts nothing (as the engine reads it)
        }
        any.push(format!("({})", all.join(" && ")));
    }
    (!any.is_empty()).then(|| any.join(" || "))
}

/// A namespace selector of an exemption for objects of `kinds`: the namespace's labels as the
/// webhook's namespace cache knows them. For a Namespace that is its stored labels (an UPDATE's
/// old object); a namespace being created is not in the cache, so no selector matches it.
fn namespace_selector_cel(kinds: &[Kind]) -> impl Fn(&LabelSelector) -> String {
    let namespace_kind = kinds == [Kind::Namespace];
    move |sel| {
        if namespace_kind {
            format!(
                "(request.operation == 'UPDATE' && {})",
                selector_cel(sel, "oldObject.metadata.?labels.orValue({})")
            )
        } else {
            format!(
                "(namespaceObject != null && {})",
                selector_cel(sel, "namespaceObject.metadata.?labels.orValue({})")
            )
        }
    }
}

/// Whether the rule refuses a weakening UPDATE today (the CEL follows the rule, never leads it).
fn rule_judges_weakening(form: &CelForm, engine: &Engine, probe: (&str, &str)) -> bool {
    let (Ok(old), Ok(new)) = (
        serde_json::from_str::<DynamicObject>(probe.0),
        serde_json::from_str::<DynamicObject>(probe.1),
    ) else {
        return false;
    };
    let kind = form.rule.kinds[0];
    let op = Operation::Update;
    let ns = new.metadata.namespace.clone().unwrap_or_default();
    let name = new.metadata.name.clone().unwrap_or_default();
    let review = Review {
        kind,
        version: kind.facts().versions[0],
        operation: &op,
        namespace: &ns,
        name: &name,
        object: Some(&new),
        old_object: Some(&old),
        dry_run: false,
        created_for: None,
    };
    let cache = ReviewCache::default();
    let ctx = Ctx {
        policy: engine.policy(),
        mesh: engine.mesh(),
        cluster: &NoCluster,
        cache: &cache,
    };
    let mut out = Vec::new();
    (form.rule.check)(&review, &ctx, &mut out);
    !out.is_empty()
}

/// The operations a form's policy matches, and whether it judges weakening UPDATEs.
fn operations(form: &CelForm, engine: &Engine) -> (Vec<&'static str>, bool) {
    match form.on {
        On::Write => (vec!["CREATE", "UPDATE"], false),
        On::Create => (vec!["CREATE"], false),
        On::Delete => {
            let weakening = (form.cel)()
                .weakening
                .is_some_and(|w| rule_judges_weakening(form, engine, w.probe));
            if weakening {
                (vec!["UPDATE", "DELETE"], true)
            } else {
                (vec!["DELETE"], false)
            }
        }
    }
}

fn resource_rules(kinds: &[Kind], ops: &[&str]) -> Value {
    let mut by_group: BTreeMap<&str, (BTreeSet<&str>, Vec<&str>)> = BTreeMap::new();
    for kind in kinds {
        let f = kind.facts();
        let entry = by_group.entry(f.group).or_default();
        entry.0.extend(f.versions.iter().copied());
        entry.1.push(f.plural);
    }
    let mut rules = Vec::new();
    for (group, (versions, resources)) in by_group {
        // Served versions in the kinds' own order (v1 first).
        let mut ordered: Vec<&str> = Vec::new();
        for kind in kinds.iter().filter(|k| k.facts().group == group) {
            for v in kind.facts().versions {
                if versions.contains(v) && !ordered.contains(v) {
                    ordered.push(v);
                }
            }
        }
        rules.push(json!({
            "apiGroups": [group],
            "apiVersions": ordered,
            "resources": resources,
            "operations": ops,
        }));
    }
    Value::Array(rules)
}

fn validation_action(action: Action) -> Option<&'static str> {
    match action {
        Action::Deny => Some("Deny"),
        Action::Warn => Some("Warn"),
        Action::Audit => Some("Audit"),
        Action::Off => None,
    }
}

fn metadata(name: &str, form: &CelForm, options: &Options) -> Value {
    let mut labels = Map::new();
    labels.insert("app.kubernetes.io/part-of".into(), json!("meshguard"));
    labels.insert("meshguard.io/rule".into(), json!(form.rule.id));
    for (k, v) in &options.labels {
        labels.insert(k.clone(), json!(v));
    }
    let mut annotations = Map::new();
    match form.coverage {
        Coverage::Full => {
            annotations.insert("meshguard.io/coverage".into(), json!("full"));
        }
        Coverage::Partly(adds) => {
            annotations.insert("meshguard.io/coverage".into(), json!("partly"));
            annotations.insert("meshguard.io/webhook-adds".into(), json!(adds));
        }
    }
    json!({"name": name, "labels": labels, "annotations": annotations})
}

/// The message of a refusal: the rule id and each new finding (the first five, then a count).
/// On one line: kube-apiserver falls back to the static `message` when a `messageExpression`
/// yields line breaks.
fn message_expression(id: &str) -> String {
    let tag = lit(&format!("[{id}] "));
    let sep = lit(&format!("; [{id}] "));
    format!(
        "{tag} + lists.range(size(variables.fresh) < 5 ? size(variables.fresh) : 5).map(i, variables.fresh[i][0] + ': ' + variables.fresh[i][1] + '. Fix: ' + variables.fresh[i][2]).join({sep}) + (size(variables.fresh) > 5 ? {sep} + '(and ' + string(size(variables.fresh) - 5) + ' more findings)' : '')"
    )
}

/// The policy and binding of one form, or `None` when the rule is off.
pub fn policy_for(
    form: &'static CelForm,
    engine: &Engine,
    options: &Options,
) -> Result<Option<[Value; 2]>, GenerateError> {
    let policy = engine.policy();
    let rule = form.rule;
    let action = policy.action_for(rule.id, rule.default_action);
    let Some(validation_action) = validation_action(action) else {
        return Ok(None);
    };
    let err = |message: String| GenerateError::Form {
        rule: rule.id,
        message,
    };
    let kinds = form.kinds();
    let istio = kinds.iter().all(|k| k.is_istio());
    if !istio && kinds.iter().any(|k| k.is_istio()) {
        return Err(err("mixes Istio and other kinds".to_owned()));
    }
    let (ops, weakening) = operations(form, engine);
    let cel = (form.cel)();
    let pardon =
        action == Action::Deny && policy.allow_existing_violations && matches!(form.on, On::Write);
    let declared: Vec<&str> = cel.variables.iter().map(|(n, _)| *n).collect();
    for n in &declared {
        if cel::SETTINGS.iter().any(|(s, _)| s == n)
            || ["exempt", "findings", "pardonable", "previous", "fresh"].contains(n)
            || n.starts_with("old_")
        {
            return Err(err(format!("variable name {n} is reserved")));
        }
    }
    let mut used = BTreeSet::new();
    let subject = match form.on {
        On::Delete => "oldObject",
        _ => "object",
    };
    // The form's variables for the object judged, then (for allowExistingViolations) for the
    // old object of an UPDATE.
    let mut variables: Vec<(String, String)> = Vec::new();
    for (i, (name, expr)) in cel.variables.iter().enumerate() {
        let e = instantiate(expr, subject, None, "", &declared[..i], &mut used).map_err(err)?;
        variables.push(((*name).to_owned(), e));
    }
    let findings_new =
        instantiate(&cel.sites, subject, None, "", &declared, &mut used).map_err(err)?;
    let findings = match (&cel.weakening, weakening) {
        (Some(w), true) => {
            let update = instantiate(
                &w.sites,
                "oldObject",
                Some("object"),
                "",
                &declared,
                &mut used,
            )
            .map_err(err)?;
            format!("request.operation == 'DELETE' ? {findings_new} : {update}")
        }
        _ => findings_new,
    };
    let namespace_selector = namespace_selector_cel(kinds);
    let exemptions = policy
        .rules
        .get(rule.id)
        .map(|c| c.exemptions.as_slice())
        .unwrap_or(&[]);
    // What exempts the request but needs `namespaceObject`, which match conditions cannot read:
    // a DELETE in a Terminating namespace, and the rule's exemptions.
    let subject_labels = match form.on {
        On::Delete => {
            "(request.operation == 'DELETE' ? oldObject : object).metadata.?labels.orValue({})"
        }
        _ => "object.metadata.?labels.orValue({})",
    };
    let mut exempt = Vec::new();
    if ops.contains(&"DELETE") {
        exempt.push("(request.operation == 'DELETE' && namespaceObject != null && has(namespaceObject.metadata.deletionTimestamp))".to_owned());
    }
    if let Some(e) = exemptions_cel(exemptions, subject_labels, &namespace_selector) {
        exempt.push(e);
    }
    let exempt = (!exempt.is_empty()).then(|| exempt.join(" || "));
    if let Some(e) = &exempt {
        variables.push(("exempt".to_owned(), e.clone()));
    }
    variables.push(("findings".to_owned(), findings));
    if pardon {
        for (i, (name, expr)) in cel.variables.iter().enumerate() {
            let e = instantiate(expr, "oldObject", None, "old_", &declared[..i], &mut used)
                .map_err(err)?;
            variables.push((format!("old_{name}"), e));
        }
        let old_exempt = exemptions_cel(
            exemptions,
            "oldObject.metadata.?labels.orValue({})",
            &namespace_selector,
        );
        variables.push((
            "pardonable".to_owned(),
            match old_exempt {
                Some(e) => format!("request.operation == 'UPDATE' && !({e})"),
                None => "request.operation == 'UPDATE'".to_owned(),
            },
        ));
        let old_sites = instantiate(&cel.sites, "oldObject", None, "old_", &declared, &mut used)
            .map_err(err)?;
        variables.push((
            "previous".to_owned(),
            format!("variables.pardonable ? ({old_sites}).map(s, s[0] + ': ' + s[1]) : []"),
        ));
        variables.push((
            "fresh".to_owned(),
            "variables.findings.filter(s, !((s[0] + ': ' + s[1]) in variables.previous))"
                .to_owned(),
        ));
    } else {
        variables.push(("fresh".to_owned(), "variables.findings".to_owned()));
    }
    if exempt.is_some() {
        if let Some((_, fresh)) = variables.last_mut() {
            *fresh = format!("variables.exempt ? [] : {fresh}");
        }
    }
    let all_settings = settings(engine);
    let mut settings_vars: Vec<Value> = Vec::new();
    for (name, _) in cel::SETTINGS {
        if used.contains(name) {
            let value = all_settings.get(name).cloned().unwrap_or(Value::Null);
            settings_vars.push(json!({"name": name, "expression": cel_literal(&value)}));
        }
    }
    let variables: Vec<Value> = settings_vars
        .into_iter()
        .chain(
            variables
                .into_iter()
                .map(|(name, expression)| json!({"name": name, "expression": expression})),
        )
        .collect();

    // Match conditions: what the engine passes untouched.
    let mut conditions = Vec::new();
    if !istio && !engine.exempt_namespaces().is_empty() {
        conditions.push(json!({
            "name": "not-in-an-exempt-namespace",
            "expression": format!("!(request.namespace in {})", lit_list(engine.exempt_namespaces())),
        }));
    }
    if ops.contains(&"UPDATE") {
        conditions.push(json!({
            "name": "not-being-deleted",
            "expression": "!(request.operation == 'UPDATE' && has(object.metadata.deletionTimestamp))",
        }));
    }
    if ops.contains(&"DELETE") {
        conditions.push(json!({
            "name": "not-a-namespace-teardown",
            "expression": format!(
                "!(request.operation == 'DELETE' && request.userInfo.username == {})",
                lit(NAMESPACE_CONTROLLER)
            ),
        }));
    }
    let owners: Vec<&str> = kinds
        .iter()
        .filter(|k| k.facts().owns_pods && rule.kinds.contains(k))
        .map(|k| k.as_str())
        .collect();
    if action == Action::Deny
        && policy.allow_existing_violations
        && ops.contains(&"CREATE")
        && !owners.is_empty()
    {
        conditions.push(json!({
            "name": "not-created-by-a-controller-for-its-owner",
            "expression": format!(
                "!(request.operation == 'CREATE' && request.userInfo.username in {} && object.metadata.?ownerReferences.orValue([]).exists(r, r.?controller.orValue(false) && r.kind in {}))",
                lit_list(CONTROLLER_IDENTITIES),
                lit_list(&owners)
            ),
        }));
    }
    let name = format!("{}{}", options.name_prefix, rule.id);
    let mut spec = Map::new();
    spec.insert(
        "failurePolicy".into(),
        json!(options.failure_policy.as_str()),
    );
    spec.insert(
        "matchConstraints".into(),
        json!({"matchPolicy": "Equivalent", "resourceRules": resource_rules(kinds, &ops)}),
    );
    if !conditions.is_empty() {
        spec.insert("matchConditions".into(), Value::Array(conditions));
    }
    spec.insert("variables".into(), Value::Array(variables));
    spec.insert(
        "validations".into(),
        json!([{
            "expression": "size(variables.fresh) == 0",
            "messageExpression": message_expression(rule.id),
            "message": format!("[{}] {}", rule.id, rule.summary),
            "reason": "Forbidden",
        }]),
    );
    let policy_object = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": metadata(&name, form, options),
        "spec": spec,
    });
    let mut binding_spec = Map::new();
    binding_spec.insert("policyName".into(), json!(name));
    binding_spec.insert("validationActions".into(), json!([validation_action]));
    if !options.namespace_selector.is_empty() {
        binding_spec.insert(
            "matchResources".into(),
            json!({"namespaceSelector": {"matchLabels": options.namespace_selector}}),
        );
    }
    let binding = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": metadata(&name, form, options),
        "spec": binding_spec,
    });
    Ok(Some([policy_object, binding]))
}

/// Every policy and binding, in catalogue order.
pub fn generate(engine: &Engine, options: &Options) -> Result<Vec<Value>, GenerateError> {
    let mut out = Vec::new();
    for form in cel::REGISTRY {
        if let Some(pair) = policy_for(form, engine, options)? {
            out.extend(pair);
        }
    }
    Ok(out)
}

/// Escape text for a Markdown table cell.
fn md(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The table of every rule: in CEL, partly (what the webhook adds), or not (why).
pub fn docs_table() -> String {
    let mut out = String::from(
        "| rule | kinds | default | in CEL | what only the webhook judges |\n|---|---|---|---|---|\n",
    );
    for rule in crate::rules::REGISTRY {
        let kinds = if crate::resource::Kind::WORKLOADS
            .iter()
            .all(|w| rule.kinds.contains(w))
        {
            "workloads".to_owned()
        } else {
            rule.kinds
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (state, note) = match (cel::find(rule.id), cel::not_in_cel(rule.id)) {
            (Some(f), _) => match f.coverage {
                Coverage::Full => {
                    let ops = match f.on {
                        On::Write => "",
                        On::Create => " (CREATE)",
                        On::Delete => " (DELETE)",
                    };
                    (format!("yes{ops}"), "—".to_owned())
                }
                Coverage::Partly(adds) => ("partly".to_owned(), md(adds)),
            },
            (None, Some(n)) => ("no".to_owned(), md(n.why)),
            (None, None) => ("no".to_owned(), "not classified".to_owned()),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {state} | {note} |\n",
            rule.id,
            md(&kinds),
            rule.default_action.as_str()
        ));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// `meshguard generate`

/// Flags of `meshguard generate`.
#[derive(Clone, Debug, clap::Args)]
pub struct GenerateArgs {
    #[command(subcommand)]
    pub what: Generate,
}

/// What `meshguard generate` writes.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Generate {
    /// ValidatingAdmissionPolicies and bindings for every rule CEL can state, so that
    /// kube-apiserver keeps enforcing them while meshguard is unreachable.
    AdmissionPolicies(AdmissionPoliciesArgs),
}

/// Output of `meshguard generate admission-policies`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Multi-document YAML, for kubectl apply.
    Yaml,
    /// One JSON `List`.
    Json,
    /// The Markdown table of every rule: in CEL, partly, or not, and why.
    Docs,
}

/// Flags of `meshguard generate admission-policies`.
#[derive(Clone, Debug, clap::Args)]
pub struct AdmissionPoliciesArgs {
    /// Policy configuration (YAML): actions, exemptions, mode. Without it the built-in policy.
    #[arg(long, env = "MESHGUARD_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// The mesh's MeshConfig (YAML or the `istio` ConfigMap), for the root namespace, trust
    /// domain and aliases when the policy does not set them.
    #[arg(long)]
    pub mesh_config: Option<std::path::PathBuf>,
    /// The namespace Istio is installed in (exempt like in `serve`; the root namespace by default).
    #[arg(long, default_value = "istio-system")]
    pub istio_namespace: String,
    /// meshguard's own namespace, exempt like in `serve`.
    #[arg(long, env = "POD_NAMESPACE")]
    pub own_namespace: Option<String>,
    /// Prefix of the objects' names.
    #[arg(long, default_value = "meshguard-")]
    pub name_prefix: String,
    /// Bind the policies only in namespaces with these labels (`key=value`, repeatable; for
    /// Namespace objects, their own labels). Default: everywhere.
    #[arg(long = "namespace-selector", value_name = "KEY=VALUE")]
    pub namespace_selector: Vec<String>,
    /// What kube-apiserver does when an expression cannot be evaluated.
    #[arg(long, value_enum, default_value = "fail")]
    pub failure_policy: FailurePolicy,
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: OutputFormat,
}

/// Run `meshguard generate`; returns the exit code.
pub fn run(args: GenerateArgs) -> i32 {
    match args.what {
        Generate::AdmissionPolicies(a) => match admission_policies(&a) {
            Ok(text) => {
                print!("{text}");
                0
            }
            Err(e) => {
                eprintln!("meshguard generate admission-policies: {e}");
                2
            }
        },
    }
}

/// The output of `meshguard generate admission-policies`.
pub fn admission_policies(args: &AdmissionPoliciesArgs) -> Result<String, String> {
    if args.format == OutputFormat::Docs {
        return Ok(docs_table());
    }
    let policy = match &args.config {
        Some(p) => crate::catalogue::load_policy(p).map_err(|e| e.to_string())?,
        None => crate::config::Policy::builtin(),
    };
    let mut builder = crate::mesh::MeshContext::builder();
    builder.istio_namespace_from_flag(args.istio_namespace.clone(), "--istio-namespace");
    if let Some(path) = &args.mesh_config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --mesh-config {}: {e}", path.display()))?;
        let origin = format!("--mesh-config {}", path.display());
        crate::mesh::MeshConfig::from_file_text(&text, &origin).map_err(|e| e.to_string())?;
        builder.mesh_config_file(&path.display().to_string(), &text);
    }
    let engine = Engine::new(
        policy,
        std::sync::Arc::new(builder.build()),
        args.own_namespace.as_deref(),
    );
    let mut namespace_selector = BTreeMap::new();
    for kv in &args.namespace_selector {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(format!("--namespace-selector {kv:?}: expected KEY=VALUE"));
        };
        namespace_selector.insert(k.to_owned(), v.to_owned());
    }
    let options = Options {
        name_prefix: args.name_prefix.clone(),
        namespace_selector,
        failure_policy: args.failure_policy,
        labels: BTreeMap::new(),
    };
    let objects = generate(&engine, &options).map_err(|e| e.to_string())?;
    match args.format {
        OutputFormat::Json => serde_json::to_string_pretty(&json!({
            "apiVersion": "v1", "kind": "List", "items": objects,
        }))
        .map(|s| s + "\n")
        .map_err(|e| e.to_string()),
        _ => render_yaml(&objects),
    }
}

/// Multi-document YAML, with a header saying what it is.
pub fn render_yaml(objects: &[Value]) -> Result<String, String> {
    let body = serde_saphyr::to_string_multiple(objects).map_err(|e| e.to_string())?;
    Ok(format!(
        "# Generated by `meshguard generate admission-policies` (meshguard {}): the rules CEL can\n# state, enforced by kube-apiserver while the webhook is unreachable.\n{body}",
        env!("CARGO_PKG_VERSION")
    ))
}
