//! Scenario 4: deleting a namespace that holds a namespace-wide STRICT PeerAuthentication and
//! an allow-nothing AuthorizationPolicy completes, although meshguard refuses deleting either
//! of them by hand (`pa-weakening-delete`, `ap-deny-all-delete`): the namespace controller's
//! DELETEs are let through as a teardown.
//!
//! Run twice: on a cluster whose kube-controller-manager acts as per-controller service
//! accounts (`--use-service-account-credentials`, kubeadm's default: the namespace controller
//! is `system:serviceaccount:kube-system:namespace-controller`), and on one where it acts as
//! `system:kube-controller-manager` (`--use-service-account-credentials=false`). meshguard
//! recognises the second only by the namespace being Terminating.

use crate::harness::{self, Run};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use std::path::Path;
use std::time::Duration;

/// How long the namespace may take to go away. Without meshguard it takes a few seconds; a
/// namespace stuck on a refused DELETE never goes.
const TEARDOWN: Duration = Duration::from_secs(30);

/// The identity kube-controller-manager uses without `--use-service-account-credentials`.
const KCM_USER: &str = "system:kube-controller-manager";

pub fn run(kubeconfig: &Path, identity: &str) {
    harness::block_on(scenario(kubeconfig, identity));
}

async fn scenario(kubeconfig: &Path, identity: &str) {
    let shared_identity = identity.contains(KCM_USER);
    let run = Run::new(
        kubeconfig,
        if shared_identity {
            "teardown-kcm"
        } else {
            "teardown-sa"
        },
    )
    .await;
    if shared_identity {
        grant_controller_manager(&run).await;
    }
    let mg = run.serve(&[]).await;
    let _hooks = run.register(&mg).await;
    let ns = run.ns("doomed");
    run.create_namespace("doomed", &[]).await.ok();
    let policies = format!(
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
    );
    run.apply(&policies, &[]).await.ok();

    // Deleting either by hand is refused, also as the controller manager's own identity.
    run.kubectl(&["-n", &ns, "delete", "peerauthentication", "default"])
        .await
        .refused_by("pa-weakening-delete");
    if shared_identity {
        let as_kcm = format!("--as={KCM_USER}");
        run.kubectl(&[
            "-n",
            &ns,
            "delete",
            "authorizationpolicy",
            "deny-all",
            &as_kcm,
        ])
        .await
        .refused_by("ap-deny-all-delete");
    } else {
        run.kubectl(&["-n", &ns, "delete", "authorizationpolicy", "deny-all"])
            .await
            .refused_by("ap-deny-all-delete");
    }

    // The namespace goes, policies and all.
    run.kubectl(&["delete", "namespace", &ns, "--wait=false"])
        .await
        .ok();
    run.step(format!("wait until namespace {ns} is gone ({identity})"));
    let namespaces: Api<Namespace> = Api::all(run.client.clone());
    harness::eventually(
        &format!("namespace {ns} deleted {identity}"),
        TEARDOWN,
        || async {
            match namespaces.get_opt(&ns).await {
                Ok(None) => Ok(()),
                Ok(Some(n)) => Err(format!(
                    "still there; conditions: {}",
                    serde_json::to_string(&n.status.and_then(|s| s.conditions)).unwrap_or_default()
                )),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await;
    // meshguard saw both DELETEs and let them through as a teardown.
    for kind in ["PeerAuthentication", "AuthorizationPolicy"] {
        let exempt = mg.metric_sum(
            "meshguard_admission_requests_total",
            &[
                ("webhook", "validate"),
                ("kind", kind),
                ("operation", "DELETE"),
                ("outcome", "exempt"),
            ],
        );
        assert!(
            exempt >= 1.0,
            "no exempt {kind} DELETE counted ({identity})"
        );
    }
}

/// Without `--use-service-account-credentials`, kube-controller-manager needs the rights of all
/// its controllers under its own name (the per-controller roles are bound to the service
/// accounts only). Clusters run that way bind it; so does the suite, once, on that cluster.
async fn grant_controller_manager(run: &Run) {
    let probe = [
        "auth",
        "can-i",
        "deletecollection",
        "pods",
        "--all-namespaces",
    ];
    let as_kcm = format!("--as={KCM_USER}");
    let mut args = probe.to_vec();
    args.push(&as_kcm);
    if run.kubectl(&args).await.stdout.trim() == "yes" {
        return;
    }
    let out = run
        .kubectl(&[
            "create",
            "clusterrolebinding",
            "meshguard-e2e-kube-controller-manager",
            "--clusterrole=cluster-admin",
            &format!("--user={KCM_USER}"),
        ])
        .await;
    assert!(
        out.success() || out.stderr.contains("AlreadyExists"),
        "cannot let {KCM_USER} act for its controllers:\n{out}"
    );
}
