//! `injector-overlap`: two sidecar injector webhooks of different configurations (two
//! revisions, a revision and a revision tag, a leftover install) that both select the same
//! namespace and pod. kube-apiserver then calls both injectors for one Pod CREATE: the pod is
//! injected twice, or by the injector nobody meant.
//!
//! Two views, both from the mesh context: the label combinations Istio's `webhook` analyzer tries
//! (`pkg/config/analysis/analyzers/webhook/webhook.go`, IST0139: namespaces with or without
//! `istio-injection` and `istio.io/rev`, pods with or without `sidecar.istio.io/inject` and
//! `istio.io/rev`), reported on the webhook configuration; and the namespaces and workloads that
//! exist, reported on them (a namespace when a plain pod in it is selected twice, a workload when
//! its own labels make the difference). Overlaps inside one configuration are left out: they send
//! the pod to the same injector.

use super::{CrossCheck, CrossContext};
use crate::context::{ClusterView, Lookup};
use crate::finding::{Action, Subject, Violation};
use crate::mesh::{InjectorWebhook, Labels, MeshContext, NoLabels};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) static CHECK: CrossCheck = CrossCheck {
    id: "injector-overlap",
    default_action: Action::Warn,
    summary: "two sidecar injector webhooks (different revisions or tags) both select the same namespace and pod: double injection (IST0139)",
    example_fix: "make the injectors' selectors exclusive: remove the leftover revision or tag (istioctl tag remove <tag>, or delete its MutatingWebhookConfiguration)",
    run,
};

/// Two webhooks of different configurations that both select a pod with these labels.
fn overlap<'m, N: Labels + ?Sized, P: Labels + ?Sized>(
    mesh: &'m MeshContext,
    ns: &str,
    ns_labels: &N,
    pod_labels: &P,
) -> Option<(&'m InjectorWebhook, &'m InjectorWebhook)> {
    let mut first: Option<&InjectorWebhook> = None;
    for w in mesh
        .webhooks()
        .iter()
        .filter(|w| w.selects(&crate::mesh::selector::NamespaceLabels { name: ns, labels: ns_labels }, pod_labels))
    {
        match first {
            None => first = Some(w),
            Some(a) if a.configuration != w.configuration => return Some((a, w)),
            Some(_) => {}
        }
    }
    None
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        "no labels".to_owned()
    } else {
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

const FIX: &str = "make the injectors' selectors exclusive: a namespace or pod label must be served by one revision or tag only (remove the leftover one: istioctl tag remove <tag>, or delete its MutatingWebhookConfiguration)";

fn run(cx: &CrossContext<'_>, out: &mut Vec<(Subject, Violation)>) {
    let mesh = cx.engine.mesh();
    if mesh.assumed_default_injector() {
        return;
    }
    // 1. Label combinations, whatever exists now (IST0139), once per pair of configurations.
    let mut pairs = BTreeSet::new();
    for (a, b, o) in mesh.configuration_overlaps() {
        if a.configuration == b.configuration
            || !pairs.insert((a.configuration.clone(), b.configuration.clone()))
        {
            continue;
        }
        out.push((
            Subject {
                api_version: "admissionregistration.k8s.io/v1".to_owned(),
                kind: "MutatingWebhookConfiguration".to_owned(),
                namespace: String::new(),
                uid: String::new(),
                name: b.configuration.clone(),
                file: None,
                line: None,
            },
            Violation::new(
                "webhooks",
                format!(
                    "{b} and {a} both select a pod with {} in a namespace with {}: kube-apiserver sends such pods to both injectors, which injects them twice (Istio IST0139)",
                    labels_text(&o.pod_labels),
                    labels_text(&o.namespace_labels)
                ),
                FIX,
            ),
        ));
    }
    // 2. The namespaces and workloads that exist.
    let mut plain_overlap = BTreeSet::new();
    for ns_obj in cx.inventory.namespace_objects() {
        let ns = ns_obj.name();
        if cx.is_exempt_namespace(ns) {
            continue;
        }
        if let Some((a, b)) = overlap(mesh, ns, ns_obj.labels(), &NoLabels) {
            plain_overlap.insert(ns.to_owned());
            out.push((
                ns_obj.subject(),
                Violation::new(
                    "metadata.labels",
                    format!("every pod created in namespace {ns:?} is selected by {a} and by {b}: it is injected twice"),
                    FIX,
                ),
            ));
        }
    }
    for w in cx.inventory.workloads() {
        let o = cx.inventory.workload_object(w);
        let ns = o.namespace();
        if plain_overlap.contains(ns) || cx.is_exempt_namespace(ns) {
            continue;
        }
        let Lookup::Found(labels) = cx.inventory.namespace_labels(ns) else {
            continue;
        };
        let Some(t) = o.template() else {
            continue;
        };
        if let Some((a, b)) = overlap(mesh, ns, &labels, &t.label_view()) {
            out.push((
                o.subject(),
                Violation::new(
                    t.path("metadata.labels"),
                    format!("this workload's pods are selected by {a} and by {b}: they are injected twice"),
                    FIX,
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::cross::testing::*;
    use crate::mesh::testing::{enabled_injector, mesh_of, revision_mwc, tag_mwc};
    use serde_json::json;

    /// The default revision plus a `default` tag pointing to canary, whose webhooks (unlike
    /// `istioctl tag set default`) were left active on the default revision too.
    fn overlapping() -> MeshContext {
        mesh_of(
            &[
                revision_mwc("", false),
                revision_mwc("canary", false),
                tag_mwc("default", "canary", false),
            ],
            &[
                enabled_injector("default", "1.26.2"),
                enabled_injector("canary", "1.27.1"),
            ],
        )
    }

    #[test]
    fn fires_on_configurations_namespaces_and_workloads() {
        let found = findings_in(
            &CHECK,
            true,
            vec![
                namespace("shop", json!({"istio-injection": "enabled"})),
                namespace("pay", json!({"istio.io/rev": "canary"})),
                namespace("plain", json!({})),
                deployment("plain", "opt-in", json!({"sidecar.istio.io/inject": "true"}), &[]),
                deployment("pay", "web", json!({"app": "web"}), &[]),
            ],
            Policy::default(),
            overlapping(),
        );
        let who: Vec<&str> = found.iter().map(|f| f.0.as_str()).collect();
        assert!(
            who.contains(&"MutatingWebhookConfiguration istio-sidecar-injector")
                || who.contains(&"MutatingWebhookConfiguration istio-revision-tag-default"),
            "{found:?}"
        );
        assert!(who.contains(&"Namespace shop"), "{found:?}");
        assert!(who.contains(&"Deployment plain/opt-in"), "{found:?}");
        assert!(!who.contains(&"Namespace pay"), "{found:?}");
        assert!(!who.contains(&"Deployment pay/web"), "{found:?}");
        let ns = found.iter().find(|f| f.0 == "Namespace shop").expect("shop");
        assert!(ns.2.contains("is injected twice"), "{}", ns.2);
        let cfg = found
            .iter()
            .find(|f| f.0.starts_with("MutatingWebhookConfiguration"))
            .expect("configuration");
        assert!(cfg.2.contains("(Istio IST0139)"), "{}", cfg.2);
    }

    #[test]
    fn quiet_for_istios_chart_and_without_injectors() {
        let found = findings_in(
            &CHECK,
            true,
            vec![
                namespace("shop", json!({"istio-injection": "enabled"})),
                namespace("pay", json!({"istio.io/rev": "prod-stable"})),
                deployment("shop", "web", json!({"sidecar.istio.io/inject": "true"}), &[]),
            ],
            Policy::default(),
            crate::mesh::testing::canary_mesh(&[]),
        );
        assert!(found.is_empty(), "{found:?}");
        assert!(findings(
            &CHECK,
            true,
            vec![namespace("shop", json!({"istio-injection": "enabled"}))]
        )
        .is_empty());
    }
}
