//! Effective mTLS: the mesh → namespace → workload → port composition, table-tested against
//! Istio's semantics (pilot `ComposePeerAuthentication`).

use kube::core::DynamicObject;
use meshguard::model::MtlsMode;
use meshguard::mtls::{render_table, Level, PeerPolicy, PolicyIndex, Workload};
use meshguard::resource::Kind;
use serde_json::{json, Value};

fn pa(ns: &str, name: &str, created: Option<&str>, spec: Value) -> PeerPolicy {
    let mut meta = json!({"name": name, "namespace": ns});
    if let Some(c) = created {
        meta["creationTimestamp"] = json!(c);
    }
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": meta, "spec": spec
    }))
    .expect("PeerAuthentication parses");
    PeerPolicy::from_object(&obj)
}

fn deployment(ns: &str, name: &str, app: &str, ports: &[u32]) -> Workload {
    let ports: Vec<Value> = ports.iter().map(|p| json!({"containerPort": p})).collect();
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"template": {"metadata": {"labels": {"app": app}},
                 "spec": {"containers": [{"name": "c", "image": "i", "ports": ports}]}}}
    }))
    .expect("Deployment parses");
    Workload::from_object(Kind::Deployment, &obj).expect("workload")
}

/// (port, mode, deciding policy as "ns/name", level)
type Expect<'a> = (Option<u32>, MtlsMode, Option<(&'a str, Level)>);

fn assert_rows(index: &PolicyIndex, w: &Workload, want: &[Expect<'_>]) {
    let rows = index.table([w]);
    let got: Vec<Expect<'_>> = rows
        .iter()
        .map(|r| {
            (
                r.port,
                r.effective.mode,
                r.effective.decided_by.as_ref().map(|d| {
                    let s: &str = Box::leak(format!("{}/{}", d.namespace, d.name).into_boxed_str());
                    (s, d.level)
                }),
            )
        })
        .collect();
    assert_eq!(got, want, "table:\n{}", render_table(&rows));
}

#[test]
fn mesh_strict_namespace_permissive_workload_port_disable() {
    let index = PolicyIndex::new(
        "istio-system",
        [
            pa(
                "istio-system",
                "mesh",
                None,
                json!({"mtls": {"mode": "STRICT"}}),
            ),
            pa("prod", "ns", None, json!({"mtls": {"mode": "PERMISSIVE"}})),
            pa(
                "prod",
                "web-metrics",
                None,
                json!({"selector": {"matchLabels": {"app": "web"}},
                       "portLevelMtls": {"9090": {"mode": "DISABLE"}, "8443": {"mode": "STRICT"}}}),
            ),
        ],
    );
    let web = deployment("prod", "web", "web", &[8080, 9090]);
    assert_rows(
        &index,
        &web,
        &[
            // 8080: workload policy UNSET, so the namespace's PERMISSIVE holds.
            (
                Some(8080),
                MtlsMode::Permissive,
                Some(("prod/ns", Level::Namespace)),
            ),
            // 8443: port-level, not declared by the containers, still listed.
            (
                Some(8443),
                MtlsMode::Strict,
                Some(("prod/web-metrics", Level::Port)),
            ),
            (
                Some(9090),
                MtlsMode::Disable,
                Some(("prod/web-metrics", Level::Port)),
            ),
        ],
    );
    // Another workload of the namespace only sees the namespace policy.
    let api = deployment("prod", "api", "api", &[8080]);
    assert_rows(
        &index,
        &api,
        &[(
            Some(8080),
            MtlsMode::Permissive,
            Some(("prod/ns", Level::Namespace)),
        )],
    );
    // A workload elsewhere gets the mesh's STRICT.
    let other = deployment("other", "x", "web", &[80]);
    assert_rows(
        &index,
        &other,
        &[(
            Some(80),
            MtlsMode::Strict,
            Some(("istio-system/mesh", Level::Mesh)),
        )],
    );
}

#[test]
fn unset_inherits_through_every_level() {
    let index = PolicyIndex::new(
        "istio-system",
        [
            pa(
                "istio-system",
                "mesh",
                None,
                json!({"mtls": {"mode": "STRICT"}}),
            ),
            pa("prod", "ns", None, json!({"mtls": {"mode": "UNSET"}})),
            pa(
                "prod",
                "wl",
                None,
                json!({"selector": {"matchLabels": {"app": "web"}}, "mtls": {},
                       "portLevelMtls": {"80": {"mode": "UNSET"}}}),
            ),
        ],
    );
    let web = deployment("prod", "web", "web", &[80]);
    assert_rows(
        &index,
        &web,
        &[(
            Some(80),
            MtlsMode::Strict,
            Some(("istio-system/mesh", Level::Mesh)),
        )],
    );

    // A mesh-level UNSET counts as PERMISSIVE; an UNSET port under a STRICT workload is STRICT.
    let index = PolicyIndex::new(
        "istio-system",
        [
            pa(
                "istio-system",
                "mesh",
                None,
                json!({"mtls": {"mode": "UNSET"}}),
            ),
            pa(
                "prod",
                "wl",
                None,
                json!({"selector": {"matchLabels": {"app": "web"}}, "mtls": {"mode": "STRICT"},
                       "portLevelMtls": {"80": {"mode": "UNSET"}}}),
            ),
        ],
    );
    assert_rows(
        &index,
        &web,
        &[(
            Some(80),
            MtlsMode::Strict,
            Some(("prod/wl", Level::Workload)),
        )],
    );
    let api = deployment("prod", "api", "api", &[80]);
    assert_rows(&index, &api, &[(Some(80), MtlsMode::Permissive, None)]);
}

#[test]
fn oldest_policy_wins_within_a_scope() {
    let older = pa(
        "prod",
        "zz-older",
        Some("2024-01-01T00:00:00Z"),
        json!({"mtls": {"mode": "PERMISSIVE"}}),
    );
    let newer = pa(
        "prod",
        "aa-newer",
        Some("2024-02-01T00:00:00Z"),
        json!({"mtls": {"mode": "STRICT"}}),
    );
    let web = deployment("prod", "web", "web", &[80]);
    for order in [
        [older.clone(), newer.clone()],
        [newer.clone(), older.clone()],
    ] {
        let index = PolicyIndex::new("istio-system", order);
        assert_rows(
            &index,
            &web,
            &[(
                Some(80),
                MtlsMode::Permissive,
                Some(("prod/zz-older", Level::Namespace)),
            )],
        );
    }
    // Same timestamp: the name breaks the tie. No timestamp (a manifest) counts as newest.
    let index = PolicyIndex::new(
        "istio-system",
        [
            pa(
                "prod",
                "b",
                Some("2024-01-01T00:00:00Z"),
                json!({"mtls": {"mode": "STRICT"}}),
            ),
            pa(
                "prod",
                "a",
                Some("2024-01-01T00:00:00Z"),
                json!({"mtls": {"mode": "DISABLE"}}),
            ),
            pa("prod", "0", None, json!({"mtls": {"mode": "PERMISSIVE"}})),
        ],
    );
    assert_rows(
        &index,
        &web,
        &[(
            Some(80),
            MtlsMode::Disable,
            Some(("prod/a", Level::Namespace)),
        )],
    );
    // Two workload-level policies selecting the same pods: the oldest wins too.
    let index = PolicyIndex::new(
        "istio-system",
        [
            pa(
                "prod",
                "w2",
                Some("2024-03-01T00:00:00Z"),
                json!({"selector": {"matchLabels": {"app": "web"}}, "mtls": {"mode": "DISABLE"}}),
            ),
            pa(
                "prod",
                "w1",
                Some("2024-01-01T00:00:00Z"),
                json!({"selector": {"matchLabels": {"app": "web"}}, "mtls": {"mode": "STRICT"}}),
            ),
        ],
    );
    assert_rows(
        &index,
        &web,
        &[(
            Some(80),
            MtlsMode::Strict,
            Some(("prod/w1", Level::Workload)),
        )],
    );
}

#[test]
fn workload_policies_in_the_root_namespace_are_ignored() {
    let index = PolicyIndex::new(
        "istio-system",
        [
            pa(
                "istio-system",
                "mesh",
                None,
                json!({"mtls": {"mode": "STRICT"}}),
            ),
            pa(
                "istio-system",
                "web-disable",
                Some("2020-01-01T00:00:00Z"),
                json!({"selector": {"matchLabels": {"app": "web"}}, "mtls": {"mode": "DISABLE"}}),
            ),
        ],
    );
    let web = deployment("prod", "web", "web", &[80]);
    assert_rows(
        &index,
        &web,
        &[(
            Some(80),
            MtlsMode::Strict,
            Some(("istio-system/mesh", Level::Mesh)),
        )],
    );
    // Not even for workloads in the root namespace itself.
    let gw = deployment("istio-system", "gw", "web", &[443]);
    assert_rows(
        &index,
        &gw,
        &[(
            Some(443),
            MtlsMode::Strict,
            Some(("istio-system/mesh", Level::Mesh)),
        )],
    );
    // Custom root namespace.
    let index = PolicyIndex::new(
        "mesh-root",
        [pa(
            "istio-system",
            "not-mesh",
            None,
            json!({"mtls": {"mode": "STRICT"}}),
        )],
    );
    assert_rows(&index, &web, &[(Some(80), MtlsMode::Permissive, None)]);
}

#[test]
fn no_mesh_policy_means_permissive() {
    let index = PolicyIndex::new("istio-system", []);
    let web = deployment("prod", "web", "web", &[]);
    assert_rows(&index, &web, &[(None, MtlsMode::Permissive, None)]);
    let rows = index.table([&web]);
    let table = render_table(&rows);
    assert_eq!(
        table,
        "NAMESPACE  WORKLOAD        PORT  MODE        DECIDED BY\n\
         prod       deployment/web  *     PERMISSIVE  (no policy: Istio default)\n"
    );
}

#[test]
fn selector_must_match_all_labels_and_pods_and_cronjobs_are_read() {
    let index = PolicyIndex::new(
        "istio-system",
        [pa(
            "prod",
            "wl",
            None,
            json!({"selector": {"matchLabels": {"app": "web", "tier": "front"}}, "mtls": {"mode": "STRICT"}}),
        )],
    );
    let pod: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "prod", "labels": {"app": "web", "tier": "front"}},
        "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]}
    }))
    .expect("pod");
    let pod = Workload::from_object(Kind::Pod, &pod).expect("workload");
    assert_eq!(
        pod.ports[0].path,
        "spec.containers[0].ports[0].containerPort"
    );
    assert_rows(
        &index,
        &pod,
        &[(
            Some(80),
            MtlsMode::Strict,
            Some(("prod/wl", Level::Workload)),
        )],
    );

    let cron: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "c", "namespace": "prod"},
        "spec": {"jobTemplate": {"spec": {"template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 81}]}]}}}}}
    }))
    .expect("cronjob");
    let cron = Workload::from_object(Kind::CronJob, &cron).expect("workload");
    assert_eq!(
        cron.ports[0].path,
        "spec.jobTemplate.spec.template.spec.containers[0].ports[0].containerPort"
    );
    assert_rows(&index, &cron, &[(Some(81), MtlsMode::Permissive, None)]);
}
