//! `peer-authentication-strict-default`: a PeerAuthentication that says nothing about the mode
//! gets `mtls.mode: STRICT`. An explicit mode (including UNSET) is left to the validators.

use super::{add_nested, Mutation};
use crate::model::{decode_spec, PeerAuthentication};
use crate::resource::Kind;
use serde_json::json;

pub(crate) static STRICT_DEFAULT: Mutation = Mutation {
    id: "peer-authentication-strict-default",
    kinds: &[Kind::PeerAuthentication],
    summary: "set spec.mtls.mode: STRICT where the mode is absent",
    needs: &[],
    apply: |review, _ctx, out| {
        let Some(obj) = review.written() else { return };
        let pa: PeerAuthentication<'_> = decode_spec(review.spec()).unwrap_or_default();
        if pa.mode_field().is_some() {
            return;
        }
        add_nested(&obj.data, &["spec", "mtls", "mode"], json!("STRICT"), out);
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::context::NoCluster;
    use crate::resource::Review;
    use crate::rules::Ctx;
    use kube::core::admission::Operation;
    use kube::core::DynamicObject;
    use serde_json::Value;

    fn patched(data: Value) -> (Vec<json_patch::PatchOperation>, Value) {
        let o: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": "d", "namespace": "istio-system"}
        }))
        .expect("obj");
        let o = DynamicObject { data, ..o };
        let op = Operation::Create;
        let review = Review {
            kind: Kind::PeerAuthentication,
            version: "v1",
            operation: &op,
            namespace: "istio-system",
            name: "d",
            object: Some(&o),
            old_object: None,
            dry_run: false,
            created_for: None,
        };
        let policy = Policy::default();
        let ctx = Ctx {
            policy: &policy,
            mesh: &crate::mesh::MeshContext::default(),
            cluster: &NoCluster,
            cache: &crate::rules::ReviewCache::default(),
        };
        let mut ops = Vec::new();
        (STRICT_DEFAULT.apply)(&review, &ctx, &mut ops);
        let mut doc = o.data.clone();
        json_patch::patch(&mut doc, &json_patch::Patch(ops.clone())).expect("applies");
        (ops, doc)
    }

    #[test]
    fn adds_strict_at_every_depth_and_is_idempotent() {
        for data in [
            json!({}),
            json!({"spec": {}}),
            json!({"spec": {"mtls": {}}}),
            json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "mtls": {}}}),
        ] {
            let (ops, doc) = patched(data.clone());
            assert_eq!(ops.len(), 1, "{data}");
            assert_eq!(doc["spec"]["mtls"]["mode"], "STRICT");
            let (again, _) = patched(doc);
            assert!(again.is_empty(), "second pass must not patch");
        }
    }

    #[test]
    fn explicit_mode_untouched() {
        for m in ["PERMISSIVE", "UNSET", "DISABLE", "STRICT"] {
            let (ops, _) = patched(json!({"spec": {"mtls": {"mode": m}}}));
            assert!(ops.is_empty(), "{m}");
        }
    }
}
