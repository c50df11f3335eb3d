//! `targetRef` / `targetRefs` (Istio's `PolicyTargetReference`): the gateway, waypoint or
//! Service a policy attaches to instead of a selector (AuthorizationPolicy,
//! RequestAuthentication, PeerAuthentication, Telemetry, WasmPlugin).

use super::validation::{Class, Errors};
use super::{ok, shaped, Loose, Str};
use serde::Deserialize;

/// One `PolicyTargetReference`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef<'a> {
    #[serde(borrow, default)]
    pub group: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    pub kind: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    pub name: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    pub namespace: Option<Loose<Str<'a>>>,
}

shaped!(Map: TargetRef<'_>);

/// Lower-case RFC 1123 subdomain (API group names).
fn dns_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        !label.is_empty()
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

impl TargetRef<'_> {
    /// Istio's validation of one reference at `path` (the CRD schema's and istiod's
    /// `validatePolicyTargetReference`: name and kind required, group and kind formats, no
    /// cross-namespace reference) in a policy of namespace `own_ns`.
    pub(crate) fn validate(
        r: &Loose<TargetRef<'_>>,
        path: &str,
        own_ns: &str,
        errors: &mut Errors<'_>,
    ) {
        let Loose::Ok(r) = r else {
            errors.report(
                Class::Spec,
                || path.to_owned(),
                || format!("{path} in body must be of type object"),
                || "write {group: \"\", kind: Service, name: <name>}".to_owned(),
            );
            return;
        };
        for (field, value) in [("name", &r.name), ("kind", &r.kind)] {
            match ok(value).map(Str::as_str) {
                None => errors.report(
                    Class::Spec,
                    || format!("{path}.{field}"),
                    || format!("{path}.{field}: Required value"),
                    || format!("set {field}"),
                ),
                Some("") => errors.report(
                    Class::Spec,
                    || format!("{path}.{field}"),
                    || format!("{path}.{field} in body should be at least 1 chars long"),
                    || format!("set {field}"),
                ),
                Some(_) => {}
            }
        }
        if let Some(g) = ok(&r.group) {
            if !g.is_empty() && !dns_subdomain(g) {
                errors.report(
                    Class::Spec,
                    || format!("{path}.group"),
                    || format!("{path}.group in body should match '^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'"),
                    || "write \"\" for core kinds (Service) or the API group, e.g. gateway.networking.k8s.io".to_owned(),
                );
            }
        }
        if let Some(k) = ok(&r.kind) {
            let ok = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !k.ends_with('-');
            if !k.is_empty() && !ok {
                errors.report(
                    Class::Spec,
                    || format!("{path}.kind"),
                    || {
                        format!(
                            "{path}.kind in body should match '^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$'"
                        )
                    },
                    || "write the kind, e.g. Service or Gateway".to_owned(),
                );
            }
        }
        if let Some(ns) = ok(&r.namespace) {
            if !ns.is_empty() && ns.as_str() != own_ns {
                errors.report(
                    Class::Spec,
                    || format!("{path}.namespace"),
                    || "cross namespace referencing is not currently supported".to_owned(),
                    || format!("remove namespace (the target must be in {own_ns:?}), or create the policy in {ns:?}"),
                );
            }
        }
    }
}
