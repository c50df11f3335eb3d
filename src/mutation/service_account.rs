//! `default-service-account`: a workload template that names no ServiceAccount (or `default`)
//! gets `serviceAccountName` from its `app.kubernetes.io/name` label, else its `app` label, but
//! only when a ServiceAccount of that name exists in the namespace (`Lookup::Found`). Otherwise
//! there is no patch and `wl-default-service-account` says what to create. Pods are left alone:
//! the ServiceAccount admission plugin has already filled `default` before webhooks run, and the
//! controller copies the template anyway.

use super::{add_nested, Mutation};
use crate::context::{Lookup, Need};
use crate::model::workload::PodTemplate;
use crate::resource::Kind;
use serde_json::json;

pub(crate) static DEFAULT_SERVICE_ACCOUNT: Mutation = Mutation {
    id: "default-service-account",
    kinds: &[
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::ReplicaSet,
        Kind::ReplicationController,
        Kind::Job,
        Kind::CronJob,
    ],
    summary: "set the template's serviceAccountName from the app.kubernetes.io/name or app label when that ServiceAccount exists",
    needs: &[Need::CandidateServiceAccount],
    apply: |review, ctx, out| {
        let Some(obj) = review.written() else { return };
        let Some(t) = PodTemplate::of(review.kind, obj) else { return };
        if t.is_pod() || t.service_account().is_some_and(|(_, sa)| sa != "default") {
            return;
        }
        let Some((_, name)) = t.service_account_candidate() else { return };
        if ctx.cluster.service_account(review.namespace, name) != Lookup::Found(()) {
            return;
        }
        add_nested(
            &obj.data,
            &t.keys(&["spec", "serviceAccountName"]),
            json!(name),
            out,
        );
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::context::{ClusterView, NoCluster};
    use crate::inventory::Inventory;
    use crate::resource::Review;
    use crate::rules::Ctx;
    use json_patch::PatchOperation;
    use kube::core::admission::Operation;
    use kube::core::DynamicObject;
    use serde_json::Value;

    fn mutate(kind: Kind, o: &DynamicObject, cluster: &dyn ClusterView) -> Vec<PatchOperation> {
        let op = Operation::Create;
        let review = Review {
            kind,
            version: "v1",
            operation: &op,
            namespace: "prod",
            name: "w",
            object: Some(o),
            old_object: None,
            dry_run: false,
            created_for: None,
        };
        let policy = Policy::default();
        let ctx = Ctx {
            policy: &policy,
            mesh: &crate::mesh::MeshContext::default(),
            cluster,
            cache: &crate::rules::ReviewCache::default(),
        };
        let mut ops = Vec::new();
        (DEFAULT_SERVICE_ACCOUNT.apply)(&review, &ctx, &mut ops);
        ops
    }

    fn workload(kind: Kind, labels: Value, spec: Value) -> DynamicObject {
        let template = json!({"metadata": {"labels": labels}, "spec": spec});
        let v = match kind {
            Kind::CronJob => {
                json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "w"},
                "spec": {"jobTemplate": {"spec": {"template": template}}}})
            }
            Kind::Pod => {
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w", "labels": labels}, "spec": spec})
            }
            _ => json!({"apiVersion": "apps/v1", "kind": kind.as_str(), "metadata": {"name": "w"},
                "spec": {"template": template}}),
        };
        serde_json::from_value(v).expect("object")
    }

    fn apply(o: &DynamicObject, ops: Vec<PatchOperation>) -> DynamicObject {
        let mut doc = serde_json::to_value(o).expect("ser");
        json_patch::patch(&mut doc, &json_patch::Patch(ops)).expect("patch applies");
        serde_json::from_value(doc).expect("de")
    }

    #[test]
    fn patches_every_template_kind_and_is_idempotent() {
        let cluster = Inventory::complete(Vec::new()).with_service_account("prod", "web");
        for kind in DEFAULT_SERVICE_ACCOUNT.kinds.iter().copied() {
            for spec in [
                json!({"containers": []}),
                json!({"containers": [], "serviceAccountName": "default"}),
                json!({"containers": [], "serviceAccount": "default"}),
            ] {
                let o = workload(kind, json!({"app": "web"}), spec.clone());
                let ops = mutate(kind, &o, &cluster);
                assert_eq!(ops.len(), 1, "{kind} {spec}");
                let path = serde_json::to_value(&ops[0]).expect("ser")["path"].clone();
                let expected = match kind {
                    Kind::CronJob => "/spec/jobTemplate/spec/template/spec/serviceAccountName",
                    _ => "/spec/template/spec/serviceAccountName",
                };
                assert_eq!(path, expected);
                let patched = apply(&o, ops);
                let t = PodTemplate::of(kind, &patched).expect("template");
                assert_eq!(t.service_account(), Some(("serviceAccountName", "web")));
                assert!(
                    mutate(kind, &patched, &cluster).is_empty(),
                    "second pass must not patch"
                );
            }
        }
    }

    #[test]
    fn prefers_app_kubernetes_io_name() {
        let cluster = Inventory::complete(Vec::new())
            .with_service_account("prod", "web")
            .with_service_account("prod", "checkout");
        let o = workload(
            Kind::Deployment,
            json!({"app": "web", "app.kubernetes.io/name": "checkout"}),
            json!({}),
        );
        let patched = apply(&o, mutate(Kind::Deployment, &o, &cluster));
        assert_eq!(
            patched.data["spec"]["template"]["spec"]["serviceAccountName"],
            "checkout"
        );
    }

    #[test]
    fn no_patch_unless_the_account_exists() {
        let o = workload(Kind::Deployment, json!({"app": "web"}), json!({}));
        assert!(mutate(Kind::Deployment, &o, &Inventory::complete(Vec::new())).is_empty());
        assert!(mutate(Kind::Deployment, &o, &NoCluster).is_empty());
        let cluster = Inventory::complete(Vec::new()).with_service_account("prod", "web");
        // An explicit account is never replaced.
        let o = workload(
            Kind::Deployment,
            json!({"app": "web"}),
            json!({"serviceAccountName": "other"}),
        );
        assert!(mutate(Kind::Deployment, &o, &cluster).is_empty());
        // Pods are not patched.
        let o = workload(
            Kind::Pod,
            json!({"app": "web"}),
            json!({"serviceAccountName": "default"}),
        );
        assert!(mutate(Kind::Pod, &o, &cluster).is_empty());
        // No label to derive a name from.
        let o = workload(Kind::Deployment, json!({"tier": "web"}), json!({}));
        assert!(mutate(Kind::Deployment, &o, &cluster).is_empty());
    }
}
