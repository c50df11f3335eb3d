//! Kubernetes label selectors, evaluated the way kube-apiserver and Istio evaluate them.
//!
//! The semantics are those of `metav1.LabelSelectorAsSelector` (kubernetes
//! `staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/helpers.go`) and `labels.Requirement.Matches`
//! (`staging/src/k8s.io/apimachinery/pkg/labels/selector.go`):
//!
//! * every `matchLabels` entry and every `matchExpressions` term must hold (AND);
//! * `In` needs the key present with one of the values; `NotIn` holds when the key is absent or its
//!   value is none of the values; `Exists` / `DoesNotExist` test the key only;
//! * a selector with no terms at all (`{}`) matches everything;
//! * a *null* selector matches nothing for `LabelSelectorAsSelector`, but in a webhook a null
//!   `namespaceSelector` / `objectSelector` is defaulted to `{}` by the API server and matches
//!   everything ([`Selector::for_webhook`]);
//! * a selector `NewRequirement` rejects — `In`/`NotIn` without values, `Exists`/`DoesNotExist`
//!   with values, an unknown operator, a key that is not a qualified name, a value that is not a
//!   label value — cannot be converted at all. Callers that meet the error (Istio's analyzers'
//!   `selectorMatches`, the injector's never/always selectors) treat it as matching nothing, and so
//!   does [`Selector::matches`]; [`Selector::error`] says why.
//!
//! Selectors are compiled once (when the mesh snapshot is built) and evaluated with no allocation:
//! [`Labels`] lets a caller pass whatever label map it already holds.
//!
//! This is meshguard's one selector engine: the webhooks' selectors, the injector's
//! never/always selectors, the istio-cni enablement selectors, a Gateway listener's
//! `allowedRoutes.namespaces.selector`, and an Istio policy's `selector.matchLabels`
//! ([`crate::model::Selector`], whose pairs are `matchLabels` terms: [`all_pairs_match`]) all
//! match here. [`LabelSelectorSpec`] is a `LabelSelector` as written, decoded the way
//! k8s-openapi decodes `metav1.LabelSelector` (same refusals, same messages).

use super::Str;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;

/// Read-only access to a set of labels (or annotations), so selectors run on the caller's own map
/// without copying it.
pub trait Labels {
    /// The value of `key`, when present.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for super::workload::MetaView<'_> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key)
    }
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: BuildHasher> Labels for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// A JSON object of labels, as in `metadata.labels` of an unparsed object. A value that is not a
/// string counts as absent (Kubernetes would have refused the object).
impl Labels for serde_json::Map<String, Value> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

/// A JSON value holding a label object; anything else (`null`, absent) has no labels.
impl Labels for Value {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Labels for [(K, V)] {
    fn label(&self, key: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.as_ref() == key)
            .map(|(_, v)| v.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> Labels for [(K, V); N] {
    fn label(&self, key: &str) -> Option<&str> {
        self.as_slice().label(key)
    }
}

impl<L: Labels + ?Sized> Labels for &L {
    fn label(&self, key: &str) -> Option<&str> {
        (**self).label(key)
    }
}

impl<L: Labels> Labels for Option<L> {
    fn label(&self, key: &str) -> Option<&str> {
        self.as_ref().and_then(|l| l.label(key))
    }
}

/// No labels at all.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLabels;

impl Labels for NoLabels {
    fn label(&self, _key: &str) -> Option<&str> {
        None
    }
}

/// The label kube-apiserver puts on every namespace (immutable, equal to its name).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A namespace's labels with `kubernetes.io/metadata.name` filled in from its name when the map
/// does not carry it (namespaces read from manifests usually do not; the API server always sets it,
/// and Istio's `auto.*` injector webhook selects on it).
#[derive(Clone, Copy, Debug)]
pub struct NamespaceLabels<'a, N: ?Sized> {
    pub name: &'a str,
    pub labels: &'a N,
}

impl<N: Labels + ?Sized> Labels for NamespaceLabels<'_, N> {
    fn label(&self, key: &str) -> Option<&str> {
        match self.labels.label(key) {
            Some(v) => Some(v),
            None if key == NAMESPACE_NAME_LABEL && !self.name.is_empty() => Some(self.name),
            None => None,
        }
    }
}

/// Whether every `(key, value)` pair is among the labels (a `matchLabels` term each: the key
/// present with that exact value). An Istio `WorkloadSelector` is just such pairs.
pub(crate) fn all_pairs_match<'p, L: Labels + ?Sized>(
    labels: &L,
    mut pairs: impl Iterator<Item = (&'p str, &'p str)>,
) -> bool {
    pairs.all(|(k, v)| labels.label(k) == Some(v))
}

/// A `LabelSelector` as written (`matchLabels`, `matchExpressions`), compiled with
/// [`LabelSelectorSpec::compile`]. Decoding refuses what k8s-openapi's `LabelSelector` refuses,
/// with the same message: a non-map selector or requirement, a non-string label, key, operator or
/// value (`null` fields read as absent, unknown fields are skipped).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(remote = "Self", rename_all = "camelCase")]
pub struct LabelSelectorSpec<'a> {
    #[serde(borrow, default)]
    pub(crate) match_labels: Option<BTreeMap<Str<'a>, Str<'a>>>,
    #[serde(borrow, default)]
    pub(crate) match_expressions: Option<Vec<LabelSelectorRequirement<'a>>>,
}
super::k8s_struct!(LabelSelectorSpec, "LabelSelector");

/// One `matchExpressions` term as written (absent key or operator read as empty, as k8s-openapi
/// reads them).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(remote = "Self")]
pub(crate) struct LabelSelectorRequirement<'a> {
    #[serde(borrow, default)]
    pub(crate) key: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub(crate) operator: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub(crate) values: Option<Vec<Str<'a>>>,
}
super::k8s_struct!(LabelSelectorRequirement, "LabelSelectorRequirement");

impl LabelSelectorSpec<'_> {
    /// `LabelSelectorAsSelector` of this (present) selector.
    pub fn compile(&self) -> Selector {
        let labels = self
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        let expressions = self.match_expressions.iter().flatten().map(|e| {
            (
                e.key.as_deref().unwrap_or_default(),
                e.operator.as_deref().unwrap_or_default(),
                e.values.as_deref().unwrap_or_default(),
            )
        });
        Selector::build(labels, expressions)
    }

    /// The same selector, owning its strings.
    pub fn into_owned(self) -> LabelSelectorSpec<'static> {
        LabelSelectorSpec {
            match_labels: self.match_labels.map(|m| {
                m.into_iter()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            }),
            match_expressions: self.match_expressions.map(|l| {
                l.into_iter()
                    .map(|e| LabelSelectorRequirement {
                        key: e.key.map(Str::into_owned),
                        operator: e.operator.map(Str::into_owned),
                        values: e
                            .values
                            .map(|v| v.into_iter().map(Str::into_owned).collect()),
                    })
                    .collect()
            }),
        }
    }
}

/// A selector operator. `Equals` is a `matchLabels` entry (it behaves as `In` with one value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    Equals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// One term of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
}

impl Requirement {
    /// `labels.Requirement.Matches` for the operators a `LabelSelector` can hold.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::Equals => self.values.first().is_some_and(|v| {
                all_pairs_match(labels, std::iter::once((self.key.as_str(), v.as_str())))
            }),
            Operator::In => labels.label(&self.key).is_some_and(has),
            Operator::NotIn => !labels.label(&self.key).is_some_and(has),
            Operator::Exists => labels.label(&self.key).is_some(),
            Operator::DoesNotExist => labels.label(&self.key).is_none(),
        }
    }
}

impl fmt::Display for Requirement {
    /// The string form of `labels.Requirement.String` (values sorted).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        let values = values.join(",");
        match self.operator {
            Operator::Equals => write!(f, "{}={values}", self.key),
            Operator::In => write!(f, "{} in ({values})", self.key),
            Operator::NotIn => write!(f, "{} notin ({values})", self.key),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
        }
    }
}

/// A compiled label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// All terms must hold; no terms matches everything.
    All(Vec<Requirement>),
    /// Matches nothing: a null selector where null means nothing (`LabelSelectorAsSelector(nil)`).
    Nothing,
    /// Kubernetes cannot convert this selector; it matches nothing. The text says why.
    Invalid(String),
}

impl Default for Selector {
    /// The empty selector, which matches everything.
    fn default() -> Self {
        Selector::All(Vec::new())
    }
}

impl Selector {
    /// The empty selector: matches everything.
    pub fn everything() -> Self {
        Selector::default()
    }

    /// `LabelSelectorAsSelector`: `None` (null) matches nothing, `{}` matches everything.
    pub(crate) fn from_optional(selector: Option<&LabelSelectorSpec<'_>>) -> Self {
        selector.map_or(Selector::Nothing, LabelSelectorSpec::compile)
    }

    /// A webhook's `namespaceSelector` or `objectSelector`: null is defaulted to `{}` by the API
    /// server, so it matches everything.
    pub(crate) fn for_webhook(selector: Option<&LabelSelectorSpec<'_>>) -> Self {
        selector.map_or_else(Selector::everything, LabelSelectorSpec::compile)
    }

    /// Compile a selector from its parts: `matchLabels` entries and `matchExpressions` terms
    /// (key, operator as written, values). Any term Kubernetes rejects makes the whole selector
    /// [`Selector::Invalid`].
    pub fn build<'s, V: AsRef<str> + 's>(
        match_labels: impl IntoIterator<Item = (&'s str, &'s str)>,
        match_expressions: impl IntoIterator<Item = (&'s str, &'s str, &'s [V])>,
    ) -> Self {
        let mut reqs = Vec::new();
        let mut errors = Vec::new();
        for (key, value) in match_labels {
            check_requirement(key, Operator::Equals, &[value], &mut errors);
            reqs.push(Requirement {
                key: key.to_owned(),
                operator: Operator::Equals,
                values: vec![value.to_owned()],
            });
        }
        for (key, op, values) in match_expressions {
            let operator = match op {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    errors.push(format!("{other:?} is not a valid label selector operator"));
                    continue;
                }
            };
            let values: Vec<&str> = values.iter().map(AsRef::as_ref).collect();
            check_requirement(key, operator, &values, &mut errors);
            reqs.push(Requirement {
                key: key.to_owned(),
                operator,
                values: values.into_iter().map(str::to_owned).collect(),
            });
        }
        if !errors.is_empty() {
            return Selector::Invalid(errors.join("; "));
        }
        reqs.sort_by(|a, b| a.key.cmp(&b.key));
        Selector::All(reqs)
    }

    /// Whether the labels satisfy the selector. Allocation-free.
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        match self {
            Selector::All(reqs) => reqs.iter().all(|r| r.matches(labels)),
            Selector::Nothing | Selector::Invalid(_) => false,
        }
    }

    /// `selector.Empty()`: no terms, so it matches everything. Istio's injector skips empty
    /// `neverInjectSelector` / `alwaysInjectSelector` entries instead of letting them match all pods.
    pub fn is_empty(&self) -> bool {
        matches!(self, Selector::All(reqs) if reqs.is_empty())
    }

    /// Why Kubernetes cannot use this selector, when it cannot.
    pub fn error(&self) -> Option<&str> {
        match self {
            Selector::Invalid(e) => Some(e),
            _ => None,
        }
    }

    /// The terms, when the selector is valid and not null.
    pub(crate) fn requirements(&self) -> &[Requirement] {
        match self {
            Selector::All(reqs) => reqs,
            _ => &[],
        }
    }
}

impl fmt::Display for Selector {
    /// Kubernetes' selector string (`a=b,c in (d),!e`), `<everything>` for the empty selector,
    /// `<nothing>` for a null one and `<invalid: …>` for one Kubernetes rejects.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::All(reqs) if reqs.is_empty() => f.write_str("<everything>"),
            Selector::All(reqs) => {
                for (i, r) in reqs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{r}")?;
                }
                Ok(())
            }
            Selector::Nothing => f.write_str("<nothing>"),
            Selector::Invalid(e) => write!(f, "<invalid: {e}>"),
        }
    }
}

/// `labels.NewRequirement`'s checks.
fn check_requirement(key: &str, op: Operator, values: &[&str], errors: &mut Vec<String>) {
    if let Err(e) = qualified_name(key) {
        errors.push(format!("key {key:?}: {e}"));
    }
    match op {
        Operator::In | Operator::NotIn if values.is_empty() => errors.push(format!(
            "key {key:?}: for 'in', 'notin' operators, values set can't be empty"
        )),
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => errors.push(format!(
            "key {key:?}: values set must be empty for exists and does not exist"
        )),
        _ => {}
    }
    for v in values {
        if !is_label_value(v) {
            errors.push(format!(
                "key {key:?}: value {v:?} is not a valid label value (at most 63 characters: alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric)"
            ));
        }
    }
}

/// `validation.IsQualifiedName`: `[prefix/]name`, the prefix a DNS-1123 subdomain, the name at most
/// 63 characters of alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
pub fn qualified_name(key: &str) -> Result<(), &'static str> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if name.contains('/') {
        return Err("a qualified name has at most one '/'");
    }
    if let Some(p) = prefix {
        if p.is_empty() {
            return Err("prefix part must be non-empty");
        }
        if !is_dns1123_subdomain(p) {
            return Err("prefix part must be a lowercase DNS-1123 subdomain");
        }
    }
    if name.is_empty() {
        return Err("name part must be non-empty");
    }
    if name.len() > 63 {
        return Err("name part must be no more than 63 characters");
    }
    if !is_name_chars(name) {
        return Err("name part must consist of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric");
    }
    Ok(())
}

/// `validation.IsValidLabelValue`.
pub fn is_label_value(v: &str) -> bool {
    v.is_empty() || (v.len() <= 63 && is_name_chars(v))
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_name_chars(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `validation.IsDNS1123Subdomain`.
fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// `validation.IsDNS1123Label`: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            b.len() <= 63 && ok(f) && ok(l) && b.iter().all(|c| ok(c) || *c == b'-')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(v: Value) -> Selector {
        <LabelSelectorSpec<'_> as Deserialize>::deserialize(&v)
            .unwrap()
            .compile()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn match_labels_need_every_pair() {
        let s = sel(json!({"matchLabels": {"app": "web", "tier": "front"}}));
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "front"), ("x", "y")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("tier", "back")])));
        assert_eq!(s.to_string(), "app=web,tier=front");
    }

    #[test]
    fn in_operator() {
        let s = sel(
            json!({"matchExpressions": [{"key": "istio.io/rev", "operator": "In", "values": ["canary", "stable"]}]}),
        );
        assert!(s.matches(&labels(&[("istio.io/rev", "canary")])));
        assert!(s.matches(&labels(&[("istio.io/rev", "stable")])));
        assert!(!s.matches(&labels(&[("istio.io/rev", "other")])));
        assert!(!s.matches(&labels(&[])), "In needs the key");
        assert_eq!(s.to_string(), "istio.io/rev in (canary,stable)");
    }

    #[test]
    fn not_in_matches_a_missing_key() {
        let s = sel(
            json!({"matchExpressions": [{"key": "sidecar.istio.io/inject", "operator": "NotIn", "values": ["false"]}]}),
        );
        assert!(s.matches(&labels(&[])), "NotIn on a missing key matches");
        assert!(s.matches(&labels(&[("sidecar.istio.io/inject", "true")])));
        assert!(s.matches(&labels(&[("sidecar.istio.io/inject", "")])));
        assert!(!s.matches(&labels(&[("sidecar.istio.io/inject", "false")])));
    }

    #[test]
    fn exists_and_does_not_exist() {
        let e =
            sel(json!({"matchExpressions": [{"key": "istio-injection", "operator": "Exists"}]}));
        let d = sel(
            json!({"matchExpressions": [{"key": "istio-injection", "operator": "DoesNotExist"}]}),
        );
        let with = labels(&[("istio-injection", "")]);
        let without = labels(&[("other", "x")]);
        assert!(e.matches(&with), "an empty value still exists");
        assert!(!e.matches(&without));
        assert!(!d.matches(&with));
        assert!(d.matches(&without));
        assert_eq!(e.to_string(), "istio-injection");
        assert_eq!(d.to_string(), "!istio-injection");
    }

    #[test]
    fn terms_are_anded() {
        let s = sel(json!({"matchLabels": {"a": "1"},
            "matchExpressions": [{"key": "b", "operator": "Exists"}, {"key": "c", "operator": "DoesNotExist"}]}));
        assert!(s.matches(&labels(&[("a", "1"), ("b", "x")])));
        assert!(!s.matches(&labels(&[("a", "1")])));
        assert!(!s.matches(&labels(&[("a", "1"), ("b", "x"), ("c", "y")])));
        assert!(!s.matches(&labels(&[("a", "2"), ("b", "x")])));
    }

    #[test]
    fn empty_selector_matches_everything_null_depends_on_context() {
        let empty = sel(json!({}));
        assert!(empty.is_empty());
        assert!(empty.matches(&labels(&[])));
        assert!(empty.matches(&labels(&[("a", "b")])));
        let empty_lists = sel(json!({"matchLabels": {}, "matchExpressions": []}));
        assert!(empty_lists.is_empty() && empty_lists.matches(&NoLabels));
        // LabelSelectorAsSelector(nil) matches nothing; a webhook's null selector means {}.
        assert!(!Selector::from_optional(None).matches(&labels(&[])));
        assert!(Selector::for_webhook(None).matches(&labels(&[("a", "b")])));
        assert!(!Selector::from_optional(None).is_empty());
    }

    #[test]
    fn invalid_selectors_match_nothing_and_say_why() {
        for (v, why) in [
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
                "values set can't be empty",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "NotIn"}]}),
                "values set can't be empty",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
                "must be empty",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}),
                "not a valid label selector operator",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "in", "values": ["x"]}]}),
                "not a valid label selector operator",
            ),
            (json!({"matchLabels": {"bad key": "x"}}), "name part"),
            (
                json!({"matchLabels": {"/x": "x"}}),
                "prefix part must be non-empty",
            ),
            (json!({"matchLabels": {"Example.COM/x": "x"}}), "DNS-1123"),
            (
                json!({"matchLabels": {"a": "has space"}}),
                "not a valid label value",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": ["-x"]}]}),
                "not a valid label value",
            ),
        ] {
            let s = sel(v.clone());
            assert!(s.error().is_some_and(|e| e.contains(why)), "{v}: {s:?}");
            assert!(!s.matches(&labels(&[("a", "x")])), "{v}");
            assert!(
                !s.matches(&NoLabels),
                "{v}: an invalid NotIn must not match a missing key"
            );
            assert!(!s.is_empty());
        }
    }

    #[test]
    fn valid_keys_and_values() {
        assert!(qualified_name("sidecar.istio.io/inject").is_ok());
        assert!(qualified_name("kubernetes.io/metadata.name").is_ok());
        assert!(qualified_name("app").is_ok());
        assert!(qualified_name("a/b/c").is_err());
        assert!(qualified_name(&"x".repeat(64)).is_err());
        assert!(is_label_value(""));
        assert!(is_label_value("1.27.0-distroless"));
        assert!(!is_label_value(&"x".repeat(64)));
        assert!(!is_label_value("a_"));
    }

    #[test]
    fn labels_from_every_kind_of_map() {
        let s = sel(json!({"matchLabels": {"app": "web"}}));
        assert!(s.matches(&json!({"app": "web"})));
        assert!(
            !s.matches(&json!({"app": 1})),
            "a non-string value is absent"
        );
        assert!(!s.matches(&Value::Null));
        assert!(s.matches(&[("app", "web")]));
        assert!(s.matches(&[("app".to_owned(), "web".to_owned())][..]));
        let mut h = HashMap::new();
        h.insert("app".to_owned(), "web".to_owned());
        assert!(s.matches(&h));
        assert!(s.matches(&Some(&h)));
        assert!(!s.matches(&None::<&HashMap<String, String>>));
    }

    #[test]
    fn namespace_name_label_is_filled_in() {
        let s = sel(
            json!({"matchExpressions": [{"key": NAMESPACE_NAME_LABEL, "operator": "NotIn", "values": ["kube-system"]}]}),
        );
        let none = labels(&[]);
        assert!(!s.matches(&NamespaceLabels {
            name: "kube-system",
            labels: &none
        }));
        assert!(s.matches(&NamespaceLabels {
            name: "prod",
            labels: &none
        }));
        // Without a name, the label stays absent (and NotIn matches, as Kubernetes would).
        assert!(s.matches(&NamespaceLabels {
            name: "",
            labels: &none
        }));
    }

    /// The decode refuses what k8s-openapi's `LabelSelector` refuses, with its message, from
    /// JSON and from YAML (istio-cni's `AMBIENT_ENABLEMENT_SELECTOR` is YAML).
    #[test]
    fn decode_matches_k8s_openapi() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as K8s;
        let refused = [
            json!("x"),
            json!([1]),
            json!({"matchLabels": [1]}),
            json!({"matchLabels": {"a": 1}}),
            json!({"matchLabels": {"a": null}}),
            json!({"matchExpressions": {"key": "a"}}),
            json!({"matchExpressions": ["a"]}),
            json!({"matchExpressions": [["a", "In", ["x"]]]}),
            json!({"matchExpressions": [null]}),
            json!({"matchExpressions": [{"key": 1}]}),
            json!({"matchExpressions": [{"key": "a", "operator": true}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": "x"}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]}),
        ];
        for v in &refused {
            let want = K8s::deserialize(v)
                .expect_err("k8s-openapi refuses")
                .to_string();
            let got = <LabelSelectorSpec<'_> as Deserialize>::deserialize(v)
                .expect_err("refused")
                .to_string();
            assert_eq!(got, want, "{v}");
            let yaml = serde_json::to_string(v).expect("json");
            let want = serde_saphyr::from_str::<K8s>(&yaml)
                .map(drop)
                .map_err(|e| e.to_string());
            let got = serde_saphyr::from_str::<LabelSelectorSpec<'_>>(&yaml)
                .map(drop)
                .map_err(|e| e.to_string());
            assert_eq!(got, want, "yaml {yaml}");
        }
        for v in [
            json!({}),
            json!({"matchLabels": null, "matchExpressions": null, "other": 1}),
            json!({"matchExpressions": [{}, {"key": null, "values": null}]}),
            json!({"matchLabels": {"a": "b"}, "matchExpressions": [{"key": "c", "operator": "Exists"}]}),
        ] {
            let k = K8s::deserialize(&v).expect("k8s-openapi takes it");
            let m = <LabelSelectorSpec<'_> as Deserialize>::deserialize(&v).expect("taken");
            // And compiles to the same terms as the k8s-openapi selector's fields.
            let from_k8s = Selector::build(
                k.match_labels
                    .iter()
                    .flatten()
                    .map(|(a, b)| (a.as_str(), b.as_str())),
                k.match_expressions.iter().flatten().map(|e| {
                    (
                        e.key.as_str(),
                        e.operator.as_str(),
                        e.values.as_deref().unwrap_or_default(),
                    )
                }),
            );
            assert_eq!(m.compile(), from_k8s, "{v}");
        }
    }

    #[test]
    fn an_istio_workload_selector_matches_as_match_labels() {
        let spec = json!({"selector": {"matchLabels": {"app": "web", "n": 1}}});
        let w = crate::model::Selector::of_spec(&spec);
        let k = sel(json!({"matchLabels": {"app": "web"}}));
        for l in [
            labels(&[("app", "web")]),
            labels(&[("app", "web"), ("x", "y")]),
            labels(&[("app", "api")]),
            labels(&[]),
        ] {
            assert_eq!(w.matches(&l), k.matches(&l), "{l:?}");
        }
        for spec in [
            json!({}),
            json!({"selector": 5}),
            json!({"selector": {"matchLabels": "x"}}),
        ] {
            let w = crate::model::Selector::of_spec(&spec);
            assert!(w.is_empty() && w.matches(&labels(&[])), "{spec}");
        }
    }
}
