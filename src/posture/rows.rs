//! The rows of the posture page's data: namespaces, workloads, the policies the page links to
//! (interned), and the compact tuples findings and subjects travel as. Shared by the grid
//! ([`super::model`]) and the reachability matrices ([`super::reach`]).

use crate::inventory::{Inventory, Object};
use crate::resource::Kind;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;

/// One namespace of the grid.
#[derive(Debug, Serialize)]
pub struct NamespaceRow<'a> {
    /// Name.
    pub n: &'a str,
    /// meshguard exempts it (policy `exemptNamespaces`, root, own namespace).
    pub ex: bool,
    /// Injection by its labels: `sidecar`, `ambient`, `off`, `none`, or `unknown` (no
    /// Namespace object in the input).
    pub(crate) inj: &'static str,
    /// The label that says so, e.g. `istio-injection=enabled`.
    pub(crate) injl: String,
    /// Its allow-nothing AuthorizationPolicy, index into `pol`.
    pub(crate) dd: Option<usize>,
    /// Its workloads, indexes into `wl`.
    pub w: Vec<usize>,
    /// Findings of objects in it: deny, warn, audit.
    pub f: [usize; 3],
    /// Ports of its workloads by effective mTLS: STRICT, PERMISSIVE, DISABLE.
    pub m: [usize; 3],
}

/// One port's effective mTLS: `[port (null: every port), mode, deciding policy (index into
/// pol, null: Istio's PERMISSIVE default), level, protocol]`.
pub(crate) type PortCell = (
    Option<u32>,
    &'static str,
    Option<usize>,
    Option<&'static str>,
    &'static str,
);

/// One workload of the grid, serialised as an array in field order (`[k, n, ns, dp, sa, sai,
/// sax, p, dd, ddp, ap, f, s, file, line, wp]`): ten thousand workloads make the keys count.
#[derive(Debug)]
pub struct WorkloadRow<'a> {
    /// Kind.
    pub k: &'static str,
    /// Name.
    pub n: &'a str,
    /// Namespace, index into `ns`.
    pub ns: usize,
    /// Data plane: `sidecar`, `ztunnel` (ambient), `none` or `unknown`.
    pub dp: &'static str,
    /// The waypoints its traffic goes through (`shop/waypoint (Service reviews)`), if any.
    pub(crate) wp: Option<String>,
    /// ServiceAccount its pods run as.
    pub sa: std::borrow::Cow<'a, str>,
    /// No ServiceAccount named: `default` by omission.
    pub(crate) sai: bool,
    /// Whether that ServiceAccount exists: `found`, `missing`, `unknown`.
    pub(crate) sax: &'static str,
    /// Effective mTLS per port.
    pub p: Vec<PortCell>,
    /// Default deny: `deny-all` (an allow-nothing policy applies), `allow-list` (ALLOW
    /// policies apply, so what none of them allows is denied) or `open`.
    pub(crate) dd: &'static str,
    /// The allow-nothing policy that applies, index into `pol`.
    pub(crate) ddp: Option<usize>,
    /// Number of ALLOW policies that apply.
    pub ap: usize,
    /// Its findings: deny, warn, audit.
    pub f: [usize; 3],
    /// Its index in `subj` when it has findings.
    pub s: Option<usize>,
    /// Manifest file (index into `files`) and line.
    pub file: Option<usize>,
    pub line: Option<usize>,
}

impl Serialize for WorkloadRow<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(16)?;
        t.serialize_element(self.k)?;
        t.serialize_element(self.n)?;
        t.serialize_element(&self.ns)?;
        t.serialize_element(self.dp)?;
        t.serialize_element(&self.sa)?;
        t.serialize_element(&self.sai)?;
        t.serialize_element(self.sax)?;
        t.serialize_element(&self.p)?;
        t.serialize_element(self.dd)?;
        t.serialize_element(&self.ddp)?;
        t.serialize_element(&self.ap)?;
        t.serialize_element(&self.f)?;
        t.serialize_element(&self.s)?;
        t.serialize_element(&self.file)?;
        t.serialize_element(&self.line)?;
        t.serialize_element(&self.wp)?;
        t.end()
    }
}

/// A policy the page links to.
#[derive(Debug, Serialize)]
pub struct PolicyRef {
    pub k: &'static str,
    pub ns: String,
    pub n: String,
    /// Index into `files`.
    pub file: Option<usize>,
    pub line: Option<usize>,
    /// Its `spec` as written, as JSON text (parsed when shown; null when the input does not
    /// hold the policy).
    #[serde(serialize_with = "json_text")]
    pub spec: Value,
}

fn json_text<S: serde::Serializer>(v: &Value, s: S) -> Result<S::Ok, S::Error> {
    if v.is_null() {
        return s.serialize_none();
    }
    s.serialize_str(&serde_json::to_string(v).unwrap_or_default())
}

/// `[kind, namespace, name, file, line]`.
pub type SubjectRow<'a> = (&'a str, &'a str, &'a str, Option<usize>, Option<usize>);

/// `[subject, rule, action, path, message, fix]`.
pub type FindingRow<'a> = (usize, usize, &'static str, &'a str, &'a str, &'a str);

/// Policies interned by kind, namespace and name.
#[derive(Debug, Default)]
pub(super) struct Policies<'a> {
    pub list: Vec<PolicyRef>,
    /// Manifest files, interned.
    pub files: Vec<&'a str>,
    file_index: HashMap<&'a str, usize>,
    index: HashMap<(Kind, String, String), usize>,
}

impl<'a> Policies<'a> {
    /// The index of a policy in the list, adding it on first use.
    pub(crate) fn intern(
        &mut self,
        inventory: &'a Inventory,
        kind: Kind,
        ns: &str,
        name: &str,
    ) -> usize {
        let key = (kind, ns.to_owned(), name.to_owned());
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let object = inventory.find(kind, ns, name);
        let i = self.list.len();
        let file = object.and_then(|o| self.file(o.file.as_deref()));
        self.list.push(PolicyRef {
            k: kind.as_str(),
            ns: key.1.clone(),
            n: key.2.clone(),
            file,
            line: object.and_then(|o| o.line),
            spec: object.map_or(Value::Null, |o| o.spec()),
        });
        self.index.insert(key, i);
        i
    }

    /// The index of a manifest file.
    pub fn file(&mut self, file: Option<&'a str>) -> Option<usize> {
        let file = file?;
        Some(*self.file_index.entry(file).or_insert_with(|| {
            self.files.push(file);
            self.files.len() - 1
        }))
    }

    /// Intern an inventory object.
    pub fn object(&mut self, inventory: &'a Inventory, o: &'a Object) -> usize {
        self.intern(inventory, o.kind, o.namespace(), o.name())
    }
}
