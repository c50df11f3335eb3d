//! Decoding an EnvoyFilter: what each patch reaches and does, wrong types read as absent.

use super::*;
use crate::model::decode_spec;
use serde_json::json;

fn decode(spec: &Value) -> EnvoyFilter<'_> {
    decode_spec(spec).unwrap_or_default()
}

#[test]
fn patches_read_where_and_what() {
    let spec = json!({"configPatches": [
        {"applyTo": "HTTP_FILTER", "match": {"context": "SIDECAR_INBOUND", "listener": {
            "filterChain": {"filter": {"name": "envoy.filters.network.http_connection_manager",
                "subFilter": {"name": "envoy.filters.http.rbac"}}}}},
         "patch": {"operation": "REMOVE"}},
        {"applyTo": "CLUSTER", "match": {"context": "SIDECAR_OUTBOUND", "cluster": {"service": "api.example.com"}},
         "patch": {"operation": "MERGE", "value": {"transport_socket": {"name": "envoy.transport_sockets.raw_buffer"}}}},
        {"applyTo": "LISTENER", "match": {"listener": {"name": "virtualInbound"}}, "patch": {"operation": "MERGE"}},
        {"applyTo": "LISTENER", "match": {"context": "SIDECAR_OUTBOUND", "listener": {"portNumber": 15006, "listenerFilter": "envoy.filters.listener.tls_inspector"}}},
        {"match": {"context": "GATEWAY"}},
        {"match": {"context": "SOMEWHERE"}}
    ]});
    let ef = decode(&spec);
    let p: Vec<PatchAt<'_, '_>> = ef.patches().collect();
    assert_eq!(p.len(), 6);
    assert_eq!(p[0].apply_to(), "HTTP_FILTER");
    assert_eq!(p[0].operation(), "REMOVE");
    assert_eq!(p[0].context(), PatchContext::SidecarInbound);
    assert_eq!(
        p[0].filter_name(),
        Some("envoy.filters.network.http_connection_manager")
    );
    assert_eq!(p[0].sub_filter(), Some(Some("envoy.filters.http.rbac")));
    assert!(p[0].reaches_inbound() && p[0].reaches_enforcement());
    assert_eq!(p[1].cluster_service(), Some("api.example.com"));
    assert!(!p[1].reaches_enforcement());
    let (path, key) = find_string(
        p[1].patch_value().expect("value"),
        "spec.configPatches[1].patch.value",
        &|s| s == "transport_socket",
    )
    .expect("found");
    assert_eq!(
        (path.as_str(), key),
        (
            "spec.configPatches[1].patch.value.transport_socket",
            "transport_socket"
        )
    );
    assert_eq!(p[2].context(), PatchContext::Any);
    assert_eq!(p[2].listener_name(), Some("virtualInbound"));
    assert_eq!(p[2].sub_filter(), None);
    assert_eq!(p[3].port_number(), Some(15006));
    assert!(p[3].reaches_inbound(), "port 15006 is virtualInbound");
    assert_eq!(
        p[3].listener_filter(),
        Some("envoy.filters.listener.tls_inspector")
    );
    assert_eq!(p[3].operation(), "");
    assert!(!p[4].reaches_inbound() && p[4].reaches_enforcement());
    assert_eq!(p[5].context(), PatchContext::Other);
    assert_eq!(p[5].path(), "spec.configPatches[5]");
}

#[test]
fn wrong_types_read_as_absent_and_keep_indexes() {
    let spec = json!({"configPatches": [
        "not a patch",
        {"applyTo": 5, "match": {"context": 1, "listener": {"name": ["x"], "portNumber": "15006",
            "filterChain": {"filter": {"name": 3, "subFilter": "x"}}}}, "patch": {"operation": true, "value": null}},
        {"match": {"listener": {"portNumber": 15006.5, "filterChain": {"filter": {"subFilter": null}}}}, "patch": []},
        {"match": [], "patch": {"value": "istio_authn"}},
        {"match": {"listener": {"filterChain": {"filter": "envoy.filters.http.rbac"}}}}
    ]});
    let ef = decode(&spec);
    let p: Vec<PatchAt<'_, '_>> = ef.patches().collect();
    assert_eq!(p.len(), 5);
    assert_eq!(p[0].path(), "spec.configPatches[0]");
    assert_eq!((p[0].apply_to(), p[0].operation()), ("", ""));
    assert_eq!(p[0].context(), PatchContext::Any);
    assert_eq!(p[1].apply_to(), "");
    assert_eq!(p[1].operation(), "");
    assert_eq!(p[1].context(), PatchContext::Any);
    assert_eq!(p[1].listener_name(), None);
    assert_eq!(p[1].port_number(), None);
    assert_eq!(p[1].filter_name(), None);
    assert_eq!(
        p[1].sub_filter(),
        Some(None),
        "a subFilter of the wrong type is matched, by no name"
    );
    assert_eq!(p[1].patch_value(), None);
    assert_eq!(p[2].port_number(), None);
    assert_eq!(p[2].sub_filter(), None, "a null subFilter is no subFilter");
    assert_eq!(p[3].patch_value(), Some(&json!("istio_authn")));
    assert_eq!(p[4].filter_name(), None);
    assert_eq!(p[4].sub_filter(), None);
    // configPatches that is not a list, and a spec that is not an object, have no patches.
    assert_eq!(
        decode(&json!({"configPatches": {"a": 1}}))
            .patches()
            .count(),
        0
    );
    let e = decode_spec::<EnvoyFilter<'_>>(&json!("x")).expect_err("refused");
    assert_eq!(e.message, "spec in body must be of type object: \"string\"");
    assert_eq!(decode(&json!("x")).patches().count(), 0);
}

#[test]
fn strings_borrow_from_the_object() {
    let spec = json!({"configPatches": [{"applyTo": "HTTP_FILTER"}]});
    let ef = decode(&spec);
    let patch = entries(&ef.config_patches)[0].ok().expect("patch");
    assert!(matches!(
        patch.apply_to,
        Some(Loose::Ok(Str(std::borrow::Cow::Borrowed("HTTP_FILTER"))))
    ));
}

#[test]
fn find_string_paths() {
    let v = json!({"a": [{"b c": "x.rbac"}], "plain_key-1@": {"y": "z"}});
    let hit = |s: &str| s.contains("rbac");
    assert_eq!(
        find_string(&v, "p", &hit),
        Some(("p.a[0][\"b c\"]".to_owned(), "x.rbac"))
    );
    assert_eq!(
        find_string(&v, "p", &|s| s == "plain_key-1@"),
        Some(("p.plain_key-1@".to_owned(), "plain_key-1@"))
    );
    assert_eq!(find_string(&v, "p", &|s| s == "nothing"), None);
}
