//! `namespace-injection-label`: a non-exempt namespace that carries no injection mode at all
//! gets `istio-injection: enabled` (or `istio.io/rev: <rev>` when `injectionRevision` is
//! configured), on CREATE and UPDATE. When the mesh's injectors are visible and none serves that
//! label (a revision-only install without a `default` tag), a label one serves instead: a revision
//! tag, else a revision. Never on a namespace that already says something:
//! an explicit `istio-injection=disabled` is denied by `ns-injection-disabled` instead, and an
//! existing `istio.io/rev` or ambient label is left as it is. An UPDATE that *removes* the
//! injection label is not silently undone either: `ns-injection-missing` refuses it with a
//! message, so the change is visible to whoever made it.

use super::{add, Mutation};
use crate::dataplane::labels::{injection, Injection};
use crate::resource::{labels_of, Kind};
use crate::rules::namespace::suggested_label_for;
use kube::core::admission::Operation;
use serde_json::{json, Value};

pub(crate) static INJECTION_LABEL: Mutation = Mutation {
    id: "namespace-injection-label",
    kinds: &[Kind::Namespace],
    summary: "add istio-injection: enabled (or istio.io/rev: <injectionRevision>; with injectors visible, a label one of them serves) to namespaces without an injection label",
    needs: &[],
    apply: |review, ctx, out| {
        let Some(obj) = review.written() else { return };
        if injection(labels_of(obj)) != Injection::None {
            return;
        }
        let removed = matches!(review.operation, Operation::Update)
            && review
                .old_object
                .is_some_and(|old| injection(labels_of(old)) != Injection::None);
        if removed {
            return;
        }
        let (key, value) = suggested_label_for(ctx, review.namespace, Some(labels_of(obj)));
        match &obj.metadata.labels {
            Some(_) => out.push(add(["metadata", "labels", key], json!(value))),
            None => {
                let mut labels = serde_json::Map::new();
                labels.insert(key.to_owned(), Value::String(value));
                out.push(add(["metadata", "labels"], Value::Object(labels)));
            }
        }
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::context::NoCluster;
    use crate::resource::Review;
    use crate::rules::Ctx;
    use json_patch::PatchOperation;
    use kube::core::DynamicObject;

    fn ns(labels: Option<Value>) -> DynamicObject {
        let mut meta = json!({"name": "prod"});
        if let Some(l) = labels {
            meta["labels"] = l;
        }
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta}))
            .expect("ns")
    }

    fn mutate_with(
        op: Operation,
        o: &DynamicObject,
        old: Option<&DynamicObject>,
        policy: &Policy,
    ) -> Vec<PatchOperation> {
        let review = Review {
            kind: Kind::Namespace,
            version: "v1",
            operation: &op,
            namespace: "prod",
            name: "prod",
            object: Some(o),
            old_object: old,
            dry_run: false,
            created_for: None,
        };
        let ctx = Ctx {
            policy,
            mesh: &crate::mesh::MeshContext::default(),
            cluster: &NoCluster,
            cache: &crate::rules::ReviewCache::default(),
        };
        let mut ops = Vec::new();
        (INJECTION_LABEL.apply)(&review, &ctx, &mut ops);
        ops
    }

    fn mutate(op: Operation, o: &DynamicObject) -> Vec<PatchOperation> {
        mutate_with(op, o, None, &Policy::default())
    }

    fn apply(o: &DynamicObject, ops: Vec<PatchOperation>) -> DynamicObject {
        let mut doc = serde_json::to_value(o).expect("ser");
        json_patch::patch(&mut doc, &json_patch::Patch(ops)).expect("applies");
        serde_json::from_value(doc).expect("de")
    }

    #[test]
    fn adds_the_label_creating_labels_when_absent() {
        for op in [Operation::Create, Operation::Update] {
            for labels in [None, Some(json!({})), Some(json!({"team": "a"}))] {
                let o = ns(labels.clone());
                let ops = mutate(op.clone(), &o);
                assert_eq!(ops.len(), 1, "{labels:?}");
                let text = serde_json::to_string(&ops).expect("ser");
                if labels.is_none() {
                    assert_eq!(
                        text,
                        r#"[{"op":"add","path":"/metadata/labels","value":{"istio-injection":"enabled"}}]"#
                    );
                } else {
                    assert_eq!(
                        text,
                        r#"[{"op":"add","path":"/metadata/labels/istio-injection","value":"enabled"}]"#
                    );
                }
                let patched = apply(&o, ops);
                assert_eq!(
                    labels_of(&patched)
                        .get("istio-injection")
                        .map(String::as_str),
                    Some("enabled")
                );
                assert!(mutate(op.clone(), &patched).is_empty(), "idempotent");
            }
        }
    }

    #[test]
    fn labels_the_namespace_for_an_injector_that_exists() {
        use crate::mesh::testing::{enabled_injector, mesh_of, revision_mwc, tag_mwc};
        // A revision-only install: nobody serves istio-injection=enabled, the tag does.
        let mesh = mesh_of(
            &[
                revision_mwc("canary", false),
                tag_mwc("prod-stable", "canary", false),
            ],
            &[enabled_injector("canary", "1.27.1")],
        );
        let o = ns(Some(json!({"team": "a"})));
        let review = Review::create(Kind::Namespace, "v1", "prod", "prod", &o);
        let ctx = Ctx {
            policy: &Policy::default(),
            mesh: &mesh,
            cluster: &NoCluster,
            cache: &crate::rules::ReviewCache::default(),
        };
        let mut ops = Vec::new();
        (INJECTION_LABEL.apply)(&review, &ctx, &mut ops);
        let patched = apply(&o, ops);
        assert_eq!(
            labels_of(&patched).get("istio.io/rev").map(String::as_str),
            Some("prod-stable")
        );
        assert!(!labels_of(&patched).contains_key("istio-injection"));
    }

    #[test]
    fn revision_label_is_escaped() {
        let policy =
            crate::catalogue::policy_from_yaml("injectionRevision: canary\n", "t").expect("policy");
        let o = ns(Some(json!({"team": "a"})));
        let ops = mutate_with(Operation::Create, &o, None, &policy);
        let text = serde_json::to_string(&ops).expect("ser");
        assert_eq!(
            text,
            r#"[{"op":"add","path":"/metadata/labels/istio.io~1rev","value":"canary"}]"#
        );
        let patched = apply(&o, ops);
        assert_eq!(
            labels_of(&patched).get("istio.io/rev").map(String::as_str),
            Some("canary")
        );
        assert!(mutate_with(Operation::Create, &patched, None, &policy).is_empty());
    }

    #[test]
    fn explicit_choices_are_left_alone() {
        for labels in [
            json!({"istio-injection": "disabled"}),
            json!({"istio-injection": "enabled"}),
            json!({"istio.io/rev": "canary"}),
            json!({"istio.io/dataplane-mode": "ambient"}),
        ] {
            assert!(
                mutate(Operation::Create, &ns(Some(labels.clone()))).is_empty(),
                "{labels}"
            );
        }
        // An update that removes the label is denied by validation, not silently undone.
        let old = ns(Some(json!({"istio-injection": "enabled"})));
        let new = ns(Some(json!({})));
        assert!(mutate_with(Operation::Update, &new, Some(&old), &Policy::default()).is_empty());
        assert!(mutate(Operation::Delete, &old).is_empty());
    }
}
