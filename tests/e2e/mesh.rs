//! Scenario 7a: the mesh as installed. Istio-shaped injector MutatingWebhookConfigurations — the
//! default revision, revision `canary` and the revision tag `prod-stable` → `canary`, with the
//! selectors of Istio's chart (`istio-discovery/templates/mutatingwebhook.yaml`,
//! `revision-tags-mwc.yaml`) narrowed to this run's namespaces, `failurePolicy: Ignore` and a
//! URL to a closed local port, so they never block and never inject — plus Istio's MeshConfig
//! (trust domain `corp.example`) and injector ConfigMaps in a namespace of the run, which
//! meshguard is told is the Istio namespace.
//!
//! What the cluster shows: a namespace labelled `istio.io/rev=prod-stable` (a tag that exists) is
//! admitted, one labelled `istio.io/rev=nope` is refused by `ns-unknown-revision`; a Pod in the
//! tag's namespace reaches validation without the sidecar its injector should have added (the
//! injector's port is closed, `Ignore` lets it through) and is refused by `wl-missing-sidecar`,
//! naming the tag's webhook; principals of `corp.example` raise no foreign-trust-domain warning
//! while another domain does; and after the MeshConfig's trust domain is changed in the cluster,
//! meshguard's verdicts follow it.
//!
//! The injector configurations are cluster-wide and every meshguard reads them, so this scenario
//! runs alone (`main.rs` holds the cluster-wide lock for it).

use crate::harness::{self, Run, PATIENCE, RUN_LABEL};
use serde_json::{json, Value};
use std::path::Path;

pub fn run(kubeconfig: &Path) {
    harness::block_on(scenario(kubeconfig));
}

fn expr(key: &str, op: &str, values: &[&str]) -> Value {
    if values.is_empty() {
        json!({"key": key, "operator": op})
    } else {
        json!({"key": key, "operator": op, "values": values})
    }
}

/// One injector webhook as Istio's chart writes it, for this run's namespaces only, calling a
/// closed port and failing open.
fn webhook(run: &Run, url: &str, prefix: &str, mut ns: Vec<Value>, obj: Vec<Value>) -> Value {
    ns.push(expr(RUN_LABEL, "In", &[&run.id]));
    json!({
        "name": format!("{prefix}sidecar-injector.istio.io"),
        "clientConfig": {"url": url},
        "sideEffects": "None",
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
        "failurePolicy": "Ignore",
        "timeoutSeconds": 2,
        "reinvocationPolicy": "Never",
        "admissionReviewVersions": ["v1"],
        "namespaceSelector": {"matchExpressions": ns},
        "objectSelector": {"matchExpressions": obj},
    })
}

/// The MutatingWebhookConfiguration of revision `revision` (or of tag `tag` → `revision`).
fn injector(run: &Run, url: &str, revision: &str, tag: Option<&str>) -> Value {
    let served = tag.unwrap_or(revision);
    let inject = "sidecar.istio.io/inject";
    let mut hooks = vec![
        webhook(
            run,
            url,
            "rev.namespace.",
            vec![
                expr("istio.io/rev", "In", &[served]),
                expr("istio-injection", "DoesNotExist", &[]),
            ],
            vec![expr(inject, "NotIn", &["false"])],
        ),
        webhook(
            run,
            url,
            "rev.object.",
            vec![
                expr("istio.io/rev", "DoesNotExist", &[]),
                expr("istio-injection", "DoesNotExist", &[]),
            ],
            vec![
                expr(inject, "NotIn", &["false"]),
                expr("istio.io/rev", "In", &[served]),
            ],
        ),
    ];
    if served == "default" {
        hooks.push(webhook(
            run,
            url,
            "namespace.",
            vec![expr("istio-injection", "In", &["enabled"])],
            vec![expr(inject, "NotIn", &["false"])],
        ));
        hooks.push(webhook(
            run,
            url,
            "object.",
            vec![
                expr("istio-injection", "DoesNotExist", &[]),
                expr("istio.io/rev", "DoesNotExist", &[]),
            ],
            vec![
                expr(inject, "In", &["true"]),
                expr("istio.io/rev", "DoesNotExist", &[]),
            ],
        ));
    }
    let (name, labels) = match tag {
        Some(t) => (
            format!("{}-istio-revision-tag-{t}", run.id),
            json!({"app": "sidecar-injector", "istio.io/rev": revision, "istio.io/tag": t}),
        ),
        None => (
            format!("{}-istio-sidecar-injector-{revision}", run.id),
            json!({"app": "sidecar-injector", "istio.io/rev": revision}),
        ),
    };
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name, "labels": labels}, "webhooks": hooks})
}

/// Istio's ConfigMaps in the Istio namespace: the MeshConfig and the two injectors'.
fn config_maps(istio_ns: &str, trust_domain: &str) -> String {
    let config = "policy: enabled\nneverInjectSelector: []\nalwaysInjectSelector: []\n";
    let values = |rev: &str, tag: &str| {
        json!({"global": {"hub": "docker.io/istio", "tag": tag, "proxy": {"image": "proxyv2"}},
            "revision": rev})
        .to_string()
    };
    let docs = [
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "istio", "namespace": istio_ns},
            "data": {"mesh": format!("trustDomain: {trust_domain}\nrootNamespace: {istio_ns}\n")}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "istio-sidecar-injector", "namespace": istio_ns},
            "data": {"config": config, "values": values("", "1.26.2")}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "istio-sidecar-injector-canary", "namespace": istio_ns},
            "data": {"config": config, "values": values("canary", "1.27.1")}}),
    ];
    yaml_stream(&docs)
}

/// Documents as one YAML stream (kubectl reads a stream of JSON documents only without `---`).
fn yaml_stream(docs: &[Value]) -> String {
    docs.iter()
        .map(|d| serde_saphyr::to_string(d).expect("yaml"))
        .collect::<Vec<_>>()
        .join("---\n")
}

fn allow_from(ns: &str, name: &str, principal: &str) -> String {
    json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
            "rules": [{"from": [{"source": {"principals": [principal]}}]}]}})
    .to_string()
}

async fn scenario(kubeconfig: &Path) {
    let run = Run::new(kubeconfig, "mesh").await;
    let istio_ns = run.ns("istio");
    run.create_namespace("istio", &[]).await.ok();

    // A closed local port: the injectors are called and fail; Ignore lets pods through.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let url = format!("https://{closed}/inject");
    let injectors = [
        injector(&run, &url, "default", None),
        injector(&run, &url, "canary", None),
        injector(&run, &url, "canary", Some("prod-stable")),
    ];
    run.apply_cluster_scoped(&yaml_stream(&injectors))
        .await
        .ok();
    run.apply(&config_maps(&istio_ns, "corp.example"), &[])
        .await
        .ok();

    // meshguard reads them at start (readiness waits for the mesh watch) and registers.
    let mg = run.serve(&["--istio-namespace", &istio_ns]).await;
    let _hooks = run.register(&mg).await;

    // A tag that exists is admitted; a revision nobody serves is refused, naming what exists.
    run.create_namespace("shop", &[("istio.io/rev", "prod-stable")])
        .await
        .ok();
    let refused = run
        .create_namespace("nope", &[("istio.io/rev", "nope")])
        .await
        .refused_by("ns-unknown-revision");
    assert!(
        refused
            .stderr
            .contains("revisions: canary, default; tags: prod-stable → canary"),
        "{refused}"
    );

    // The tag's injector selects a pod of shop; it failed open, so the pod has no sidecar.
    let shop = run.ns("shop");
    run.apply(
        &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web", "namespace": shop}})
            .to_string(),
        &[],
    )
    .await
    .ok();
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": shop, "labels": {"app": "web"}},
        "spec": {"serviceAccountName": "web", "containers": [{"name": "web", "image": "nginx:1.25"}]}})
    .to_string();
    let refused = run.apply(&pod, &[]).await.refused_by("wl-missing-sidecar");
    assert!(
        refused.stderr.contains(&format!(
            "webhook \"rev.namespace.sidecar-injector.istio.io\" of MutatingWebhookConfiguration \"{}-istio-revision-tag-prod-stable\" (tag prod-stable → revision canary) selects the pod",
            run.id
        )),
        "{refused}"
    );

    // The trust domain is the mesh's: corp.example (and cluster.local, Istio's pointer to it)
    // are local, another domain is foreign.
    let local = run
        .apply(
            &allow_from(&shop, "from-legacy", "corp.example/ns/legacy/sa/api"),
            &["--dry-run=server"],
        )
        .await
        .ok();
    assert!(
        !local
            .warned()
            .iter()
            .any(|(r, _)| r == "ap-foreign-trust-domain"),
        "{local}"
    );
    let foreign = run
        .apply(
            &allow_from(&shop, "from-partner", "partner.example/ns/legacy/sa/api"),
            &["--dry-run=server"],
        )
        .await
        .ok();
    assert!(
        foreign.warnings().iter().any(|w| w.starts_with(
            "[ap-foreign-trust-domain] spec.rules[0].from[0].source.principals[0]: trust domain \"partner.example\" is neither the mesh's \"corp.example\""
        )),
        "{foreign}"
    );

    // The mesh moves to partner.example: the watch brings it to the verdicts.
    run.apply(&config_maps(&istio_ns, "partner.example"), &[])
        .await
        .ok();
    harness::eventually(
        "meshguard follows the new trust domain",
        PATIENCE,
        || async {
            let out = run
                .apply(
                    &allow_from(&shop, "from-partner", "partner.example/ns/legacy/sa/api"),
                    &["--dry-run=server"],
                )
                .await;
            match out
                .warned()
                .iter()
                .any(|(r, _)| r == "ap-foreign-trust-domain")
            {
                false if out.success() => Ok(()),
                _ => Err(out.to_string()),
            }
        },
    )
    .await;
    // The log is written by a non-blocking writer: the line may land a little after the verdict.
    harness::eventually(
        "meshguard logs the new mesh context",
        std::time::Duration::from_secs(15),
        || async {
            let log = std::fs::read_to_string(&mg.log).unwrap_or_default();
            if log.contains("trust domain: partner.example (ConfigMap") {
                Ok(())
            } else {
                Err(log)
            }
        },
    )
    .await;
}
