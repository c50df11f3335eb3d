//! Scenario 1: the tutorial (tests/fixtures/tutorial), applied with kubectl the way a user
//! would, in the order its README gives, into a run-private `production` namespace and a
//! run-private root namespace (meshguard's `rootNamespace`, standing in for `istio-system`).
//!
//! What the cluster shows: the namespace gets `istio-injection=enabled` from the mutation (the
//! root namespace, exempt, does not); the Deployments are refused until their ServiceAccounts
//! exist, with the `kubectl create serviceaccount` line to run, then stored with the
//! `serviceAccountName` the mutation set; the ReplicaSets' Pods are refused (no sidecar: no
//! injector runs here) and the refusals are the ReplicaSets' FailedCreate events; every policy
//! is admitted, with exactly the warnings meshguard's rules give (trailing-slash paths, quoted
//! condition keys) and the unnamed Service ports warned; weakening changes are refused.

use crate::harness::{self, pairs, tutorial, Run, PATIENCE};
use std::path::Path;

pub fn run(kubeconfig: &Path) {
    harness::block_on(scenario(kubeconfig));
}

async fn scenario(kubeconfig: &Path) {
    let run = Run::new(kubeconfig, "tutorial").await;
    let prod = run.ns("production");
    let root = run.ns("istio-system");
    let policy = run.dir.path().join("policy.yaml");
    std::fs::write(&policy, format!("rootNamespace: {root}\n")).expect("policy file");
    let mg = run
        .serve(&["--config", policy.to_str().expect("utf-8 path")])
        .await;
    let _hooks = run.register(&mg).await;
    let renames = [
        ("production", prod.as_str()),
        ("istio-system", root.as_str()),
    ];
    let manifest = |file: &str| tutorial(file, &renames);

    // The namespaces: the mutation labels production for injection, not the root namespace.
    run.create_namespace("production", &[]).await.ok();
    run.create_namespace("istio-system", &[]).await.ok();
    let labels = run.namespace_labels(&prod).await;
    assert_eq!(
        labels.get("istio-injection").map(String::as_str),
        Some("enabled"),
        "{labels:?}"
    );
    let labels = run.namespace_labels(&root).await;
    assert!(!labels.contains_key("istio-injection"), "{labels:?}");

    // The apps before their ServiceAccounts: the Deployments are refused with the command
    // that fixes it, the Services stored with the port-naming warning.
    let out = run
        .apply(&manifest("test-apps.yaml"), &[])
        .await
        .refused_by("wl-default-service-account");
    for app in ["frontend", "backend"] {
        let fix = format!("kubectl -n {prod} create serviceaccount {app}");
        assert!(out.stderr.contains(&fix), "no `{fix}` in:\n{out}");
        assert!(
            out.stdout.contains(&format!("service/{app} created")),
            "{out}"
        );
    }
    assert!(
        out.warned()
            .contains(&("svc-port-protocol".into(), "spec.ports[0]".into())),
        "no port-naming warning:\n{out}"
    );
    assert!(run.names("Deployment", &prod).await.is_empty());

    // With the ServiceAccounts, the same manifest goes in and the mutation names them.
    run.apply(&manifest("service-accounts.yaml"), &[])
        .await
        .ok();
    let accounts = run.names("ServiceAccount", &prod).await;
    for sa in ["admin", "backend", "frontend"] {
        assert!(accounts.contains(&sa.to_owned()), "{accounts:?}");
    }
    run.apply(&manifest("test-apps.yaml"), &[]).await.ok();
    for app in ["frontend", "backend"] {
        let d = run
            .get("Deployment", &prod, app)
            .await
            .expect("deployment stored");
        assert_eq!(
            d.data["spec"]["template"]["spec"]["serviceAccountName"], app,
            "deployment {app} as stored: {:#}",
            d.data["spec"]["template"]["spec"]
        );
    }

    // The ReplicaSets exist, their Pods do not: no injector ran, so meshguard refuses them
    // and the ReplicaSet controller reports it.
    run.step("wait for FailedCreate events of both ReplicaSets");
    for app in ["frontend", "backend"] {
        let prefix = format!("{app}-");
        harness::eventually(
            &format!("a FailedCreate event naming wl-missing-sidecar on ReplicaSet {app}-…"),
            PATIENCE,
            || async {
                let events = run.events(&prod, "FailedCreate").await;
                events
                    .iter()
                    .find(|e| {
                        e.involved_object.kind.as_deref() == Some("ReplicaSet")
                            && e.involved_object
                                .name
                                .as_deref()
                                .is_some_and(|n| n.starts_with(&prefix))
                            && e.message.as_deref().is_some_and(|m| {
                                m.contains("denied the request")
                                    && m.contains("[wl-missing-sidecar]")
                            })
                    })
                    .map(|_| ())
                    .ok_or_else(|| {
                        format!(
                            "{} FailedCreate events: {:?}",
                            events.len(),
                            events.iter().map(|e| &e.message).collect::<Vec<_>>()
                        )
                    })
            },
        )
        .await;
    }
    assert!(run.names("Pod", &prod).await.is_empty());

    // Every policy of the tutorial is admitted, with exactly these warnings.
    let policies: [(&str, &[(&str, &str)]); 8] = [
        ("peer-auth-strict.yaml", &[]),
        ("backend-peer-auth.yaml", &[]),
        ("mesh-peer-auth.yaml", &[]),
        ("destination-rule-mtls.yaml", &[]),
        ("authz-deny-all.yaml", &[]),
        (
            "authz-frontend-backend.yaml",
            &[("ap-quoted-condition-key", "spec.rules[0].when[0].key")],
        ),
        (
            "authz-rbac.yaml",
            &[
                (
                    "ap-exact-path-trailing-slash",
                    "spec.rules[1].to[0].operation.paths[0]",
                ),
                (
                    "ap-exact-path-trailing-slash",
                    "spec.rules[1].to[0].operation.paths[1]",
                ),
            ],
        ),
        (
            "jwt-auth.yaml",
            &[
                ("ap-quoted-condition-key", "spec.rules[0].when[0].key"),
                ("ap-quoted-condition-key", "spec.rules[0].when[1].key"),
            ],
        ),
    ];
    for (file, warnings) in policies {
        let out = run.apply(&manifest(file), &[]).await.ok();
        assert_eq!(out.warned(), pairs(warnings), "{file}:\n{out}");
    }
    assert_eq!(
        run.names("PeerAuthentication", &prod).await,
        ["backend-strict", "default-strict"]
    );
    assert_eq!(
        run.names("PeerAuthentication", &root).await,
        ["mesh-strict"]
    );
    assert_eq!(
        run.names("AuthorizationPolicy", &prod).await,
        [
            "backend-rbac",
            "deny-all",
            "frontend-external",
            "frontend-to-backend",
            "jwt-authz"
        ]
    );
    assert_eq!(
        run.names("RequestAuthentication", &prod).await,
        ["jwt-auth"]
    );
    assert_eq!(
        run.names("DestinationRule", &prod).await,
        ["backend-mtls", "default-mtls"]
    );

    // What would weaken the mesh is refused; what does not, passes.
    run.kubectl(&[
        "-n",
        &prod,
        "patch",
        "peerauthentication",
        "default-strict",
        "--type=merge",
        "-p",
        r#"{"spec":{"mtls":{"mode":"PERMISSIVE"}}}"#,
    ])
    .await
    .refused_by("pa-permissive-mtls");
    let pa = run
        .get("PeerAuthentication", &prod, "default-strict")
        .await
        .expect("still stored");
    assert_eq!(pa.data["spec"]["mtls"]["mode"], "STRICT");
    run.kubectl(&[
        "-n",
        &prod,
        "delete",
        "peerauthentication",
        "default-strict",
    ])
    .await
    .refused_by("pa-weakening-delete");
    run.kubectl(&["-n", &root, "delete", "peerauthentication", "mesh-strict"])
        .await
        .refused_by("pa-weakening-delete");
    run.kubectl(&["-n", &prod, "delete", "authorizationpolicy", "deny-all"])
        .await
        .refused_by("ap-deny-all-delete");
    run.kubectl(&["label", "namespace", &prod, "istio-injection-"])
        .await
        .refused_by("ns-injection-missing");
    // A workload-level policy guards one workload only; deleting it is allowed.
    run.kubectl(&[
        "-n",
        &prod,
        "delete",
        "peerauthentication",
        "backend-strict",
    ])
    .await
    .ok();
    assert_eq!(
        run.names("PeerAuthentication", &prod).await,
        ["default-strict"]
    );
    assert_eq!(
        run.names("PeerAuthentication", &root).await,
        ["mesh-strict"]
    );
    assert_eq!(
        run.names("AuthorizationPolicy", &prod).await.len(),
        5,
        "deny-all is still there"
    );
}
