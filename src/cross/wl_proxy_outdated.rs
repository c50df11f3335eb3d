//! `wl-proxy-outdated`: a Pod whose `istio-proxy` runs another image than the one its injector
//! gives a new pod now. After an Istio upgrade (or a namespace moved to a new revision), running
//! pods keep the old proxy until they are recreated, with the old proxy's bugs and CVEs (Istio's
//! IST0158, `pkg/config/analysis/analyzers/injection/injection-image.go`).
//!
//! "Its injector" is the one the mesh context's injector decision picks for the pod now (its
//! namespace's labels and its own), so a namespace relabelled from one revision to another counts
//! too, and revision tags are resolved to their revision; when the namespace's labels are unknown,
//! the revision the injector recorded in the pod's `istio.io/rev` label. The image is the one the
//! injection template computes for the pod's annotations (`sidecar.istio.io/proxyImage`, the image
//! type). Pods whose injector's image is unknown (its ConfigMap not visible) are skipped. With the
//! injector ConfigMaps visible but no webhook configuration (manifests of a partial install, as
//! `istioctl analyze` reads them), the revision is the one the pod's or its namespace's
//! `istio.io/rev` label names, else the default revision.

use super::{CrossCheck, CrossContext};
use crate::context::{ClusterView, Lookup};
use crate::finding::{Action, Subject, Violation};
use crate::model::workload::{PROXY_CONTAINER, REV};
use crate::resource::Kind;

pub(crate) static CHECK: CrossCheck = CrossCheck {
    id: "wl-proxy-outdated",
    default_action: Action::Warn,
    summary: "a Pod whose istio-proxy image differs from the one its injector gives a new pod now: it keeps the old proxy until it is recreated (after an upgrade or a revision change)",
    example_fix: "kubectl -n <namespace> rollout restart deployment/<name>",
    run,
};

fn run(cx: &CrossContext<'_>, out: &mut Vec<(Subject, Violation)>) {
    let mesh = cx.engine.mesh();
    if mesh.assumed_default_injector() && mesh.injectors().is_empty() {
        return; // no injector image known at all
    }
    for o in cx.inventory.of_kind(Kind::Pod) {
        let ns = o.namespace();
        if cx.is_exempt_namespace(ns) {
            continue;
        }
        let Some(t) = o.template() else {
            continue;
        };
        // Istio's own lookup: containers, then init containers.
        let Some(proxy) = t.containers().find(|c| c.name() == PROXY_CONTAINER) else {
            continue;
        };
        let Some(image) = proxy.image() else {
            continue;
        };
        if image == "auto" {
            continue; // wl-proxy-image-auto
        }
        let revision = match cx.inventory.namespace_labels(ns) {
            Lookup::Found(labels) => {
                let (pl, pa) = (t.label_view(), t.annotation_view());
                let d = mesh.injection(ns, &labels, &pl, &pa, t.host_network());
                if !d.inject {
                    continue; // a new pod gets no sidecar: wl-namespace-not-injected
                }
                d.revision().or_else(|| d.assumed_revision()).map(str::to_owned)
            }
            _ => t.label(REV).map(str::to_owned),
        };
        let Some(revision) = revision else { continue };
        let Some(want) = mesh.proxy_image_for(&revision, &t.annotation_view()) else {
            continue; // the injector's image is unknown
        };
        if crate::mesh::same_proxy_release(&want, image) {
            continue; // the same release, perhaps another image type (distroless, debug)
        }
        out.push((
            o.subject(),
            Violation::new(
                format!("spec.{}[{}].image", proxy.list, proxy.index),
                format!(
                    "{PROXY_CONTAINER} runs {image:?}, but the injector of revision {revision} gives a new pod {want:?} now: this pod keeps the old proxy until it is recreated"
                ),
                format!(
                    "recreate the pod so that the injector gives it the current proxy (for a Deployment, StatefulSet or DaemonSet: kubectl -n {ns} rollout restart <kind>/<name>)"
                ),
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::cross::testing::*;
    use crate::mesh::testing::canary_mesh;
    use serde_json::json;

    fn pod(ns: &str, name: &str, labels: serde_json::Value, image: &str) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"containers": [{"name": "app", "image": "app"},
                                    {"name": "istio-proxy", "image": image}]}})
    }

    const OLD: &str = "docker.io/istio/proxyv2:1.26.2";
    const NEW: &str = "docker.io/istio/proxyv2:1.27.1";

    fn run_with(objects: Vec<serde_json::Value>) -> Vec<(String, String, String)> {
        findings_in(&CHECK, true, objects, Policy::default(), canary_mesh(&[]))
    }

    #[test]
    fn fires_when_the_injector_now_gives_another_image() {
        // Namespace moved to the prod-stable tag (→ canary, 1.27.1); the pod still runs 1.26.2.
        let found = run_with(vec![
            namespace("shop", json!({"istio.io/rev": "prod-stable"})),
            pod("shop", "web-1", json!({"istio.io/rev": "default"}), OLD),
        ]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "Pod shop/web-1");
        assert_eq!(found[0].1, "spec.containers[1].image");
        assert!(found[0].2.contains(&format!(
            "runs {OLD:?}, but the injector of revision canary gives a new pod {NEW:?} now"
        )));
        // Unknown namespace labels: the revision the pod records (default, 1.26.2) decides.
        let found = findings_in(
            &CHECK,
            false,
            vec![pod("elsewhere", "p", json!({"istio.io/rev": "canary"}), OLD)],
            Policy::default(),
            canary_mesh(&[]),
        );
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn quiet_when_current_unknown_or_not_injected() {
        let found = run_with(vec![
            namespace("shop", json!({"istio.io/rev": "canary"})),
            namespace("legacy", json!({"istio-injection": "enabled"})),
            namespace("plain", json!({})),
            // current image
            pod("shop", "new", json!({}), NEW),
            pod("legacy", "old-rev-current", json!({}), OLD),
            // the annotation picks the image itself
            {
                let mut p = pod("shop", "pinned", json!({}), "registry.example/proxy:9");
                p["metadata"]["annotations"] =
                    json!({"sidecar.istio.io/proxyImage": "registry.example/proxy:9"});
                p
            },
            // a new pod here gets no sidecar: another rule's business
            pod("plain", "manual", json!({}), OLD),
            // no proxy at all
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare", "namespace": "shop"},
                "spec": {"containers": [{"name": "app", "image": "app"}]}}),
            // exempt namespace
            pod("istio-system", "gw", json!({}), OLD),
        ]);
        assert!(found.is_empty(), "{found:?}");
        // No injector visible: nothing to compare with.
        let found = findings(
            &CHECK,
            true,
            vec![
                namespace("shop", json!({"istio.io/rev": "canary"})),
                pod("shop", "p", json!({}), OLD),
            ],
        );
        assert!(found.is_empty());
    }

    /// The release counts, not the image type: a distroless or debug variant of the image the
    /// injector gives is current (ProxyConfig resources, which meshguard does not read, pick the
    /// type per namespace or workload), and so is a proxy in the init containers.
    #[test]
    fn another_image_type_of_the_same_release_is_current() {
        assert!(crate::mesh::same_proxy_release(NEW, "docker.io/istio/proxyv2:1.27.1-distroless"));
        assert!(crate::mesh::same_proxy_release("docker.io/istio/proxyv2:1.27.1-debug", NEW));
        assert!(crate::mesh::same_proxy_release("localhost:5000/proxyv2", "localhost:5000/proxyv2"));
        assert!(!crate::mesh::same_proxy_release(OLD, "docker.io/istio/proxyv2:1.27.1-distroless"));
        assert!(!crate::mesh::same_proxy_release("docker.io/istio/proxyv2:1.27.1-distroless", "docker.io/other/proxyv2:1.27.1"));
        let ns = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "prod", "labels": {"istio.io/rev": "canary"}}});
        let quiet = run_with(vec![
            ns.clone(),
            pod("prod", "p", json!({}), &format!("{NEW}-distroless")),
        ]);
        assert!(quiet.is_empty(), "{quiet:?}");
        let init = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "native", "namespace": "prod"},
            "spec": {"containers": [{"name": "app", "image": "app"}],
                     "initContainers": [{"name": "istio-proxy", "image": OLD}]}});
        let found = run_with(vec![ns, init]);
        assert_eq!(found.len(), 1, "{found:?}");
    }
}
