//! Scenario 2: objects that existed before meshguard was registered. A namespace without an
//! injection label and a Deployment on the `default` ServiceAccount (its ReplicaSet and Pod
//! made by the controllers) are created first; then meshguard is started and registered.
//!
//! What the cluster shows: day-2 operations on the non-compliant Deployment go through — a
//! `kubectl rollout restart`, a `kubectl scale` (the `scale` subresource, and the ReplicaSet
//! update the Deployment controller makes for it), a relabel of the Deployment — with the
//! violations they already had as warnings; a relabel of the namespace, which the mutation
//! also labels for injection; while a change that adds a new bypass
//! (`traffic.sidecar.istio.io/excludeInboundPorts`) is refused and not stored.

use crate::harness::{self, Run, PATIENCE};
use std::path::Path;

pub fn run(kubeconfig: &Path) {
    harness::block_on(scenario(kubeconfig));
}

async fn scenario(kubeconfig: &Path) {
    let run = Run::new(kubeconfig, "existing").await;
    let ns = run.ns("legacy");

    // Before meshguard: nothing labels the namespace, nothing checks the Deployment.
    run.create_namespace("legacy", &[]).await.ok();
    let deployment = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: legacy, namespace: {ns}, labels: {{app: legacy}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: legacy}}}}
  template:
    metadata: {{labels: {{app: legacy}}}}
    spec:
      containers: [{{name: app, image: nginx:1.25}}]
"
    );
    run.apply(&deployment, &[]).await.ok();
    run.step("wait for the ReplicaSet's Pod");
    harness::eventually("the pre-existing Deployment's Pod", PATIENCE, || async {
        let pods = run.names("Pod", &ns).await;
        (pods.len() == 1)
            .then_some(())
            .ok_or(format!("pods: {pods:?}"))
    })
    .await;
    let old_sets = run.names("ReplicaSet", &ns).await;
    assert_eq!(old_sets.len(), 1, "{old_sets:?}");
    assert!(!run
        .namespace_labels(&ns)
        .await
        .contains_key("istio-injection"));

    let mg = run.serve(&[]).await;
    let _hooks = run.register(&mg).await;
    let known = |out: &harness::Kubectl| {
        let rules: Vec<String> = out.warned().into_iter().map(|(r, _)| r).collect();
        for rule in ["wl-default-service-account", "wl-namespace-not-injected"] {
            assert!(
                rules.contains(&rule.to_owned()),
                "the existing [{rule}] violation should come back as a warning:\n{out}"
            );
        }
    };

    // A rollout restart is an UPDATE of the pod template: allowed, the old violations warned.
    // The Deployment controller's new ReplicaSet and the ReplicaSet controller's Pods are
    // CREATEs by controllers for their owner: the template findings are the owner's, so they
    // are warnings and the rollout really happens.
    let out = run
        .kubectl(&["-n", &ns, "rollout", "restart", "deployment/legacy"])
        .await
        .ok();
    known(&out);
    let d = run
        .get("Deployment", &ns, "legacy")
        .await
        .expect("deployment");
    assert!(
        d.data["spec"]["template"]["metadata"]["annotations"]
            .get("kubectl.kubernetes.io/restartedAt")
            .is_some(),
        "restart not stored: {:#}",
        d.data["spec"]["template"]
    );
    run.step("wait for the restart's new ReplicaSet");
    harness::eventually("the rollout's new ReplicaSet", PATIENCE, || async {
        let sets = run.names("ReplicaSet", &ns).await;
        (sets.len() == 2)
            .then_some(())
            .ok_or(format!("ReplicaSets: {sets:?}"))
    })
    .await;

    // A scale goes through the scale subresource, which meshguard does not judge; the
    // Deployment controller then resizes a ReplicaSet (an UPDATE with its old violations) and
    // the ReplicaSet controller creates the Pods.
    run.kubectl(&["-n", &ns, "scale", "deployment/legacy", "--replicas=3"])
        .await
        .ok();
    let d = run
        .get("Deployment", &ns, "legacy")
        .await
        .expect("deployment");
    assert_eq!(d.data["spec"]["replicas"], 3);
    run.step("wait for the Deployment controller to resize a ReplicaSet");
    harness::eventually(
        "a ReplicaSet of the scaled Deployment resized",
        PATIENCE,
        || async {
            let sets = run
                .api("ReplicaSet", Some(&ns))
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let sizes: Vec<_> = sets
                .items
                .iter()
                .map(|rs| rs.data["spec"]["replicas"].as_i64().unwrap_or(0))
                .collect();
            (sizes.iter().sum::<i64>() >= 3)
                .then_some(())
                .ok_or(format!("ReplicaSet sizes {sizes:?}"))
        },
    )
    .await;
    run.step("wait for the scaled-up Pods");
    harness::eventually("three Pods of the scaled Deployment", PATIENCE, || async {
        let pods = run.names("Pod", &ns).await;
        (pods.len() >= 3)
            .then_some(())
            .ok_or(format!("pods: {pods:?}"))
    })
    .await;

    // Relabelling the Deployment and the namespace: allowed, old violations warned.
    let out = run
        .kubectl(&["-n", &ns, "label", "deployment/legacy", "tier=web"])
        .await
        .ok();
    known(&out);
    let d = run
        .get("Deployment", &ns, "legacy")
        .await
        .expect("deployment");
    assert_eq!(d.metadata.labels.unwrap_or_default()["tier"], "web");
    // The namespace UPDATE also gets the injection label from the mutation (it labels
    // namespaces without one on CREATE and UPDATE): the relabel enrols the namespace.
    run.kubectl(&["label", "namespace", &ns, "team=payments"])
        .await
        .ok();
    let labels = run.namespace_labels(&ns).await;
    assert_eq!(labels["team"], "payments", "{labels:?}");
    assert_eq!(labels["istio-injection"], "enabled", "{labels:?}");

    // A new bypass is a new violation: refused, and nothing of it stored.
    run.kubectl(&[
        "-n",
        &ns,
        "patch",
        "deployment/legacy",
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"metadata":{"annotations":{"traffic.sidecar.istio.io/excludeInboundPorts":"8080"}}}}}"#,
    ])
    .await
    .refused_by("wl-traffic-bypass");
    let d = run
        .get("Deployment", &ns, "legacy")
        .await
        .expect("deployment");
    assert!(
        d.data["spec"]["template"]["metadata"]["annotations"]
            .get("traffic.sidecar.istio.io/excludeInboundPorts")
            .is_none(),
        "{:#}",
        d.data["spec"]["template"]
    );
}
