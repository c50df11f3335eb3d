//! Scenario: ways around the rules, tried with kubectl against a real kube-apiserver (issue 20;
//! `tests/integration/bypass.rs` covers every one of them over HTTPS).
//!
//! What the cluster shows:
//! - weakening by UPDATE: a namespace-wide STRICT PeerAuthentication patched to select one
//!   workload, and the allow-nothing AuthorizationPolicy patched to allow something, are refused
//!   (`pa-weakening-delete`, `ap-deny-all-delete`) and not stored;
//! - the finalizer-delete-edit sequence: a PeerAuthentication and an AuthorizationPolicy created
//!   with a finalizer and deleted (allowed: neither is a baseline) stay in the cluster with a
//!   `deletionTimestamp`; editing their spec (DISABLE, allow-all) is still refused with the rule
//!   id; taking the finalizer off is allowed and the objects go away;
//! - `kubectl debug` (the `pods/ephemeralcontainers` subresource, which kubectl PATCHes) adding a
//!   privileged (`--profile=sysadmin`), NET_ADMIN (`--profile=netadmin`) or UID 1337 (`--custom`)
//!   container to a pod as Istio's injector writes it is refused (`wl-net-admin`,
//!   `wl-proxy-uid`) and no ephemeral container is stored; the default profile is allowed;
//! - an EnvoyFilter removing the RBAC filter is refused (`ef-security-filter`), a Lua filter
//!   before the router is stored.

use crate::harness::{self, Run};
use std::path::Path;

pub fn run(kubeconfig: &Path) {
    harness::block_on(scenario(kubeconfig));
}

/// A pod as Istio's injector writes it (the shape of the captured injected review), so that it
/// is admitted without an injector in the cluster.
fn injected_pod(ns: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: {ns}
  labels: {{app: web}}
  annotations:
    sidecar.istio.io/status: '{{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["istio-envoy"],"imagePullSecrets":null,"revision":"default"}}'
spec:
  serviceAccountName: web
  initContainers:
  - name: istio-init
    image: docker.io/istio/proxyv2:1.24.0
    args: [istio-iptables, "-p", "15001", "-z", "15006", "-u", "1337", "-m", REDIRECT, "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020"]
    securityContext:
      capabilities: {{add: [NET_ADMIN, NET_RAW], drop: [ALL]}}
      runAsUser: 0
      runAsNonRoot: false
  containers:
  - name: web
    image: nginx:1.27
  - name: istio-proxy
    image: docker.io/istio/proxyv2:1.24.0
    args: [proxy, sidecar, --domain, $(POD_NAMESPACE).svc.cluster.local]
    securityContext: {{runAsUser: 1337, runAsGroup: 1337, runAsNonRoot: true}}
"#
    )
}

async fn scenario(kubeconfig: &Path) {
    let run = Run::new(kubeconfig, "bypass").await;
    let mg = run.serve(&[]).await;
    let _hooks = run.register(&mg).await;
    run.create_namespace("shop", &[("istio-injection", "enabled")])
        .await
        .ok();
    let ns = run.ns("shop");
    run.kubectl(&["-n", &ns, "create", "serviceaccount", "web"])
        .await
        .ok();

    // Weakening by UPDATE.
    run.apply(
        &format!(
            "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: {ns}}}
spec: {{mtls: {{mode: STRICT}}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-all, namespace: {ns}}}
spec: {{}}
"
        ),
        &[],
    )
    .await
    .ok();
    run.kubectl(&[
        "-n",
        &ns,
        "patch",
        "peerauthentication/default",
        "--type=merge",
        "-p",
        r#"{"spec":{"selector":{"matchLabels":{"app":"legacy"}}}}"#,
    ])
    .await
    .refused_by("pa-weakening-delete");
    run.kubectl(&[
        "-n",
        &ns,
        "patch",
        "authorizationpolicy/deny-all",
        "--type=merge",
        "-p",
        r#"{"spec":{"rules":[{"from":[{"source":{"namespaces":["shop"]}}]}]}}"#,
    ])
    .await
    .refused_by("ap-deny-all-delete");
    let pa = run
        .get("PeerAuthentication", &ns, "default")
        .await
        .expect("pa");
    assert!(pa.data["spec"].get("selector").is_none(), "{:#}", pa.data);

    // The finalizer-delete-edit sequence.
    run.apply(
        &format!(
            "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: web, namespace: {ns}, finalizers: [e2e.meshguard.io/hold]}}
spec: {{selector: {{matchLabels: {{app: web}}}}, mtls: {{mode: STRICT}}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: web, namespace: {ns}, finalizers: [e2e.meshguard.io/hold]}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  rules: [{{from: [{{source: {{principals: [cluster.local/ns/{ns}/sa/web]}}}}]}}]
"
        ),
        &[],
    )
    .await
    .ok();
    for kind in ["peerauthentication/web", "authorizationpolicy/web"] {
        run.kubectl(&["-n", &ns, "delete", kind, "--wait=false"])
            .await
            .ok();
    }
    for kind in ["PeerAuthentication", "AuthorizationPolicy"] {
        let o = run.get(kind, &ns, "web").await.expect("still there");
        assert!(
            o.metadata.deletion_timestamp.is_some(),
            "{kind} is being deleted"
        );
    }
    run.kubectl(&[
        "-n",
        &ns,
        "patch",
        "peerauthentication/web",
        "--type=merge",
        "-p",
        r#"{"spec":{"mtls":{"mode":"DISABLE"}}}"#,
    ])
    .await
    .refused_by("pa-disabled-mtls");
    run.kubectl(&[
        "-n",
        &ns,
        "patch",
        "authorizationpolicy/web",
        "--type=merge",
        "-p",
        r#"{"spec":{"rules":[{}]}}"#,
    ])
    .await
    .refused_by("ap-allow-all");
    let pa = run.get("PeerAuthentication", &ns, "web").await.expect("pa");
    assert_eq!(pa.data["spec"]["mtls"]["mode"], "STRICT");
    for kind in ["peerauthentication/web", "authorizationpolicy/web"] {
        run.kubectl(&[
            "-n",
            &ns,
            "patch",
            kind,
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ])
        .await
        .ok();
    }
    for kind in ["PeerAuthentication", "AuthorizationPolicy"] {
        harness::eventually(
            &format!("{kind} gone once its finalizer is off"),
            harness::PATIENCE,
            || async {
                match run.get(kind, &ns, "web").await {
                    None => Ok(()),
                    Some(_) => Err("still there".to_owned()),
                }
            },
        )
        .await;
    }

    // kubectl debug: the pods/ephemeralcontainers subresource.
    run.apply(&injected_pod(&ns), &[]).await.ok();
    let custom = run.dir.path().join("uid-1337.json");
    std::fs::write(&custom, r#"{"securityContext": {"runAsUser": 1337}}"#).expect("custom");
    let custom_arg = format!("--custom={}", custom.display());
    for (flags, rule) in [
        (vec!["--profile=sysadmin"], "wl-net-admin"),
        (vec!["--profile=netadmin"], "wl-net-admin"),
        (
            vec!["--profile=general", custom_arg.as_str()],
            "wl-proxy-uid",
        ),
    ] {
        let mut args = vec!["-n", &ns, "debug", "pod/web", "--image=busybox:1.36"];
        args.extend(flags);
        run.kubectl(&args).await.refused_by(rule);
    }
    let pod = run.get("Pod", &ns, "web").await.expect("pod");
    assert!(
        pod.data["spec"].get("ephemeralContainers").is_none(),
        "{:#}",
        pod.data["spec"]
    );
    run.kubectl(&[
        "-n",
        &ns,
        "debug",
        "pod/web",
        "--image=busybox:1.36",
        "--profile=legacy",
    ])
    .await
    .ok();
    let pod = run.get("Pod", &ns, "web").await.expect("pod");
    assert_eq!(
        pod.data["spec"]["ephemeralContainers"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{:#}",
        pod.data["spec"]
    );

    // EnvoyFilter.
    let envoy_filter = |name: &str, patch: &str| {
        format!(
            "apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {{name: {name}, namespace: {ns}}}
spec:
  workloadSelector: {{labels: {{app: web}}}}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter: {{name: {patch}}}
"
        )
    };
    run.apply(
        &(envoy_filter("no-rbac", "envoy.filters.http.rbac") + "    patch: {operation: REMOVE}\n"),
        &[],
    )
    .await
    .refused_by("ef-security-filter");
    run.apply(
        &(envoy_filter("lua", "envoy.filters.http.router")
            + "    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.lua
        typed_config:
          '@type': type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
          inline_code: \"function envoy_on_response(h) h:headers():add('x-mesh', '1') end\"
"),
        &[],
    )
    .await
    .ok();
}
