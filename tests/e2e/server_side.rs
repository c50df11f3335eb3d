//! Scenario 3: server-side apply and server-side dry run.
//!
//! What the cluster shows: a STRICT PeerAuthentication applied server-side is stored; the same
//! apply changed to PERMISSIVE is refused (by kubectl and by kube-rs's `Patch::Apply`, with
//! HTTP 403) and the stored object stays STRICT; an applied policy without a mode gets STRICT
//! from the mutation. `--dry-run=server` prints meshguard's warnings and stores nothing, and
//! a dry run of a violation is refused like the real thing.

use crate::harness::{self, pairs, Run};
use kube::api::{Patch, PatchParams};
use std::path::Path;

pub fn run(kubeconfig: &Path) {
    harness::block_on(scenario(kubeconfig));
}

fn peer_authentication(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: {name}, namespace: {ns}}}
spec: {spec}
"
    )
}

async fn scenario(kubeconfig: &Path) {
    let run = Run::new(kubeconfig, "ssa").await;
    let mg = run.serve(&[]).await;
    let _hooks = run.register(&mg).await;
    let ns = run.ns("apps");
    run.create_namespace("apps", &[]).await.ok();
    let mode = |o: Option<kube::api::DynamicObject>| {
        o.map(|o| o.data["spec"]["mtls"]["mode"].clone())
            .unwrap_or_default()
    };

    // Server-side apply: STRICT goes in, the change to PERMISSIVE does not.
    let strict = peer_authentication(&ns, "default", "{mtls: {mode: STRICT}}");
    let out = run.apply(&strict, &["--server-side"]).await.ok();
    assert!(out.stdout.contains("serverside-applied"), "{out}");
    assert_eq!(
        mode(run.get("PeerAuthentication", &ns, "default").await),
        "STRICT"
    );
    let permissive = peer_authentication(&ns, "default", "{mtls: {mode: PERMISSIVE}}");
    run.apply(&permissive, &["--server-side"])
        .await
        .refused_by("pa-permissive-mtls");
    assert_eq!(
        mode(run.get("PeerAuthentication", &ns, "default").await),
        "STRICT"
    );

    // The same through kube's client (another field manager, forced): 403 Forbidden.
    let patch: serde_json::Value = serde_saphyr::from_str(&permissive).expect("yaml");
    let err = run
        .api("PeerAuthentication", Some(&ns))
        .patch(
            "default",
            &PatchParams::apply("meshguard-e2e").force(),
            &Patch::Apply(&patch),
        )
        .await
        .expect_err("server-side apply of PERMISSIVE must be refused");
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status.message.contains("[pa-permissive-mtls]"),
                "{status:?}"
            );
        }
        other => panic!("expected the apiserver's refusal, got {other}"),
    }
    assert_eq!(
        mode(run.get("PeerAuthentication", &ns, "default").await),
        "STRICT"
    );

    // Applied without a mode: the mutation fills in STRICT.
    let unset = peer_authentication(&ns, "web", "{selector: {matchLabels: {app: web}}}");
    run.apply(&unset, &["--server-side"]).await.ok();
    assert_eq!(
        mode(run.get("PeerAuthentication", &ns, "web").await),
        "STRICT"
    );

    // Server-side dry run: warnings printed, nothing stored.
    let trailing = format!(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: api, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  rules:
  - from: [{{source: {{principals: [cluster.local/ns/{ns}/sa/web]}}}}]
    to: [{{operation: {{paths: [/api/]}}}}]
"
    );
    let out = run.apply(&trailing, &["--dry-run=server"]).await.ok();
    assert!(out.stdout.contains("(server dry run)"), "{out}");
    assert_eq!(
        out.warned(),
        pairs(&[(
            "ap-exact-path-trailing-slash",
            "spec.rules[0].to[0].operation.paths[0]"
        )]),
        "{out}"
    );
    assert!(run.get("AuthorizationPolicy", &ns, "api").await.is_none());
    // A dry run is judged like the real request: a violation is refused.
    let disabled = peer_authentication(
        &ns,
        "legacy",
        "{selector: {matchLabels: {app: legacy}}, mtls: {mode: DISABLE}}",
    );
    run.apply(&disabled, &["--dry-run=server"])
        .await
        .refused_by("pa-disabled-mtls");
    run.apply(&permissive, &["--server-side", "--dry-run=server"])
        .await
        .refused_by("pa-permissive-mtls");
    assert!(run.get("PeerAuthentication", &ns, "legacy").await.is_none());
    assert_eq!(
        run.names("PeerAuthentication", &ns).await,
        ["default", "web"]
    );
}
