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
    pub(crate) name_prefix: String,
    /// Labels a namespace must carry for the bindings to apply (`matchResources.namespaceSelector`;
    /// for Namespace objects, their own labels). Empty: every namespace.
    pub(crate) namespace_selector: BTreeMap<String, String>,
    /// `failurePolicy` of the policies: what kube-apiserver does when an expression cannot be
    /// evaluated (cost budget exceeded, a type it did not expect).
    pub(crate) failure_policy: FailurePolicy,
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
    out.insert("platformLabels", json!(policy.platform.labels));
    out.insert("platformUsers", json!(policy.platform.users));
    out.insert("platformGroups", json!(policy.platform.groups));
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
pub(crate) fn selector_cel(sel: &LabelSelector, labels: &str) -> String {
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
pub(crate) fn exemptions_cel(
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

/// A namespace selector of an exemption (`namespace_kind`: the policy judges Namespaces): the namespace's labels as the
/// webhook's namespace cache knows them. For a Namespace that is its stored labels (an UPDATE's
/// old object); a namespace being created is not in the cache, so no selector matches it.
fn namespace_selector_cel(namespace_kind: bool) -> impl Fn(&LabelSelector) -> String {
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

fn metadata(name: &str, parts: &FormParts, options: &Options) -> Value {
    let mut labels = Map::new();
    labels.insert("app.kubernetes.io/part-of".into(), json!("meshguard"));
    labels.insert("meshguard.io/rule".into(), json!(parts.id));
    for (k, v) in &options.labels {
        labels.insert(k.clone(), json!(v));
    }
    json!({"name": name, "labels": labels, "annotations": parts.annotations})
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

/// A CEL variable of a policy.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Var {
    pub name: String,
    pub(crate) expression: String,
}

fn vars(pairs: Vec<(String, String)>) -> Vec<Var> {
    pairs
        .into_iter()
        .map(|(name, expression)| Var { name, expression })
        .collect()
}

/// What a form's policy is, whatever the policy file says: its kinds, operations, CEL
/// instantiated for the new and the old object, and the facts the assembly needs. The Helm chart
/// ships these (`--format chart`) and assembles them as [`assemble`] does.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FormParts {
    pub id: &'static str,
    pub summary: &'static str,
    pub default_action: Action,
    /// Istio's kinds: the exempt namespaces do not apply.
    pub istio: bool,
    /// The policy judges Namespace objects (their own labels are their namespace's).
    pub(crate) namespace_kind: bool,
    /// DELETE among the operations: the namespace teardown exemptions apply.
    pub delete: bool,
    /// A write rule (CREATE/UPDATE): `allowExistingViolations` applies on UPDATE.
    pub write: bool,
    pub operations: Vec<&'static str>,
    pub(crate) match_constraints: Value,
    /// The settings (`@name`) its CEL reads, in [`cel::SETTINGS`] order.
    pub settings: Vec<&'static str>,
    /// The form's variables for the object judged (`findings` comes after them).
    pub variables: Vec<Var>,
    pub findings: String,
    /// The form's variables for the old object of an UPDATE (`old_<name>`).
    pub(crate) old_variables: Vec<Var>,
    /// `previous`: the old object's findings as keys, when `pardonable`.
    pub previous: String,
    /// The object an exception's `names` and `objectSelector` read (the old one of a DELETE).
    pub subject: &'static str,
    /// The labels an `objectSelector` exemption reads (the subject's).
    pub(crate) subject_labels: &'static str,
    /// Kinds whose controllers' objects are their owner's (the rule also judges the owner).
    pub(crate) owners: Vec<&'static str>,
    pub annotations: BTreeMap<String, String>,
    pub(crate) message_expression: String,
}

/// The static parts of one form.
pub fn parts(form: &'static CelForm, engine: &Engine) -> Result<FormParts, GenerateError> {
    let rule = form.rule;
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
    let declared: Vec<&str> = cel.variables.iter().map(|(n, _)| *n).collect();
    for n in &declared {
        if cel::SETTINGS.iter().any(|(s, _)| s == n)
            || [
                "exempt",
                "findings",
                "pardonable",
                "previous",
                "fresh",
                "actionHere",
                "namespaceLabels",
            ]
            .contains(n)
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
    let mut variables = Vec::new();
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
    let write = matches!(form.on, On::Write);
    let mut old_variables = Vec::new();
    let mut previous = String::new();
    if write {
        for (i, (name, expr)) in cel.variables.iter().enumerate() {
            let e = instantiate(expr, "oldObject", None, "old_", &declared[..i], &mut used)
                .map_err(err)?;
            old_variables.push((format!("old_{name}"), e));
        }
        let old_sites = instantiate(&cel.sites, "oldObject", None, "old_", &declared, &mut used)
            .map_err(err)?;
        previous = format!("variables.pardonable ? ({old_sites}).map(s, s[0] + ': ' + s[1]) : []");
    }
    let settings: Vec<&'static str> = cel::SETTINGS
        .iter()
        .map(|(s, _)| *s)
        .filter(|s| used.contains(s))
        .collect();
    let owners: Vec<&'static str> = kinds
        .iter()
        .filter(|k| k.facts().owns_pods && rule.kinds.contains(k))
        .map(|k| k.as_str())
        .collect();
    let mut annotations = BTreeMap::new();
    match form.coverage {
        Coverage::Full => {
            annotations.insert("meshguard.io/coverage".to_owned(), "full".to_owned());
        }
        Coverage::Partly(adds) => {
            annotations.insert("meshguard.io/coverage".to_owned(), "partly".to_owned());
            annotations.insert("meshguard.io/webhook-adds".to_owned(), adds.to_owned());
        }
    }
    Ok(FormParts {
        id: rule.id,
        summary: rule.summary,
        default_action: rule.default_action,
        istio,
        namespace_kind: kinds == [Kind::Namespace],
        delete: ops.contains(&"DELETE"),
        write,
        match_constraints: json!({"matchPolicy": "Equivalent", "resourceRules": resource_rules(kinds, &ops)}),
        operations: ops,
        settings,
        variables: vars(variables),
        findings,
        old_variables: vars(old_variables),
        previous,
        subject: match form.on {
            On::Delete => "(request.operation == 'DELETE' ? oldObject : object)",
            _ => "object",
        },
        subject_labels: match form.on {
            On::Delete => {
                "(request.operation == 'DELETE' ? oldObject : object).metadata.?labels.orValue({})"
            }
            _ => "object.metadata.?labels.orValue({})",
        },
        owners,
        annotations,
        message_expression: message_expression(rule.id),
    })
}

/// The labels of the namespace an override or exception reads (as the engine's
/// `review_namespace_labels`): a Namespace's own as stored (the old object of an UPDATE, so that
/// relabelling cannot change how that very change is judged), else the namespace's; a namespace
/// that does not exist has none.
fn namespace_labels_cel(namespace_kind: bool) -> &'static str {
    if namespace_kind {
        "(oldObject != null ? oldObject : object).metadata.?labels.orValue({})"
    } else {
        "namespaceObject == null ? {} : namespaceObject.metadata.?labels.orValue({})"
    }
}

/// The CEL of the variable holding the namespace's labels ([`namespace_labels_cel`]).
const NS_LABELS: &str = "variables.namespaceLabels";

/// Where a rule takes which action under the policy: the overrides that concern it as CEL
/// conditions in precedence order ([`crate::config::Policy::overrides_in_order`]; the first
/// that holds decides), and the action everywhere else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ActionPlan {
    pub(crate) steps: Vec<(String, Action)>,
    pub(crate) elsewhere: Action,
}

impl ActionPlan {
    pub fn of(policy: &crate::config::Policy, id: &str, default: Action) -> ActionPlan {
        let steps = policy
            .overrides_in_order(id)
            .into_iter()
            .map(|o| {
                let cond = match &o.namespace_selector {
                    Some(sel) if o.namespaces.is_empty() => selector_cel(sel, NS_LABELS),
                    _ => format!("request.namespace in {}", lit_list(&o.namespaces)),
                };
                (cond, o.action(default))
            })
            .collect();
        ActionPlan {
            steps,
            elsewhere: policy.action_for(id, default),
        }
    }

    /// Whether the action depends on the namespace.
    pub(crate) fn per_namespace(&self) -> bool {
        !self.steps.is_empty()
    }

    /// Whether a condition reads the namespace's labels.
    pub(crate) fn reads_labels(&self) -> bool {
        self.steps.iter().any(|(c, _)| c.contains(NS_LABELS))
    }

    /// The actions taken somewhere, strictest first, `off` left out.
    pub fn actions(&self) -> Vec<Action> {
        [Action::Deny, Action::Warn, Action::Audit]
            .into_iter()
            .filter(|a| self.elsewhere == *a || self.steps.iter().any(|(_, s)| s == a))
            .collect()
    }

    /// The action as a CEL string (`'deny'`, ...): the first condition that holds, else the
    /// action elsewhere.
    pub fn cel(&self) -> String {
        let mut out = String::new();
        for (cond, action) in &self.steps {
            out.push_str(&format!("({cond}) ? {} : ", lit(action.as_str())));
        }
        out.push_str(&lit(self.elsewhere.as_str()));
        out
    }
}

/// The object's name as the engine reads it (`request.name`, else the subject's name or
/// `generateName`).
fn name_cel(subject: &str) -> String {
    format!("(request.name != '' ? request.name : {subject}.metadata.?name.orValue({subject}.metadata.?generateName.orValue('')))")
}

/// The policy file's exceptions of rule `id` that are active now, as one CEL condition (true:
/// excepted). Their expiry is not CEL's to check (it has no clock): an exception that expires
/// stays in the generated policies until they are generated again (the policies carry the
/// earliest end in `meshguard.io/exceptions-until`).
pub(crate) fn exceptions_cel(
    engine: &Engine,
    id: &str,
    subject: &str,
    subject_labels: &str,
) -> Option<String> {
    use crate::config::exceptions::{Source, Status};
    let policy = engine.policy();
    let now = engine.now();
    let mut any = Vec::new();
    for e in engine.exceptions().items() {
        if !matches!(e.source, Source::Policy { .. })
            || !e.rules.iter().any(|r| r == id)
            || e.status(policy, now) != Status::Active
        {
            continue;
        }
        let mut all = Vec::new();
        if !e.namespaces.is_empty() {
            all.push(format!("request.namespace in {}", lit_list(&e.namespaces)));
        }
        if !e.names.is_empty() {
            let alts: Vec<String> = e
                .names
                .iter()
                .map(|n| match n.strip_suffix('*') {
                    Some(prefix) => format!("n.startsWith({})", lit(prefix)),
                    None => format!("n == {}", lit(n)),
                })
                .collect();
            all.push(format!(
                "[{}].exists(n, {})",
                name_cel(subject),
                alts.join(" || ")
            ));
        }
        if !e.kinds.is_empty() {
            all.push(format!("request.kind.kind in {}", lit_list(&e.kinds)));
        }
        if let Some(sel) = &e.object_selector {
            all.push(selector_cel(sel, subject_labels));
        }
        if let Some(sel) = &e.namespace_selector {
            all.push(selector_cel(sel, NS_LABELS));
        }
        if all.is_empty() {
            continue; // refused at load: an exception needs a scope
        }
        any.push(format!("({})", all.join(" && ")));
    }
    (!any.is_empty()).then(|| any.join(" || "))
}

/// The earliest end of the policy file's exceptions of rule `id` that are active now.
fn exceptions_until(engine: &Engine, id: &str) -> Option<String> {
    use crate::config::exceptions::{Source, Status};
    let now = engine.now();
    engine
        .exceptions()
        .items()
        .iter()
        .filter(|e| {
            matches!(e.source, Source::Policy { .. })
                && e.rules.iter().any(|r| r == id)
                && e.status(engine.policy(), now) == Status::Active
        })
        .filter_map(|e| e.expires)
        .min()
        .map(|t| t.to_string())
}

/// The namespaces whose PolicyException resources may except rule `id` (the webhook reads
/// those resources; these policies cannot, so they stand aside there).
pub(crate) fn policy_exception_namespaces<'p>(
    policy: &'p crate::config::Policy,
    id: &str,
) -> &'p [String] {
    let s = &policy.policy_exceptions;
    let allowed = if s.rules.is_empty() {
        id != crate::config::rollout::PLATFORM_LABEL_RULE
    } else {
        s.rules.iter().any(|r| r == id)
    };
    if allowed {
        &s.namespaces
    } else {
        &[]
    }
}

/// The policies and bindings of one form under the engine's policy: one pair per action the
/// rule takes somewhere (none when it is off everywhere). Without per-namespace overrides that
/// is one pair named `<prefix><id>`; with them, the action elsewhere keeps that name and each
/// other action gets `<prefix><id>-<action>`, every one computing the namespace's action
/// (`variables.actionHere`) and refusing only where it is its own.
pub(crate) fn assemble(parts: &FormParts, engine: &Engine, options: &Options) -> Vec<Value> {
    let plan = ActionPlan::of(engine.policy(), parts.id, parts.default_action);
    let mut out = Vec::new();
    for action in plan.actions() {
        out.extend(assemble_action(parts, engine, options, &plan, action));
    }
    out
}

fn assemble_action(
    parts: &FormParts,
    engine: &Engine,
    options: &Options,
    plan: &ActionPlan,
    action: Action,
) -> [Value; 2] {
    let policy = engine.policy();
    let validation_action = validation_action(action).unwrap_or("Audit");
    let pardon = action == Action::Deny && policy.allow_existing_violations && parts.write;
    let exemptions = policy
        .rules
        .get(parts.id)
        .map(|c| c.exemptions.as_slice())
        .unwrap_or(&[]);
    let namespace_selector = namespace_selector_cel(parts.namespace_kind);
    let excepted = exceptions_cel(engine, parts.id, parts.subject, parts.subject_labels);

    let mut variables: Vec<(String, String)> = Vec::new();
    if plan.reads_labels() || excepted.as_deref().is_some_and(|e| e.contains(NS_LABELS)) {
        variables.push((
            "namespaceLabels".to_owned(),
            namespace_labels_cel(parts.namespace_kind).to_owned(),
        ));
    }
    if plan.per_namespace() {
        variables.push(("actionHere".to_owned(), plan.cel()));
    }
    variables.extend(
        parts
            .variables
            .iter()
            .map(|v| (v.name.clone(), v.expression.clone())),
    );
    // What exempts the request but needs `namespaceObject`, which match conditions cannot read:
    // a DELETE in a Terminating namespace, the rule's exemptions and the policy's exceptions.
    let mut exempt = Vec::new();
    if parts.delete {
        exempt.push("(request.operation == 'DELETE' && namespaceObject != null && has(namespaceObject.metadata.deletionTimestamp))".to_owned());
    }
    if let Some(e) = exemptions_cel(exemptions, parts.subject_labels, &namespace_selector) {
        exempt.push(e);
    }
    if let Some(e) = excepted {
        exempt.push(e);
    }
    let exempt = (!exempt.is_empty()).then(|| exempt.join(" || "));
    if let Some(e) = &exempt {
        variables.push(("exempt".to_owned(), e.clone()));
    }
    variables.push(("findings".to_owned(), parts.findings.clone()));
    let mut fresh = "variables.findings".to_owned();
    if pardon {
        variables.extend(
            parts
                .old_variables
                .iter()
                .map(|v| (v.name.clone(), v.expression.clone())),
        );
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
        variables.push(("previous".to_owned(), parts.previous.clone()));
        fresh = "variables.findings.filter(s, !((s[0] + ': ' + s[1]) in variables.previous))"
            .to_owned();
    }
    if exempt.is_some() {
        fresh = format!("variables.exempt ? [] : {fresh}");
    }
    variables.push(("fresh".to_owned(), fresh));
    let all_settings = settings(engine);
    let variables: Vec<Value> = parts
        .settings
        .iter()
        .map(|name| {
            let value = all_settings.get(name).cloned().unwrap_or(Value::Null);
            json!({"name": name, "expression": cel_literal(&value)})
        })
        .chain(
            variables
                .into_iter()
                .map(|(name, expression)| json!({"name": name, "expression": expression})),
        )
        .collect();

    // Match conditions: what the engine passes untouched.
    let mut conditions = Vec::new();
    if !parts.istio && !engine.exempt_namespaces().is_empty() {
        conditions.push(json!({
            "name": "not-in-an-exempt-namespace",
            "expression": format!("!(request.namespace in {})", lit_list(engine.exempt_namespaces())),
        }));
    }
    let exception_namespaces = policy_exception_namespaces(policy, parts.id);
    if !exception_namespaces.is_empty() {
        conditions.push(json!({
            "name": "not-where-policy-exceptions-are-accepted",
            "expression": format!("!(request.namespace in {})", lit_list(exception_namespaces)),
        }));
    }
    if parts.operations.contains(&"UPDATE") {
        conditions.push(json!({
            "name": "not-being-deleted",
            "expression": "!(request.operation == 'UPDATE' && has(object.metadata.deletionTimestamp))",
        }));
    }
    if parts.delete {
        conditions.push(json!({
            "name": "not-a-namespace-teardown",
            "expression": format!(
                "!(request.operation == 'DELETE' && request.userInfo.username == {})",
                lit(NAMESPACE_CONTROLLER)
            ),
        }));
    }
    if action == Action::Deny
        && policy.allow_existing_violations
        && parts.operations.contains(&"CREATE")
        && !parts.owners.is_empty()
    {
        conditions.push(json!({
            "name": "not-created-by-a-controller-for-its-owner",
            "expression": format!(
                "!(request.operation == 'CREATE' && request.userInfo.username in {} && object.metadata.?ownerReferences.orValue([]).exists(r, r.?controller.orValue(false) && r.kind in {}))",
                lit_list(CONTROLLER_IDENTITIES),
                lit_list(&parts.owners)
            ),
        }));
    }

    let name = if action == plan.elsewhere {
        format!("{}{}", options.name_prefix, parts.id)
    } else {
        format!("{}{}-{}", options.name_prefix, parts.id, action.as_str())
    };
    let mut spec = Map::new();
    spec.insert(
        "failurePolicy".into(),
        json!(options.failure_policy.as_str()),
    );
    spec.insert("matchConstraints".into(), parts.match_constraints.clone());
    if !conditions.is_empty() {
        spec.insert("matchConditions".into(), Value::Array(conditions));
    }
    spec.insert("variables".into(), Value::Array(variables));
    let expression = if plan.per_namespace() {
        format!(
            "variables.actionHere != {} || size(variables.fresh) == 0",
            lit(action.as_str())
        )
    } else {
        "size(variables.fresh) == 0".to_owned()
    };
    spec.insert(
        "validations".into(),
        json!([{
            "expression": expression,
            "messageExpression": parts.message_expression,
            "message": format!("[{}] {}", parts.id, parts.summary),
            "reason": "Forbidden",
        }]),
    );
    let mut meta = metadata(&name, parts, options);
    if let Some(until) = exceptions_until(engine, parts.id) {
        meta["annotations"]["meshguard.io/exceptions-until"] = json!(until);
    }
    let policy_object = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": meta,
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
        "metadata": metadata(&name, parts, options),
        "spec": binding_spec,
    });
    [policy_object, binding]
}

/// The policies and bindings of one form (none when the rule is off everywhere).
pub(crate) fn policy_for(
    form: &'static CelForm,
    engine: &Engine,
    options: &Options,
) -> Result<Vec<Value>, GenerateError> {
    Ok(assemble(&parts(form, engine)?, engine, options))
}

/// What the Helm chart ships (`files/admission-policies.json`): every form's parts, and the
/// identities the match conditions name. The chart assembles them as [`assemble`] does.
pub(crate) fn chart_data(engine: &Engine) -> Result<Value, GenerateError> {
    let forms: Vec<FormParts> = cel::REGISTRY
        .iter()
        .map(|f| parts(f, engine))
        .collect::<Result<_, _>>()?;
    Ok(json!({
        "generatedBy": format!("meshguard generate admission-policies --format chart (meshguard {})", env!("CARGO_PKG_VERSION")),
        "controllerIdentities": CONTROLLER_IDENTITIES,
        "namespaceController": NAMESPACE_CONTROLLER,
        "forms": forms,
    }))
}

/// Every policy and binding, in catalogue order.
pub fn generate(engine: &Engine, options: &Options) -> Result<Vec<Value>, GenerateError> {
    let mut out = Vec::new();
    for form in cel::REGISTRY {
        out.extend(policy_for(form, engine, options)?);
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
pub(crate) fn docs_table() -> String {
    let mut out = String::from(
        "| rule | kinds | default | in CEL | what only the webhook judges |\n|---|---|---|---|---|\n",
    );
    for rule in crate::rules::REGISTRY {
        let names: Vec<&str> = rule.kinds.iter().map(|k| k.as_str()).collect();
        let kinds = crate::catalogue::kinds_label(&names);
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
// Self-protection

/// What the self-protection policy guards, and who may change it anyway.
#[derive(Clone, Debug, Default)]
pub(crate) struct SelfProtection {
    /// The policy's and binding's name.
    pub(crate) name: String,
    /// meshguard's Validating- and MutatingWebhookConfiguration (the same name).
    pub(crate) webhook_configuration: String,
    /// Namespace labels that take a namespace out of meshguard's hands: the webhooks' opt-out
    /// label and the keys of namespaceSelector exemptions.
    pub(crate) protected_labels: Vec<String>,
    pub(crate) allowed_groups: Vec<String>,
    pub(crate) allowed_users: Vec<String>,
}

/// The namespace label keys that decide where meshguard enforces, sorted: those the policy's
/// namespaceSelector exemptions read, and the platform-owned labels (`platform.labels`, the only
/// keys overrides and exceptions may select on).
pub(crate) fn exemption_label_keys(policy: &crate::config::Policy) -> Vec<String> {
    let mut keys: BTreeSet<String> = policy.platform.labels.iter().cloned().collect();
    for c in policy.rules.values() {
        for sel in c
            .exemptions
            .iter()
            .filter_map(|e| e.namespace_selector.as_ref())
        {
            keys.extend(sel.match_labels.keys().cloned());
            keys.extend(sel.match_expressions.iter().map(|e| e.key.clone()));
        }
    }
    keys.into_iter().collect()
}

/// A ValidatingAdmissionPolicy (and binding) that lets only `allowed_groups` and
/// `allowed_users` change meshguard's webhook configurations and the protected namespace labels.
/// kube-apiserver exempts ValidatingAdmissionPolicies and their bindings from every admission
/// check (webhooks and policies alike), so the generated policies, and this one, are protected
/// by RBAC alone; that is also the break-glass: delete this binding.
pub(crate) fn self_protection(p: &SelfProtection) -> [Value; 2] {
    let who = format!(
        "{}{}",
        if p.allowed_groups.is_empty() {
            String::new()
        } else {
            format!("members of {}", p.allowed_groups.join(", "))
        },
        if p.allowed_users.is_empty() {
            String::new()
        } else {
            format!(
                "{}{}",
                if p.allowed_groups.is_empty() {
                    ""
                } else {
                    " and "
                },
                p.allowed_users.join(", ")
            )
        }
    );
    let who = if who.is_empty() {
        "nobody".to_owned()
    } else {
        who
    };
    let labels = lit_list(&p.protected_labels);
    let spec = json!({
        "failurePolicy": "Fail",
        "matchConstraints": {
            "matchPolicy": "Equivalent",
            "resourceRules": [
                {
                    "apiGroups": ["admissionregistration.k8s.io"],
                    "apiVersions": ["v1"],
                    "resources": ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"],
                    "resourceNames": [p.webhook_configuration],
                    "operations": ["CREATE", "UPDATE", "DELETE"],
                },
                {
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": ["namespaces"],
                    "operations": ["CREATE", "UPDATE"],
                },
            ],
        },
        "matchConditions": [{
            "name": "not-an-administrator",
            "expression": format!(
                "!(request.userInfo.username in {}) && !request.userInfo.?groups.orValue([]).exists(g, g in {})",
                lit_list(&p.allowed_users),
                lit_list(&p.allowed_groups)
            ),
        }],
        "variables": [
            {"name": "protected", "expression": labels},
            {
                "name": "changed",
                "expression": "request.resource.resource != 'namespaces' ? [] : variables.protected.filter(k, object.metadata.?labels[?k].orValue('\\n') != (request.operation == 'UPDATE' ? oldObject.metadata.?labels[?k].orValue('\\n') : '\\n'))",
            },
        ],
        "validations": [{
            "expression": "request.resource.resource == 'namespaces' && size(variables.changed) == 0",
            "messageExpression": format!(
                "request.resource.resource == 'namespaces' ? {} + variables.changed.join(', ') + {} : {} + request.name + {}",
                lit(&format!("[meshguard-self-protection] only {who} may set or change the namespace label(s) ")),
                lit(&format!(": they exempt the namespace from meshguard (break-glass: delete the ValidatingAdmissionPolicyBinding {})", p.name)),
                lit(&format!("[meshguard-self-protection] only {who} may change the meshguard webhook configuration ")),
                lit(&format!(" (break-glass: delete the ValidatingAdmissionPolicyBinding {})", p.name)),
            ),
            "message": format!("[meshguard-self-protection] only {who} may change the meshguard webhook configurations and the namespace labels that exempt namespaces from meshguard"),
            "reason": "Forbidden",
        }],
    });
    let metadata = json!({"name": p.name, "labels": {"app.kubernetes.io/part-of": "meshguard"}});
    [
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": metadata,
            "spec": spec,
        }),
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": metadata,
            "spec": {"policyName": p.name, "validationActions": ["Deny"]},
        }),
    ]
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
    /// A ValidatingAdmissionPolicy that lets only the given groups and users change meshguard's
    /// webhook configurations and the namespace labels that exempt namespaces from it.
    SelfProtection(SelfProtectionArgs),
}

/// Flags of `meshguard generate self-protection`.
#[derive(Clone, Debug, clap::Args)]
pub struct SelfProtectionArgs {
    /// Name of the policy and its binding.
    #[arg(long, default_value = "meshguard-self-protection")]
    pub name: String,
    /// meshguard's webhook configurations (the Validating- and Mutating-, same name).
    #[arg(long, default_value = "meshguard")]
    pub(crate) webhook_configuration: String,
    /// Groups allowed to change them (repeatable; `--allowed-group ''` alone: none).
    #[arg(long = "allowed-group", default_value = "system:masters")]
    pub(crate) allowed_groups: Vec<String>,
    /// Users allowed to change them (repeatable).
    #[arg(long = "allowed-user")]
    pub(crate) allowed_users: Vec<String>,
    /// The webhooks' namespace opt-out label.
    #[arg(long, default_value = "meshguard.io/ignore")]
    pub(crate) opt_out_label: String,
    /// Policy file whose namespaceSelector exemptions' label keys are protected too.
    #[arg(long, env = "MESHGUARD_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: OutputFormat,
}

fn nonempty(items: &[String]) -> Vec<String> {
    items.iter().filter(|s| !s.is_empty()).cloned().collect()
}

/// The self-protection objects for these flags.
pub(crate) fn self_protection_objects(args: &SelfProtectionArgs) -> Result<Vec<Value>, String> {
    let policy = match &args.config {
        Some(p) => crate::catalogue::load_policy(p).map_err(|e| e.to_string())?,
        None => crate::config::Policy::builtin(),
    };
    let mut labels = Vec::new();
    if !args.opt_out_label.is_empty() {
        labels.push(args.opt_out_label.clone());
    }
    for k in exemption_label_keys(&policy) {
        if !labels.contains(&k) {
            labels.push(k);
        }
    }
    Ok(self_protection(&SelfProtection {
        name: args.name.clone(),
        webhook_configuration: args.webhook_configuration.clone(),
        protected_labels: labels,
        allowed_groups: nonempty(&args.allowed_groups),
        allowed_users: nonempty(&args.allowed_users),
    })
    .to_vec())
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
    /// Every form's parts as JSON, for the Helm chart (charts/meshguard/files/admission-policies.json).
    Chart,
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
    pub(crate) name_prefix: String,
    /// Bind the policies only in namespaces with these labels (`key=value`, repeatable; for
    /// Namespace objects, their own labels). Default: everywhere.
    #[arg(long = "namespace-selector", value_name = "KEY=VALUE")]
    pub(crate) namespace_selector: Vec<String>,
    /// What kube-apiserver does when an expression cannot be evaluated.
    #[arg(long, value_enum, default_value = "fail")]
    pub(crate) failure_policy: FailurePolicy,
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: OutputFormat,
}

/// Run `meshguard generate`; returns the exit code.
pub fn run(args: GenerateArgs) -> crate::exit::Exit {
    let (what, out) = match args.what {
        Generate::AdmissionPolicies(a) => ("admission-policies", admission_policies(&a)),
        Generate::SelfProtection(a) => (
            "self-protection",
            self_protection_objects(&a).and_then(|objects| match a.format {
                OutputFormat::Json => serde_json::to_string_pretty(
                    &json!({"apiVersion": "v1", "kind": "List", "items": objects}),
                )
                .map(|s| s + "\n")
                .map_err(|e| e.to_string()),
                _ => render_yaml_with(
                    &objects,
                    "self-protection",
                    "only the allowed groups\n# and users may change meshguard's webhook configurations and exempting namespace labels.",
                ),
            }),
        ),
    };
    match out {
        Ok(text) => {
            print!("{text}");
            crate::exit::Exit::Ok
        }
        Err(e) => {
            eprintln!("meshguard generate {what}: {e}");
            crate::exit::Exit::Error
        }
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
    if args.format == OutputFormat::Chart {
        let data = chart_data(&engine).map_err(|e| e.to_string())?;
        return serde_json::to_string_pretty(&data)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string());
    }
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
pub(crate) fn render_yaml(objects: &[Value]) -> Result<String, String> {
    render_yaml_with(
        objects,
        "admission-policies",
        "the rules CEL can\n# state, enforced by kube-apiserver while the webhook is unreachable.",
    )
}

fn render_yaml_with(objects: &[Value], what: &str, about: &str) -> Result<String, String> {
    let body = serde_saphyr::to_string_multiple(objects).map_err(|e| e.to_string())?;
    Ok(format!(
        "# Generated by `meshguard generate {what}` (meshguard {}): {about}\n{body}",
        env!("CARGO_PKG_VERSION")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::mesh::MeshContext;
    use std::sync::Arc;

    fn engine(yaml: &str) -> Engine {
        let policy = crate::catalogue::policy_from_yaml(yaml, "test").expect("policy");
        Engine::new(policy, Arc::new(MeshContext::default()), Some("meshguard"))
    }

    fn objects(yaml: &str) -> Vec<Value> {
        generate(&engine(yaml), &Options::default()).expect("generate")
    }

    fn policy_of<'a>(objects: &'a [Value], id: &str) -> Option<&'a Value> {
        objects.iter().find(|o| {
            o["kind"] == "ValidatingAdmissionPolicy"
                && o["metadata"]["labels"]["meshguard.io/rule"] == id
        })
    }

    fn binding_of<'a>(objects: &'a [Value], id: &str) -> Option<&'a Value> {
        objects.iter().find(|o| {
            o["kind"] == "ValidatingAdmissionPolicyBinding"
                && o["metadata"]["labels"]["meshguard.io/rule"] == id
        })
    }

    fn variable<'a>(policy: &'a Value, name: &str) -> Option<&'a str> {
        policy["spec"]["variables"]
            .as_array()?
            .iter()
            .find(|v| v["name"] == name)?["expression"]
            .as_str()
    }

    #[test]
    fn one_policy_and_binding_per_form_that_parse_as_kubernetes_objects() {
        use k8s_openapi::api::admissionregistration::v1 as ar;
        let out = objects("");
        assert_eq!(out.len(), 2 * cel::REGISTRY.len());
        for pair in out.chunks(2) {
            let policy: ar::ValidatingAdmissionPolicy =
                serde_json::from_value(pair[0].clone()).expect("a ValidatingAdmissionPolicy");
            let binding: ar::ValidatingAdmissionPolicyBinding =
                serde_json::from_value(pair[1].clone()).expect("a binding");
            let spec = policy.spec.expect("spec");
            let name = policy.metadata.name.expect("name");
            assert_eq!(binding.spec.and_then(|s| s.policy_name), Some(name.clone()));
            assert!(name.starts_with("meshguard-"), "{name}");
            assert_eq!(spec.failure_policy.as_deref(), Some("Fail"));
            let [validation] = spec
                .validations
                .expect("validations")
                .try_into()
                .expect("one");
            assert_eq!(validation.reason.as_deref(), Some("Forbidden"));
            let id = name.trim_start_matches("meshguard-");
            assert!(validation
                .message_expression
                .expect("message")
                .contains(&format!("[{id}] ")));
            // Every variable is declared before it is read.
            let vars = spec.variables.expect("variables");
            for (i, v) in vars.iter().enumerate() {
                let mut rest = v.expression.as_str();
                while let Some(at) = rest.find("variables.") {
                    rest = &rest[at + "variables.".len()..];
                    let used: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    assert!(
                        vars[..i].iter().any(|d| d.name == used),
                        "{id}: variable {} reads {used} before it is declared",
                        v.name
                    );
                }
            }
        }
    }

    #[test]
    fn actions_follow_the_policy() {
        let actions = |yaml: &str, id: &str| -> Option<Value> {
            binding_of(&objects(yaml), id).map(|b| b["spec"]["validationActions"].clone())
        };
        assert_eq!(actions("", "pa-permissive-mtls"), Some(json!(["Deny"])));
        assert_eq!(actions("", "ap-wildcard-source"), Some(json!(["Warn"])));
        assert_eq!(
            actions("", "ap-remote-ip-untrusted"),
            Some(json!(["Audit"]))
        );
        assert_eq!(
            actions("mode: warn\n", "pa-permissive-mtls"),
            Some(json!(["Warn"]))
        );
        assert_eq!(
            actions("mode: audit\n", "pa-permissive-mtls"),
            Some(json!(["Audit"]))
        );
        let off = "rules:\n  pa-permissive-mtls:\n    action: off\n";
        assert_eq!(actions(off, "pa-permissive-mtls"), None);
        assert!(policy_of(&objects(off), "pa-permissive-mtls").is_none());
        let raised = "mode: audit\nrules:\n  pa-permissive-mtls:\n    action: deny\n";
        assert_eq!(actions(raised, "pa-permissive-mtls"), Some(json!(["Deny"])));
    }

    fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    const ROLLOUT: &str = "platform: {labels: [env]}\noverrides:\n  - namespaces: [sandbox]\n    mode: audit\nrules:\n  pa-permissive-mtls:\n    overrides:\n      - namespaceSelector: {matchLabels: {env: dev}}\n        action: warn\n      - namespaces: [legacy]\n        action: off\n  svc-port-protocol:\n    action: off\n    overrides:\n      - namespaces: [strict]\n        action: deny\n";

    #[test]
    fn per_namespace_actions_become_one_policy_per_action() {
        let out = objects(ROLLOUT);
        let pa = |name: &str| named(&out, "ValidatingAdmissionPolicy", name);
        let action_of = |name: &str| {
            named(&out, "ValidatingAdmissionPolicyBinding", name)
                .map(|b| b["spec"]["validationActions"][0].clone())
        };
        // deny elsewhere keeps the rule's name; warn (env=dev) and audit (sandbox) get their own.
        assert_eq!(
            action_of("meshguard-pa-permissive-mtls"),
            Some(json!("Deny"))
        );
        assert_eq!(
            action_of("meshguard-pa-permissive-mtls-warn"),
            Some(json!("Warn"))
        );
        assert_eq!(
            action_of("meshguard-pa-permissive-mtls-audit"),
            Some(json!("Audit"))
        );
        assert!(pa("meshguard-pa-permissive-mtls-off").is_none());
        let deny = pa("meshguard-pa-permissive-mtls").expect("policy");
        // The rule's own overrides by name, then by selector, then those for every rule.
        assert_eq!(
            variable(deny, "actionHere"),
            Some(
                r#"(request.namespace in ["legacy"]) ? "off" : ([variables.namespaceLabels].all(l, "env" in l && l["env"] == "dev")) ? "warn" : (request.namespace in ["sandbox"]) ? "audit" : "deny""#
            )
        );
        assert_eq!(
            variable(deny, "namespaceLabels"),
            Some("namespaceObject == null ? {} : namespaceObject.metadata.?labels.orValue({})")
        );
        assert_eq!(
            deny["spec"]["validations"][0]["expression"],
            r#"variables.actionHere != "deny" || size(variables.fresh) == 0"#
        );
        // allowExistingViolations only where the rule denies.
        assert!(variable(deny, "previous").is_some());
        let warn = pa("meshguard-pa-permissive-mtls-warn").expect("policy");
        assert!(variable(warn, "previous").is_none());
        // Off elsewhere, deny in one namespace: one policy, named for its action.
        assert!(pa("meshguard-svc-port-protocol").is_none());
        let svc = pa("meshguard-svc-port-protocol-deny").expect("policy");
        assert_eq!(
            variable(svc, "actionHere"),
            Some(r#"(request.namespace in ["strict"]) ? "deny" : "off""#)
        );
        // Overrides by name only: no labels read.
        assert!(variable(svc, "namespaceLabels").is_none());
        // A Namespace's own labels as stored decide its action.
        let ns = pa("meshguard-ns-injection-disabled").expect("policy");
        assert_eq!(
            variable(ns, "actionHere"),
            Some(r#"(request.namespace in ["sandbox"]) ? "audit" : "deny""#)
        );
        // Without overrides nothing changes: one policy, no action variable.
        let plain = objects("");
        let p = policy_of(&plain, "pa-permissive-mtls").expect("policy");
        assert!(variable(p, "actionHere").is_none());
        assert_eq!(
            p["spec"]["validations"][0]["expression"],
            "size(variables.fresh) == 0"
        );
    }

    #[test]
    fn the_plan_decides_as_the_engine_does() {
        let policy = crate::catalogue::policy_from_yaml(ROLLOUT, "t").expect("policy");
        for (id, default) in [
            ("pa-permissive-mtls", Action::Deny),
            ("svc-port-protocol", Action::Warn),
            ("ns-injection-disabled", Action::Deny),
        ] {
            let plan = ActionPlan::of(&policy, id, default);
            for ns in ["legacy", "sandbox", "strict", "shop"] {
                for labels in [
                    BTreeMap::new(),
                    BTreeMap::from([("env".to_owned(), "dev".to_owned())]),
                ] {
                    // The plan's conditions, decided in Rust as kube-apiserver decides the CEL.
                    let by_plan = policy
                        .overrides_in_order(id)
                        .into_iter()
                        .zip(&plan.steps)
                        .find(|(o, _)| {
                            o.namespaces.iter().any(|n| n == ns)
                                || o.namespace_selector
                                    .as_ref()
                                    .is_some_and(|s| s.matches(&labels))
                        })
                        .map_or(plan.elsewhere, |(_, (_, a))| *a);
                    assert_eq!(
                        by_plan,
                        policy.action_in(id, default, ns, Some(&labels)),
                        "{id} in {ns} {labels:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_policys_exceptions_become_cel_while_active() {
        let yaml = "platform: {labels: [env]}\nexceptions:\n  - name: legacy\n    rules: [wl-default-service-account]\n    namespaces: [shop]\n    names: [legacy-*, batch]\n    kinds: [Deployment]\n    reason: moving\n    owner: team\n    expires: 2099-01-01\n  - name: edge\n    rules: [pa-permissive-mtls]\n    namespaceSelector: {matchLabels: {env: prod}}\n    objectSelector: {matchLabels: {app: edge}}\n    reason: edge\n    ticket: T-1\n    expires: 2098-06-30T12:00:00Z\n  - name: gone\n    rules: [pa-disabled-mtls]\n    namespaces: [old]\n    reason: done\n    owner: team\n    expires: 2020-01-01\n";
        let out = objects(yaml);
        let sa = policy_of(&out, "wl-default-service-account").expect("policy");
        assert_eq!(
            variable(sa, "exempt"),
            Some(
                r#"(request.namespace in ["shop"] && [(request.name != '' ? request.name : object.metadata.?name.orValue(object.metadata.?generateName.orValue('')))].exists(n, n.startsWith("legacy-") || n == "batch") && request.kind.kind in ["Deployment"])"#
            )
        );
        assert_eq!(
            sa["metadata"]["annotations"]["meshguard.io/exceptions-until"],
            "2099-01-01T00:00:00Z"
        );
        let pa = policy_of(&out, "pa-permissive-mtls").expect("policy");
        let exempt = variable(pa, "exempt").expect("exempt");
        assert!(
            exempt.contains(
                r#"[variables.namespaceLabels].all(l, "env" in l && l["env"] == "prod")"#
            ),
            "{exempt}"
        );
        assert!(variable(pa, "namespaceLabels").is_some());
        assert!(variable(pa, "fresh").is_some_and(|f| f.starts_with("variables.exempt ? [] : ")));
        // Expired: gone from the policies, as from the webhook's verdicts.
        let dis = policy_of(&out, "pa-disabled-mtls").expect("policy");
        assert!(variable(dis, "exempt").is_none());
        assert!(dis["metadata"]["annotations"]
            .get("meshguard.io/exceptions-until")
            .is_none());
        // Bindings carry no expiry.
        let b = binding_of(&out, "wl-default-service-account").expect("binding");
        assert!(b["metadata"]["annotations"]
            .get("meshguard.io/exceptions-until")
            .is_none());
    }

    #[test]
    fn policies_stand_aside_where_policy_exceptions_are_accepted() {
        let out = objects(
            "policyExceptions:\n  namespaces: [payments]\n  rules: [wl-default-service-account]\n",
        );
        let cond = json!({"name": "not-where-policy-exceptions-are-accepted", "expression": "!(request.namespace in [\"payments\"])"});
        let has = |id: &str| {
            policy_of(&out, id).expect("policy")["spec"]["matchConditions"]
                .as_array()
                .is_some_and(|c| c.contains(&cond))
        };
        assert!(has("wl-default-service-account"));
        assert!(!has("pa-permissive-mtls"));
        // Any rule but the label guard when the policy lists none.
        let out = objects("policyExceptions:\n  namespaces: [payments]\n");
        let has = |id: &str| {
            policy_of(&out, id).expect("policy")["spec"]["matchConditions"]
                .as_array()
                .is_some_and(|c| c.contains(&cond))
        };
        assert!(has("pa-permissive-mtls"));
        assert!(!has("ns-platform-label-change"));
    }

    #[test]
    fn existing_violations_are_pardoned_only_where_the_webhook_pardons_them() {
        let out = objects("");
        // Deny on UPDATE: the old object's findings are subtracted.
        let pa = policy_of(&out, "pa-permissive-mtls").expect("policy");
        assert!(variable(pa, "previous").is_some_and(|e| e.contains("oldObject")));
        // Warn: every finding warns, as in the webhook.
        let warn = policy_of(&out, "ap-wildcard-source").expect("policy");
        assert!(variable(warn, "previous").is_none());
        // Off by the policy.
        let out = objects("allowExistingViolations: false\n");
        let pa = policy_of(&out, "pa-permissive-mtls").expect("policy");
        assert!(variable(pa, "previous").is_none());
        let wl = policy_of(&out, "wl-default-service-account").expect("policy");
        assert!(!wl["spec"]["matchConditions"]
            .to_string()
            .contains("replicaset-controller"));
        // Objects a controller creates for its owner.
        let defaults = objects("");
        let wl = policy_of(&defaults, "wl-default-service-account").expect("policy");
        let conditions = wl["spec"]["matchConditions"].to_string();
        assert!(conditions.contains("system:serviceaccount:kube-system:replicaset-controller"));
        assert!(conditions.contains("ReplicaSet") && conditions.contains("Deployment"));
        // A Pod-only rule judges no owner's template.
        let auto = policy_of(&defaults, "wl-proxy-image-auto").expect("policy");
        assert!(!auto["spec"]["matchConditions"]
            .to_string()
            .contains("ownerReferences"));
    }

    #[test]
    fn exempt_namespaces_apply_to_all_but_istio_kinds() {
        let out = objects("exemptNamespaces: [legacy]\n");
        let conditions =
            |id: &str| policy_of(&out, id).expect("policy")["spec"]["matchConditions"].to_string();
        let wl = conditions("wl-proxy-uid");
        for ns in ["legacy", "istio-system", "meshguard"] {
            assert!(wl.contains(&format!("\\\"{ns}\\\"")), "{ns} in {wl}");
        }
        assert!(!conditions("pa-permissive-mtls").contains("legacy"));
        let delete = conditions("pa-weakening-delete");
        assert!(delete.contains(NAMESPACE_CONTROLLER));
        let p = policy_of(&out, "pa-weakening-delete").expect("policy");
        assert!(variable(p, "exempt").is_some_and(|e| e.contains("deletionTimestamp")));
    }

    #[test]
    fn exemptions_become_cel() {
        let yaml = "rules:\n  pa-permissive-mtls:\n    exemptions:\n      - namespaces: [legacy]\n        objectSelector: {matchLabels: {a: b}}\n      - namespaceSelector: {matchExpressions: [{key: team, operator: NotIn, values: [x, y]}, {key: t, operator: Exists}]}\n      - {}\n";
        let out = objects(yaml);
        let p = policy_of(&out, "pa-permissive-mtls").expect("policy");
        let exempt = variable(p, "exempt").expect("exempt");
        assert_eq!(
            exempt,
            r#"(request.namespace in ["legacy"] && [object.metadata.?labels.orValue({})].all(l, "a" in l && l["a"] == "b")) || ((namespaceObject != null && [namespaceObject.metadata.?labels.orValue({})].all(l, !("team" in l && l["team"] in ["x", "y"]) && "t" in l)))"#
        );
        assert!(variable(p, "fresh").is_some_and(|f| f.starts_with("variables.exempt ? [] : ")));
        // The old object's labels decide whether its findings are pardoned.
        assert!(variable(p, "pardonable").is_some_and(|e| e.contains("oldObject.metadata.?labels")));
        // A Namespace's own namespace labels are its stored labels.
        let yaml = "rules:\n  ns-injection-disabled:\n    exemptions:\n      - namespaceSelector: {matchLabels: {a: b}}\n";
        let out = objects(yaml);
        let n = policy_of(&out, "ns-injection-disabled").expect("policy");
        assert!(variable(n, "exempt").is_some_and(
            |e| e.starts_with("((request.operation == 'UPDATE' && [oldObject.metadata")
        ));
    }

    #[test]
    fn settings_are_the_mesh_and_policy_values() {
        let out = objects("rootNamespace: mesh-root\ntrustDomain: corp.example\ntrustDomainAliases: [old.example]\nclusterDomain: .Example.COM.\nmeshHostSuffixes: [.Mesh.Internal, \"\"]\ninjectionRevision: canary\n");
        let pa = policy_of(&out, "pa-unset-mesh-default").expect("policy");
        assert_eq!(variable(pa, "rootNamespace"), Some("\"mesh-root\""));
        let ap = policy_of(&out, "ap-foreign-trust-domain").expect("policy");
        assert_eq!(variable(ap, "trustDomain"), Some("\"corp.example\""));
        assert_eq!(
            variable(ap, "trustDomains"),
            Some(r#"["cluster.local", "corp.example", "old.example"]"#)
        );
        let dr = policy_of(&out, "dr-tls-disabled").expect("policy");
        assert_eq!(variable(dr, "clusterDomain"), Some("\"example.com\""));
        assert_eq!(
            variable(dr, "meshHostSuffixes"),
            Some(r#"["mesh.internal"]"#)
        );
        let ns = policy_of(&out, "ns-conflicting-injection-labels").expect("policy");
        assert_eq!(
            variable(ns, "injectionLabel"),
            Some("\"istio.io/rev: canary\"")
        );
        // Only the settings a form reads are there.
        assert_eq!(variable(ns, "rootNamespace"), None);
    }

    #[test]
    fn weakening_updates_follow_the_rule() {
        let e = engine("");
        for form in cel::REGISTRY.iter().filter(|f| f.on == On::Delete) {
            let w = (form.cel)()
                .weakening
                .expect("delete forms describe the weakening update");
            let judges = rule_judges_weakening(form, &e, w.probe);
            let (ops, weakening) = operations(form, &e);
            assert_eq!(weakening, judges, "{}", form.rule.id);
            assert_eq!(ops.contains(&"UPDATE"), judges, "{}", form.rule.id);
            assert!(ops.contains(&"DELETE"));
            // The probe is a real weakening: the DELETE of its old object is refused.
            let old: DynamicObject = serde_json::from_str(w.probe.0).expect("probe");
            let review = Review {
                kind: form.rule.kinds[0],
                version: "v1",
                operation: &Operation::Delete,
                namespace: "prod",
                name: "x",
                object: None,
                old_object: Some(&old),
                dry_run: false,
                created_for: None,
            };
            let cache = ReviewCache::default();
            let ctx = Ctx {
                policy: e.policy(),
                mesh: e.mesh(),
                cluster: &NoCluster,
                cache: &cache,
            };
            let mut found = Vec::new();
            (form.rule.check)(&review, &ctx, &mut found);
            assert!(
                !found.is_empty(),
                "{}: the probe's old object protects nothing",
                form.rule.id
            );
        }
    }

    #[test]
    fn placeholders_are_filled_outside_string_literals_only() {
        let mut used = BTreeSet::new();
        let out = instantiate(
            "$o.x + '$o @x' + $a + @rootNamespace + \"\\\"$o\"",
            "object",
            None,
            "old_",
            &["a"],
            &mut used,
        )
        .expect("instantiate");
        assert_eq!(
            out,
            "object.x + '$o @x' + variables.old_a + variables.rootNamespace + \"\\\"$o\""
        );
        assert!(used.contains("rootNamespace"));
        for bad in ["$b", "@nope", "$n", "$", "'open"] {
            assert!(
                instantiate(bad, "object", None, "", &["a"], &mut used).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn bindings_can_be_scoped_and_named() {
        let options = Options {
            name_prefix: "run1-".into(),
            namespace_selector: [("e2e".to_owned(), "x".to_owned())].into(),
            failure_policy: FailurePolicy::Ignore,
            labels: [("team".to_owned(), "platform".to_owned())].into(),
        };
        let out = generate(&engine(""), &options).expect("generate");
        let b = binding_of(&out, "pa-permissive-mtls").expect("binding");
        assert_eq!(b["metadata"]["name"], "run1-pa-permissive-mtls");
        assert_eq!(
            b["spec"]["matchResources"]["namespaceSelector"]["matchLabels"]["e2e"],
            "x"
        );
        assert_eq!(b["metadata"]["labels"]["team"], "platform");
        let p = policy_of(&out, "pa-permissive-mtls").expect("policy");
        assert_eq!(p["spec"]["failurePolicy"], "Ignore");
        let partly = policy_of(&out, "dr-tls-disabled").expect("policy");
        assert_eq!(
            partly["metadata"]["annotations"]["meshguard.io/coverage"],
            "partly"
        );
        assert!(partly["metadata"]["annotations"]["meshguard.io/webhook-adds"].is_string());
    }

    #[test]
    fn output_is_deterministic_and_matches_the_golden_file() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/admission-policies/default.yaml");
        let e = Engine::new(
            Policy::builtin(),
            Arc::new(MeshContext::default()),
            Some("meshguard"),
        );
        let text =
            render_yaml(&generate(&e, &Options::default()).expect("generate")).expect("yaml");
        let again =
            render_yaml(&generate(&e, &Options::default()).expect("generate")).expect("yaml");
        assert_eq!(text, again);
        if std::env::var_os("MESHGUARD_UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(path.parent().expect("dir")).expect("dir");
            std::fs::write(&path, &text).expect("write golden");
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            golden == text,
            "{} is stale: MESHGUARD_UPDATE_GOLDEN=1 cargo test --lib admission_policy (the built-in policy, --own-namespace meshguard)",
            path.display()
        );
    }

    #[test]
    fn the_charts_copy_of_the_forms_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("charts/meshguard/files/admission-policies.json");
        let e = Engine::new(Policy::builtin(), Arc::new(MeshContext::default()), None);
        let text = serde_json::to_string_pretty(&chart_data(&e).expect("chart data"))
            .expect("json")
            + "\n";
        if std::env::var_os("MESHGUARD_UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &text).expect("write chart data");
        }
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            current == text,
            "{} is stale: MESHGUARD_UPDATE_GOLDEN=1 cargo test --lib admission_policy (or meshguard generate admission-policies --format chart > it)",
            path.display()
        );
    }

    #[test]
    fn the_docs_table_is_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/admission-policies.md");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let start = "<!-- table:start -->\n";
        let table = text
            .find(start)
            .zip(text.find("<!-- table:end -->"))
            .map(|(a, b)| &text[a + start.len()..b]);
        assert_eq!(
            table,
            Some(docs_table().as_str()),
            "docs/admission-policies.md's table is stale: replace it with `meshguard generate admission-policies --format docs`"
        );
        for rule in crate::rules::REGISTRY {
            assert!(docs_table().contains(&format!("`{}`", rule.id)));
        }
    }
}
