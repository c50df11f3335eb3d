//! Decision-table tests. The webhook configurations below are written after Istio's chart
//! templates (`istio-discovery/templates/mutatingwebhook.yaml`, `revision-tags-mwc.yaml`): the
//! same selectors, built here rather than copied from upstream test data.

use super::*;
use crate::mesh::testing::*;
use crate::mesh::{InjectValues, InjectionPolicy, NoLabels, SettingSource};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{json, Value};

// ---- fixtures: crate::mesh::testing (shared with the rule and cross-check tests) ----

/// Label pairs of a table row.
type Pairs<'a> = &'a [(&'a str, &'a str)];
/// A table row: namespace labels, pod labels, pod annotations, expected (inject, webhook, why).
type Row<'a> = (Pairs<'a>, Pairs<'a>, Pairs<'a>, (bool, &'a str, Why));

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn ctx(mwcs: &[MutatingWebhookConfiguration], cms: &[ConfigMap]) -> MeshContext {
    let mut b = MeshContext::builder();
    for m in mwcs {
        assert!(b.webhook_configuration(m));
    }
    for c in cms {
        assert!(b.config_map(c));
    }
    b.build()
}

/// Decide for namespace `ns` with `ns_labels`, a pod with `pod_labels` and `ann`.
fn decide<'a>(
    c: &'a MeshContext,
    ns: &'a str,
    ns_labels: &'a BTreeMap<String, String>,
    pod_labels: &'a BTreeMap<String, String>,
    ann: &'a BTreeMap<String, String>,
) -> InjectionDecision<'a> {
    c.injection(ns, ns_labels, pod_labels, ann, false)
}

/// (inject, webhook name prefix or "", why) for a table row.
fn row(
    c: &MeshContext,
    ns: &str,
    nsl: &[(&str, &str)],
    pl: &[(&str, &str)],
    an: &[(&str, &str)],
) -> (bool, String, Why) {
    let (nsl, pl, an) = (labels(nsl), labels(pl), labels(an));
    let d = decide(c, ns, &nsl, &pl, &an);
    let hook = d
        .webhook
        .map(|w| {
            format!(
                "{}/{}",
                w.configuration,
                w.name.trim_end_matches("sidecar-injector.istio.io")
            )
        })
        .unwrap_or_default();
    (d.inject, hook, d.why)
}

const ENABLED: &str = "policy: enabled\nalwaysInjectSelector: []\nneverInjectSelector: []\ntemplates: {sidecar: \"spec: {}\"}\n";

// ---- the default revision's webhooks -------------------------------------------------------

#[test]
fn default_revision_webhooks() {
    let c = ctx(
        &[revision_mwc("", false)],
        &[injector_cm("default", ENABLED, "1.28.0")],
    );
    assert!(!c.assumed_default_injector());
    let inj = "istio-sidecar-injector/";
    let cases: &[Row] = &[
        // namespace.*: istio-injection=enabled, pod not opted out by label.
        (
            &[(INJECTION_LABEL, "enabled")],
            &[],
            &[],
            (true, "namespace.", Why::Policy),
        ),
        // The label false never reaches the injector.
        (
            &[(INJECTION_LABEL, "enabled")],
            &[(INJECT, "false")],
            &[],
            (false, "", Why::NotSelected),
        ),
        // The annotation false reaches it, and injectRequired refuses.
        (
            &[(INJECTION_LABEL, "enabled")],
            &[],
            &[(INJECT, "false")],
            (false, "namespace.", Why::PodSetting),
        ),
        // istio-injection set to anything but enabled keeps every pod out, opt-ins included.
        (
            &[(INJECTION_LABEL, "disabled")],
            &[(INJECT, "true")],
            &[],
            (false, "", Why::NotSelected),
        ),
        (
            &[(INJECTION_LABEL, "disabled"), (REV_LABEL, "default")],
            &[],
            &[],
            (false, "", Why::NotSelected),
        ),
        // rev.namespace.*: istio.io/rev=default without istio-injection.
        (
            &[(REV_LABEL, "default")],
            &[],
            &[],
            (true, "rev.namespace.", Why::Policy),
        ),
        // object.*: unlabelled namespace, pod label inject=true.
        (
            &[],
            &[(INJECT, "true")],
            &[],
            (true, "object.", Why::PodSetting),
        ),
        // rev.object.*: unlabelled namespace, pod label istio.io/rev=default.
        (
            &[],
            &[(REV_LABEL, "default")],
            &[],
            (true, "rev.object.", Why::Policy),
        ),
        // Nothing asks.
        (&[], &[], &[], (false, "", Why::NotSelected)),
        // The annotation alone does not reach an injector (selectors see labels only).
        (&[], &[], &[(INJECT, "true")], (false, "", Why::NotSelected)),
        // A pod asking for a revision that does not exist is not injected by object.* either.
        (
            &[],
            &[(INJECT, "true"), (REV_LABEL, "canary")],
            &[],
            (false, "", Why::NotSelected),
        ),
        // A namespace naming an unknown revision.
        (
            &[(REV_LABEL, "canary")],
            &[],
            &[],
            (false, "", Why::NotSelected),
        ),
    ];
    for (nsl, pl, an, (inject, hook, why)) in cases {
        let want_hook = if hook.is_empty() {
            String::new()
        } else {
            format!("{inj}{hook}")
        };
        assert_eq!(
            row(&c, "prod", nsl, pl, an),
            (*inject, want_hook, *why),
            "ns {nsl:?} pod {pl:?} ann {an:?}"
        );
    }
    assert!(
        c.configuration_overlaps().next().is_none(),
        "the chart's webhooks are exclusive"
    );
}

#[test]
fn enable_namespaces_by_default_adds_auto() {
    let c = ctx(
        &[revision_mwc("", true)],
        &[injector_cm("default", ENABLED, "1.28.0")],
    );
    assert_eq!(
        row(&c, "prod", &[], &[], &[]),
        (true, "istio-sidecar-injector/auto.".into(), Why::Policy)
    );
    let empty = labels(&[]);
    let d = c.namespace_injection("prod", &empty);
    assert!(d.inject && d.webhook.is_some_and(|w| w.name.starts_with("auto.")));
    assert!(
        !c.injectors()[0].enable_namespaces_by_default,
        "values say false; the webhook decides"
    );
    // kubernetes.io/metadata.name comes from the namespace name when the labels lack it.
    for ns in [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "local-path-storage",
    ] {
        assert_eq!(
            row(&c, ns, &[], &[], &[]),
            (false, String::new(), Why::NotSelected),
            "{ns}"
        );
    }
    // A pod that says anything about injection goes to object.* / is kept out instead.
    assert_eq!(
        row(&c, "prod", &[], &[(INJECT, "true")], &[]).1,
        "istio-sidecar-injector/object."
    );
    assert_eq!(
        row(&c, "prod", &[], &[(INJECT, "false")], &[]).2,
        Why::NotSelected
    );
    // istio-injection=disabled still wins.
    assert!(!row(&c, "prod", &[(INJECTION_LABEL, "disabled")], &[], &[]).0);
    assert!(c.configuration_overlaps().next().is_none());
}

// ---- revisions and tags ------------------------------------------------------------------

#[test]
fn revisions_and_tags() {
    let c = ctx(
        &[
            revision_mwc("canary", false),
            tag_mwc("prod-stable", "canary", false),
        ],
        &[injector_cm("canary", ENABLED, "1.28.1")],
    );
    assert_eq!(c.revisions().iter().collect::<Vec<_>>(), ["canary"]);
    assert_eq!(
        c.tags().get("prod-stable").map(String::as_str),
        Some("canary")
    );
    assert_eq!(c.resolve("prod-stable"), Some("canary"));
    assert_eq!(c.resolve("canary"), Some("canary"));
    assert_eq!(c.resolve("default"), None);
    for served in ["canary", "prod-stable"] {
        assert!(c.serves(served), "{served}");
    }
    for unserved in ["default", "stable", ""] {
        assert!(!c.serves(unserved), "{unserved}");
    }
    // Only pod-level webhooks for a name: served for pods, not for namespaces.
    let pod_only: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "istio-sidecar-injector-p", "labels": {"istio.io/rev": "p"}},
        "webhooks": [chart_webhooks("p", "istiod-p", false, false)[1].clone()],
    }))
    .unwrap();
    let p = ctx(&[pod_only], &[]);
    assert!(p.serves_pod("p") && !p.serves_namespace("p") && p.serves("p"));
    assert!(!p.serves_pod("q"));
    let f = MeshContext::default();
    assert!(f.serves_namespace("x") && f.serves_pod("x"));

    let (nsl, none) = (labels(&[(REV_LABEL, "prod-stable")]), labels(&[]));
    let d = decide(&c, "prod", &nsl, &none, &none);
    assert!(d.inject);
    let w = d.webhook.unwrap();
    assert_eq!(
        (
            w.configuration.as_str(),
            w.tag.as_deref(),
            w.revision.as_str()
        ),
        (
            "istio-revision-tag-prod-stable",
            Some("prod-stable"),
            "canary"
        )
    );
    assert_eq!(w.served_name(), "prod-stable");
    assert_eq!(d.revision(), Some("canary"));
    assert_eq!(d.injector.map(|i| i.revision.as_str()), Some("canary"));

    // A pod opting in by tag in an unlabelled namespace.
    assert_eq!(
        row(&c, "prod", &[], &[(REV_LABEL, "prod-stable")], &[]).1,
        "istio-revision-tag-prod-stable/rev.object."
    );
    // istio-injection=enabled: no default revision here, nobody injects.
    assert_eq!(
        row(&c, "prod", &[(INJECTION_LABEL, "enabled")], &[], &[]),
        (false, String::new(), Why::NotSelected)
    );
    // An unknown revision.
    assert_eq!(
        row(&c, "prod", &[(REV_LABEL, "1-20")], &[], &[]).2,
        Why::NotSelected
    );

    assert_eq!(
        c.proxy_image("prod-stable"),
        Some("docker.io/istio/proxyv2:1.28.1")
    );
    assert_eq!(
        c.proxy_image("canary"),
        Some("docker.io/istio/proxyv2:1.28.1")
    );
    assert_eq!(c.proxy_image("default"), None);
    assert!(c.configuration_overlaps().next().is_none());
}

#[test]
fn default_tag_on_a_revisioned_install() {
    // `istioctl tag set default --revision 1-28`: the tag carries the default-revision webhooks.
    let c = ctx(
        &[
            revision_mwc("1-28", false),
            tag_mwc("default", "1-28", true),
        ],
        &[],
    );
    assert_eq!(
        row(&c, "prod", &[(INJECTION_LABEL, "enabled")], &[], &[]).1,
        "istio-revision-tag-default/namespace."
    );
    assert_eq!(
        row(&c, "prod", &[], &[], &[]).1,
        "istio-revision-tag-default/auto."
    );
    assert_eq!(
        row(&c, "prod", &[(REV_LABEL, "1-28")], &[], &[]).1,
        "istio-sidecar-injector-1-28/rev.namespace."
    );
    assert!(c.serves("default") && c.serves("1-28"));
    // No injector ConfigMap: chart defaults assumed, and said.
    let inj = c.injector("default").unwrap();
    assert_eq!(inj.revision, "1-28");
    assert!(!inj.observed());
    assert!(
        c.notes()
            .iter()
            .any(|n| n.contains("istio-sidecar-injector-1-28") && n.contains("assumed")),
        "{:?}",
        c.notes()
    );
}

// ---- overlaps ----------------------------------------------------------------------------

#[test]
fn double_injection_is_detected() {
    // A default-revision install plus a `default` tag pointing to canary: both have namespace.*.
    let c = ctx(
        &[
            revision_mwc("", false),
            revision_mwc("canary", false),
            tag_mwc("default", "canary", false),
        ],
        &[],
    );
    let (nsl, none) = (labels(&[(INJECTION_LABEL, "enabled")]), labels(&[]));
    let d = decide(&c, "prod", &nsl, &none, &none);
    assert!(d.inject);
    // kube-apiserver order: configurations by name.
    assert_eq!(
        d.webhook.unwrap().configuration,
        "istio-revision-tag-default"
    );
    assert_eq!(d.also.unwrap().configuration, "istio-sidecar-injector");
    let (a, b) = c.overlap("prod", &nsl, &none).unwrap();
    assert_eq!((a.served_name(), b.served_name()), ("default", "default"));
    assert_ne!(a.configuration, b.configuration);
    // Not for a namespace only one of them selects.
    let canary = labels(&[(REV_LABEL, "canary")]);
    assert!(c.overlap("prod", &canary, &none).is_none());
    assert!(decide(&c, "prod", &canary, &none, &none).also.is_none());

    let found: Vec<(String, String)> = c
        .configuration_overlaps()
        .map(|(a, b, _)| {
            (
                format!("{}/{}", a.configuration, a.name),
                format!("{}/{}", b.configuration, b.name),
            )
        })
        .collect();
    for hook in ["namespace.", "object.", "rev.namespace.", "rev.object."] {
        let pair = (
            format!("istio-revision-tag-default/{hook}sidecar-injector.istio.io"),
            format!("istio-sidecar-injector/{hook}sidecar-injector.istio.io"),
        );
        assert!(found.contains(&pair), "{hook}: {found:?}");
    }
    let (_, _, example) = c.configuration_overlaps().next().unwrap();
    assert!(!example.namespace_labels.is_empty() || !example.pod_labels.is_empty());

    // Two revisions side by side do not overlap.
    let ok = ctx(
        &[
            revision_mwc("", false),
            revision_mwc("canary", false),
            tag_mwc("stable", "canary", false),
        ],
        &[],
    );
    assert!(ok.configuration_overlaps().next().is_none());
    let catch_all: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "istio-sidecar-injector-custom", "labels": {"istio.io/rev": "custom"}},
        "webhooks": [webhook("all.", "istiod-custom", vec![], vec![])],
    }))
    .unwrap();
    let both = ctx(&[revision_mwc("", false), catch_all], &[]);
    assert!(both.configuration_overlaps().next().is_some());
}

// ---- injectRequired ------------------------------------------------------------------------

/// A context with one catch-all injector (no selectors) and the given injector configuration.
fn catch_all(config: &str, tag: &str) -> MeshContext {
    let mwc: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "istio-sidecar-injector", "labels": {"istio.io/rev": "default"}},
        "webhooks": [{"name": "all.sidecar-injector.istio.io", "clientConfig": {"url": "https://127.0.0.1:1/inject"},
            "sideEffects": "None", "admissionReviewVersions": ["v1"], "failurePolicy": "Ignore",
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}],
    }))
    .unwrap();
    ctx(&[mwc], &[injector_cm("default", config, tag)])
}

#[test]
fn inject_required_order() {
    let c = catch_all(
        "policy: disabled\nneverInjectSelector:\n- matchLabels: {app: batch}\n- {}\nalwaysInjectSelector:\n- matchExpressions: [{key: app, operator: In, values: [batch, web]}]\n",
        "1.28.0",
    );
    assert_eq!(
        c.webhooks()[0].failure_policy,
        crate::mesh::FailurePolicy::Ignore
    );
    let (none, web) = (labels(&[]), labels(&[("app", "web")]));
    // 1. hostNetwork
    let d = c.injection("prod", &none, &web, &none, true);
    assert_eq!((d.inject, d.why), (false, Why::HostNetwork));
    // 2. ignored namespaces
    for ns in crate::mesh::IGNORED_NAMESPACES {
        assert_eq!(
            row(&c, ns, &[], &[("app", "web")], &[]).2,
            Why::IgnoredNamespace,
            "{ns}"
        );
    }
    // 3. label over annotation, exact values
    assert_eq!(
        row(
            &c,
            "prod",
            &[],
            &[(INJECT, "true"), ("app", "batch")],
            &[(INJECT, "false")]
        ),
        (true, "istio-sidecar-injector/all.".into(), Why::PodSetting)
    );
    assert!(
        !row(
            &c,
            "prod",
            &[],
            &[(INJECT, "false"), ("app", "web")],
            &[(INJECT, "true")]
        )
        .0
    );
    assert_eq!(
        row(&c, "prod", &[], &[("app", "web")], &[(INJECT, "false")]).2,
        Why::PodSetting
    );
    // an empty label hides the annotation and falls through
    assert_eq!(
        row(
            &c,
            "prod",
            &[],
            &[(INJECT, ""), ("app", "web")],
            &[(INJECT, "false")]
        )
        .2,
        Why::AlwaysInjectSelector(0)
    );
    // 4. neverInjectSelector beats alwaysInjectSelector; the empty entry matches nothing
    assert_eq!(
        row(&c, "prod", &[], &[("app", "batch")], &[]),
        (
            false,
            "istio-sidecar-injector/all.".into(),
            Why::NeverInjectSelector(0)
        )
    );
    // 5. alwaysInjectSelector beats policy disabled
    assert!(row(&c, "prod", &[], &[("app", "web")], &[]).0);
    // 6. policy
    assert_eq!(
        row(&c, "prod", &[], &[("app", "db")], &[]),
        (false, "istio-sidecar-injector/all.".into(), Why::Policy)
    );
    // A value that is neither true nor false is ignored by Istio >= 1.27 ...
    let pl = labels(&[(INJECT, "no"), ("app", "web")]);
    let d = decide(&c, "prod", &none, &pl, &none);
    assert_eq!((d.inject, d.why), (true, Why::AlwaysInjectSelector(0)));
    let pl = labels(&[(INJECT, "yes")]);
    let d = decide(&c, "prod", &none, &pl, &none);
    assert_eq!((d.inject, d.why), (false, Why::Policy));
    assert!(d.setting_ignored());
    assert_eq!(d.setting.map(|s| s.source), Some(SettingSource::Label));
    // ... and read the old way by older injectors.
    let old = catch_all("policy: disabled\n", "1.26.2");
    assert_eq!(old.injectors()[0].inject_values, InjectValues::Legacy);
    assert_eq!(
        row(&old, "prod", &[], &[(INJECT, "yes")], &[]),
        (true, "istio-sidecar-injector/all.".into(), Why::PodSetting)
    );
    assert_eq!(
        row(&old, "prod", &[], &[(INJECT, "no")], &[]).2,
        Why::PodSetting
    );
}

#[test]
fn policy_enabled_disabled_and_invalid() {
    for (config, inject) in [
        ("policy: enabled\n", true),
        ("policy: disabled\n", false),
        ("policy: sometimes\n", false),
        ("templates: {}\n", false),
    ] {
        let c = catch_all(config, "1.28.0");
        let d = row(&c, "prod", &[], &[], &[]);
        assert_eq!((d.0, d.2), (inject, Why::Policy), "{config}");
    }
    let c = catch_all("policy: maybe\n", "1.28.0");
    assert_eq!(
        c.injectors()[0].policy,
        InjectionPolicy::Invalid("maybe".into())
    );
    // YAML 1.1 reads `on` as a boolean, which Istio cannot load as a policy: an error, reported.
    let c = catch_all("policy: on\n", "1.28.0");
    assert!(
        c.errors()
            .iter()
            .any(|e| e.to_string().contains("config.policy")),
        "{:?}",
        c.errors()
    );
}

#[test]
fn second_injector_can_inject_when_the_first_refuses() {
    // Two catch-all injectors; the first (by name) has policy disabled.
    let mk = |name: &str, rev: &str| -> MutatingWebhookConfiguration {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"istio.io/rev": rev}},
            "webhooks": [webhook("all.", &format!("istiod-{rev}"), vec![], vec![])],
        }))
        .unwrap()
    };
    let c = ctx(
        &[
            mk("istio-sidecar-injector-b", "b"),
            mk("istio-sidecar-injector-a", "a"),
        ],
        &[
            injector_cm("a", "policy: disabled\n", "1.28.0"),
            injector_cm("b", ENABLED, "1.28.0"),
        ],
    );
    let none = labels(&[]);
    let d = decide(&c, "prod", &none, &none, &none);
    assert!(d.inject);
    assert_eq!(d.webhook.unwrap().revision, "b");
    assert_eq!(
        d.also.unwrap().revision,
        "b",
        "also: another selecting webhook than the first (a)"
    );
    assert_eq!(d.revision(), Some("b"));
}

#[test]
fn webhooks_that_do_not_cover_pods_never_inject() {
    let mwc: MutatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "istio-sidecar-injector", "labels": {"istio.io/rev": "default"}},
        "webhooks": [{"name": "namespace.sidecar-injector.istio.io", "clientConfig": {},
            "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "rules": [{"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}],
    }))
    .unwrap();
    let c = ctx(&[mwc], &[]);
    assert!(
        !c.assumed_default_injector(),
        "an injector is visible, it just selects nothing"
    );
    assert!(c.webhooks().is_empty());
    assert_eq!(c.inert_webhooks().len(), 1);
    assert_eq!(
        row(&c, "prod", &[(INJECTION_LABEL, "enabled")], &[], &[]).2,
        Why::NotSelected
    );
    assert!(!c.serves("default"));
}

#[test]
fn deactivated_default_webhook_never_matches() {
    // istioctl tag set default: the old default revision's webhooks get `istio.io/deactivated`.
    let mut old = revision_mwc("", false);
    for w in old.webhooks.iter_mut().flatten() {
        let never =
            serde_json::from_value(json!({"matchLabels": {"istio.io/deactivated": "never-match"}}))
                .unwrap();
        w.namespace_selector = Some(never);
        w.object_selector =
            serde_json::from_value(json!({"matchLabels": {"istio.io/deactivated": "never-match"}}))
                .unwrap();
    }
    let c = ctx(
        &[
            old,
            revision_mwc("canary", false),
            tag_mwc("default", "canary", false),
        ],
        &[],
    );
    assert_eq!(
        row(&c, "prod", &[(INJECTION_LABEL, "enabled")], &[], &[]).1,
        "istio-revision-tag-default/namespace."
    );
    assert!(c.configuration_overlaps().next().is_none());
}

// ---- fallback ------------------------------------------------------------------------------

#[test]
fn fallback_without_injectors_uses_label_semantics() {
    let c = MeshContext::default();
    assert!(c.assumed_default_injector());
    assert!(c.serves("anything"), "nothing to compare against");
    let cases: &[(Pairs, Pairs, Pairs, bool, Why)] = &[
        (
            &[(INJECTION_LABEL, "enabled")],
            &[],
            &[],
            true,
            Why::NamespaceLabel,
        ),
        (
            &[(REV_LABEL, "anything")],
            &[],
            &[],
            true,
            Why::NamespaceLabel,
        ),
        (&[(REV_LABEL, "")], &[], &[], false, Why::NotEnrolled),
        (
            &[(INJECTION_LABEL, "disabled"), (REV_LABEL, "canary")],
            &[],
            &[],
            false,
            Why::NamespaceOff,
        ),
        (
            &[(INJECTION_LABEL, "Enabled")],
            &[(INJECT, "true")],
            &[],
            false,
            Why::NamespaceOff,
        ),
        (
            &[(INJECTION_LABEL, "enabled")],
            &[(INJECT, "false")],
            &[],
            false,
            Why::PodSetting,
        ),
        (
            &[(INJECTION_LABEL, "enabled")],
            &[],
            &[(INJECT, "no")],
            false,
            Why::PodSetting,
        ),
        (
            &[(INJECTION_LABEL, "enabled")],
            &[(INJECT, "yes")],
            &[(INJECT, "false")],
            true,
            Why::NamespaceLabel,
        ),
        (&[], &[(INJECT, "True")], &[], true, Why::PodOptIn),
        (&[], &[(REV_LABEL, "canary")], &[], true, Why::PodOptIn),
        (
            &[],
            &[(REV_LABEL, "canary")],
            &[(INJECT, "false")],
            false,
            Why::NotEnrolled,
        ),
        (&[], &[], &[(INJECT, "true")], false, Why::NotEnrolled),
        (&[], &[], &[], false, Why::NotEnrolled),
    ];
    for (nsl, pl, an, inject, why) in cases {
        let (n, p, a) = (labels(nsl), labels(pl), labels(an));
        let d = decide(&c, "prod", &n, &p, &a);
        assert!(d.assumed);
        assert_eq!(
            (d.inject, d.why),
            (*inject, *why),
            "ns {nsl:?} pod {pl:?} ann {an:?}"
        );
        assert!(d.webhook.is_none());
    }
    let n = labels(&[(INJECTION_LABEL, "enabled")]);
    let d = c.injection("prod", &n, &NoLabels, &NoLabels, true);
    assert_eq!((d.inject, d.why), (false, Why::HostNetwork));
}

/// Only the injector ConfigMap visible (`check` over manifests without the webhook
/// configuration, as `istioctl analyze` reads them): its `values` decide whether the chart's
/// `auto.*` webhook injects unlabelled namespaces (`injection.go`
/// `GetEnableNamespacesByDefaultFromInjectedConfigMap`, IST0148).
#[test]
fn fallback_reads_enable_namespaces_by_default_from_the_config_map() {
    let values = |on: bool, revision: &str| {
        json!({"global": {"hub": "docker.io/istio", "tag": "1.28.0", "proxy": {"image": "proxyv2"}},
            "revision": revision,
            "sidecarInjectorWebhook": {"enableNamespacesByDefault": on}})
        .to_string()
    };
    let on = ctx(
        &[],
        &[config_map(
            "istio-sidecar-injector",
            json!({"config": ENABLED, "values": values(true, "")}),
        )],
    );
    assert!(on.assumed_default_injector());
    assert_eq!(
        row(&on, "prod", &[], &[], &[]),
        (true, String::new(), Why::EnabledByDefault)
    );
    let empty = labels(&[]);
    let d = on.namespace_injection("prod", &empty);
    assert!(d.inject && d.assumed);
    assert!(d.to_string().contains("enableNamespacesByDefault"), "{d}");
    assert!(on
        .to_string()
        .contains("unlabelled namespaces are injected too"));
    // What the auto.* webhook leaves out stays out: Istio's ignored namespaces, pods that say
    // anything themselves, namespaces that say anything.
    assert!(!row(&on, "kube-public", &[], &[], &[]).0);
    assert_eq!(
        row(&on, "prod", &[], &[(INJECT, "false")], &[]),
        (false, String::new(), Why::NotEnrolled)
    );
    assert_eq!(
        row(&on, "prod", &[], &[(INJECT, "maybe")], &[]),
        (false, String::new(), Why::NotEnrolled)
    );
    assert!(!row(&on, "prod", &[], &[], &[(INJECT, "false")]).0);
    assert_eq!(
        row(&on, "prod", &[(INJECTION_LABEL, "disabled")], &[], &[]).2,
        Why::NamespaceOff
    );

    // Off, or set only on another revision's injector: unlabelled namespaces are not injected.
    for cm in [
        config_map(
            "istio-sidecar-injector",
            json!({"config": ENABLED, "values": values(false, "")}),
        ),
        config_map(
            "istio-sidecar-injector-canary",
            json!({"config": ENABLED, "values": values(true, "canary")}),
        ),
    ] {
        let off = ctx(&[], &[cm]);
        assert_eq!(
            row(&off, "prod", &[], &[], &[]),
            (false, String::new(), Why::NotEnrolled)
        );
    }
    // With webhooks visible the webhooks decide, not the ConfigMap's values.
    let hooks = ctx(
        &[revision_mwc("", false)],
        &[config_map(
            "istio-sidecar-injector",
            json!({"config": ENABLED, "values": values(true, "")}),
        )],
    );
    assert_eq!(row(&hooks, "prod", &[], &[], &[]).2, Why::NotSelected);
}

// ---- reasons -------------------------------------------------------------------------------

#[test]
fn reasons_in_words() {
    let c = ctx(
        &[revision_mwc("", false), revision_mwc("canary", false)],
        &[
            injector_cm("default", ENABLED, "1.28.0"),
            injector_cm("canary", "policy: disabled\n", "1.28.0"),
        ],
    );
    let text = |nsl: &[(&str, &str)], pl: &[(&str, &str)], an: &[(&str, &str)]| {
        let (n, p, a) = (labels(nsl), labels(pl), labels(an));
        decide(&c, "prod", &n, &p, &a).to_string()
    };
    assert_eq!(
        text(&[(INJECTION_LABEL, "enabled")], &[], &[]),
        "webhook \"namespace.sidecar-injector.istio.io\" of MutatingWebhookConfiguration \"istio-sidecar-injector\" (revision default) selects the pod, and its injector's policy is enabled"
    );
    assert_eq!(
        text(&[(REV_LABEL, "canary")], &[], &[]),
        "webhook \"rev.namespace.sidecar-injector.istio.io\" of MutatingWebhookConfiguration \"istio-sidecar-injector-canary\" (revision canary) selects the pod, but its injector's policy is disabled and nothing in the pod asks for a sidecar (label sidecar.istio.io/inject=true)"
    );
    assert_eq!(
        text(&[(INJECTION_LABEL, "enabled")], &[(INJECT, "false")], &[]),
        "no sidecar injector webhook selects this pod in namespace \"prod\" (the pod label sidecar.istio.io/inject=\"false\" keeps it out of the injectors' objectSelectors)"
    );
    assert_eq!(
        text(&[(INJECTION_LABEL, "enabled")], &[], &[(INJECT, "false")]),
        "webhook \"namespace.sidecar-injector.istio.io\" of MutatingWebhookConfiguration \"istio-sidecar-injector\" (revision default) selects the pod, but the pod annotation sidecar.istio.io/inject=\"false\" refuses the sidecar"
    );
    assert!(text(&[(INJECTION_LABEL, "enabled")], &[(INJECT, "yes")], &[]).ends_with(
        "and its injector's policy is enabled (the pod label sidecar.istio.io/inject=\"yes\" is ignored: only \"true\" and \"false\" count)"
    ));
    let f = MeshContext::default();
    let (n, none) = (labels(&[(REV_LABEL, "canary")]), labels(&[]));
    assert_eq!(
        decide(&f, "prod", &n, &none, &none).to_string(),
        "namespace \"prod\" is labelled istio.io/rev=canary"
    );
    let n = labels(&[(INJECTION_LABEL, "disabled")]);
    assert_eq!(
        decide(&f, "prod", &n, &none, &none).to_string(),
        "namespace \"prod\" is labelled istio-injection=disabled, which keeps the sidecar out of every pod in it"
    );
}

// ---- MeshConfig and its origins ----------------------------------------------------------------

#[test]
fn mesh_config_defaults_without_config_maps() {
    let c = MeshContext::default();
    assert_eq!(
        c.root_namespace(),
        &Sourced::new("istio-system".to_owned(), Origin::Default)
    );
    assert_eq!(
        c.trust_domain(),
        &Sourced::new("cluster.local".to_owned(), Origin::Default)
    );
    assert!(c.trust_domain_aliases().value.is_empty());
    assert_eq!(c.enable_auto_mtls(), &Sourced::new(true, Origin::Default));
    assert_eq!(c.istio_namespace().value, "istio-system");
    assert!(c.errors().is_empty());
    // The root namespace follows the Istio namespace when nothing else says.
    let mut b = MeshContext::builder();
    b.istio_namespace("istio");
    let c = b.build();
    assert_eq!(c.root_namespace().value, "istio");
    assert_eq!(c.istio_namespace().origin, Origin::Policy);
}

#[test]
fn mesh_config_from_the_config_map_with_origins() {
    let c = ctx(
        &[],
        &[mesh_cm("istio", "rootNamespace: istio-config\ntrustDomain: corp.example\ntrustDomainAliases: [old.example]\nenableAutoMtls: false\n")],
    );
    let from_cm = Origin::ConfigMap {
        namespace: "istio-system".into(),
        name: "istio".into(),
    };
    assert_eq!(
        c.root_namespace(),
        &Sourced::new("istio-config".to_owned(), from_cm.clone())
    );
    assert_eq!(
        c.trust_domain(),
        &Sourced::new("corp.example".to_owned(), from_cm.clone())
    );
    assert_eq!(
        c.trust_domain_aliases(),
        &Sourced::new(vec!["old.example".to_owned()], from_cm.clone())
    );
    assert_eq!(c.enable_auto_mtls(), &Sourced::new(false, from_cm.clone()));
    assert_eq!(
        c.trust_domains().collect::<Vec<_>>(),
        ["corp.example", "old.example"]
    );
    assert_eq!(
        c.trust_domain().origin.to_string(),
        "ConfigMap istio-system/istio"
    );

    // A ConfigMap without the keys: Istio's code defaults (rootNamespace istio-system).
    let mut b = MeshContext::builder();
    b.istio_namespace("istio");
    b.config_map(&serde_json::from_value(json!({"metadata": {"name": "istio", "namespace": "istio"}, "data": {"mesh": "accessLogFile: /dev/stdout\n"}})).unwrap());
    let c = b.build();
    assert_eq!(
        c.root_namespace(),
        &Sourced::new("istio-system".to_owned(), Origin::Default)
    );
    assert!(c.mesh_config("default").is_some());
}

#[test]
fn policy_overrides_win() {
    let mut b = MeshContext::builder();
    b.config_map(&mesh_cm(
        "istio",
        "trustDomain: corp.example\nrootNamespace: istio-config\n",
    ));
    b.overrides(MeshOverrides {
        root_namespace: Some("mesh-root".into()),
        trust_domain: Some("td.example".into()),
        trust_domain_aliases: Some(vec!["a.example".into()]),
        enable_auto_mtls: Some(false),
    });
    let c = b.build();
    assert_eq!(
        c.root_namespace(),
        &Sourced::new("mesh-root".to_owned(), Origin::Policy)
    );
    assert_eq!(
        c.trust_domain(),
        &Sourced::new("td.example".to_owned(), Origin::Policy)
    );
    assert_eq!(c.trust_domain_aliases().value, ["a.example"]);
    assert_eq!(c.enable_auto_mtls(), &Sourced::new(false, Origin::Policy));
    assert_eq!(c.trust_domain().origin.to_string(), "meshguard policy");
    // Other overrides later (a policy reload) go over the mesh's own values again.
    let reloaded = c.with_overrides(&MeshOverrides {
        trust_domain: Some("other.example".into()),
        ..MeshOverrides::default()
    });
    assert_eq!(reloaded.trust_domain().value, "other.example");
    let origin = Origin::ConfigMap {
        namespace: "istio-system".into(),
        name: "istio".into(),
    };
    assert_eq!(
        reloaded.root_namespace(),
        &Sourced::new("istio-config".to_owned(), origin)
    );
    assert_eq!(
        reloaded.enable_auto_mtls(),
        &Sourced::new(true, Origin::Default)
    );
    assert!(reloaded.trust_domain_aliases().value.is_empty());
    assert_eq!(
        reloaded.overrides().trust_domain.as_deref(),
        Some("other.example")
    );
    let back = reloaded.with_overrides(&MeshOverrides::default());
    assert_eq!(back.trust_domain().value, "corp.example");
}

#[test]
fn which_mesh_config_is_the_mesh() {
    // `istio` (default revision) wins over `istio-canary`, and the disagreement is noted.
    let c = ctx(
        &[],
        &[
            mesh_cm("istio-canary", "trustDomain: canary.example\n"),
            mesh_cm("istio", "trustDomain: corp.example\n"),
        ],
    );
    assert_eq!(c.trust_domain().value, "corp.example");
    assert_eq!(
        c.mesh_config("canary").unwrap().effective_trust_domain(),
        "canary.example"
    );
    assert!(
        c.notes()
            .iter()
            .any(|n| n.contains("ConfigMap istio-system/istio-canary")
                && n.contains("canary.example")),
        "{:?}",
        c.notes()
    );
    // Revisioned install: the revision the default tag points to.
    let c = ctx(
        &[
            revision_mwc("1-27", false),
            revision_mwc("1-28", false),
            tag_mwc("default", "1-28", false),
        ],
        &[
            mesh_cm("istio-1-27", "trustDomain: old.example\n"),
            mesh_cm("istio-1-28", "trustDomain: new.example\n"),
        ],
    );
    assert_eq!(c.trust_domain().value, "new.example");
    assert_eq!(
        c.trust_domain().origin.to_string(),
        "ConfigMap istio-system/istio-1-28"
    );
    // A file given to meshguard wins over them all.
    let mut b = MeshContext::builder();
    b.config_map(&mesh_cm("istio", "trustDomain: corp.example\n"));
    b.mesh_config_file("mesh.yaml", "trustDomain: file.example\n");
    let c = b.build();
    assert_eq!(
        c.trust_domain(),
        &Sourced::new(
            "file.example".to_owned(),
            Origin::File {
                path: "mesh.yaml".into()
            }
        )
    );
    // Other ConfigMaps named istio-* are not MeshConfigs.
    let mut b = MeshContext::builder();
    assert!(!b.config_map(&config_map(
        "istio-ca-root-cert",
        json!({"root-cert.pem": "x"})
    )));
    assert!(!b.config_map(&config_map("istio-leader", json!({}))));
}

#[test]
fn bad_mesh_config_is_an_error_and_defaults_apply() {
    let c = ctx(&[], &[mesh_cm("istio", "trustDomain: [\n")]);
    assert_eq!(
        c.trust_domain(),
        &Sourced::new("cluster.local".to_owned(), Origin::Default)
    );
    assert_eq!(c.errors().len(), 1);
    assert!(
        c.errors()[0]
            .to_string()
            .starts_with("ConfigMap istio-system/istio: key \"mesh\" is not valid YAML"),
        "{}",
        c.errors()[0]
    );
    let mut b = MeshContext::builder();
    b.mesh_config_file("mesh.yaml", "trustDomain: Not_Valid\n");
    let c = b.build();
    assert_eq!(c.trust_domain().value, "cluster.local");
    assert!(
        c.errors()[0]
            .to_string()
            .contains("file mesh.yaml: trustDomain"),
        "{:?}",
        c.errors()
    );
    assert!(c.to_string().contains("error: file mesh.yaml: trustDomain"));
}

#[test]
fn proxy_image_uses_the_revisions_mesh_config() {
    let c = ctx(
        &[revision_mwc("", false), revision_mwc("canary", false)],
        &[
            injector_cm("default", ENABLED, "1.27.3"),
            injector_cm("canary", ENABLED, "1.28.0"),
            mesh_cm("istio", "defaultConfig: {image: {imageType: distroless}}\n"),
            mesh_cm("istio-canary", "trustDomain: cluster.local\n"),
        ],
    );
    assert_eq!(
        c.proxy_image("default"),
        Some("docker.io/istio/proxyv2:1.27.3-distroless")
    );
    assert_eq!(
        c.proxy_image("canary"),
        Some("docker.io/istio/proxyv2:1.28.0")
    );
    let ann = labels(&[("sidecar.istio.io/proxyImageType", "debug")]);
    assert_eq!(
        c.proxy_image_for("canary", &ann).as_deref(),
        Some("docker.io/istio/proxyv2:1.28.0-debug")
    );
    assert_eq!(c.proxy_image_for("nope", &ann), None);
}

// ---- from objects ------------------------------------------------------------------------------

fn dynamic(v: Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

#[test]
fn from_objects_takes_what_is_relevant() {
    let mut mwc = serde_json::to_value(revision_mwc("canary", false)).unwrap();
    mwc["apiVersion"] = json!("admissionregistration.k8s.io/v1");
    mwc["kind"] = json!("MutatingWebhookConfiguration");
    let for_ns = |v: Value, ns: &str| {
        let mut v = v;
        v["apiVersion"] = json!("v1");
        v["kind"] = json!("ConfigMap");
        v["metadata"]["namespace"] = json!(ns);
        v
    };
    let objects = vec![
        dynamic(mwc),
        dynamic(for_ns(
            serde_json::to_value(injector_cm("canary", ENABLED, "1.28.0")).unwrap(),
            "istio-system",
        )),
        dynamic(for_ns(
            serde_json::to_value(mesh_cm("istio-canary", "trustDomain: corp.example\n")).unwrap(),
            "istio-system",
        )),
        // The same names in another namespace are not Istio's.
        dynamic(for_ns(
            serde_json::to_value(mesh_cm("istio", "trustDomain: evil.example\n")).unwrap(),
            "apps",
        )),
        // Unrelated objects.
        dynamic(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod", "labels": {"istio.io/rev": "canary"}}}),
        ),
        dynamic(
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "cert-manager-webhook"}, "webhooks": [{"name": "webhook.cert-manager.io", "clientConfig": {},
            "sideEffects": "None", "admissionReviewVersions": ["v1"]}]}),
        ),
        dynamic(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config", "namespace": "istio-system"}, "data": {"mesh": "x"}}),
        ),
        // A broken Istio webhook configuration is reported.
        dynamic(
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "istio-revision-tag-broken", "labels": {"istio.io/tag": "broken"}}, "webhooks": [{"name": 5}]}),
        ),
    ];
    let c = MeshContext::from_objects(&objects, None, MeshOverrides::default());
    assert_eq!(c.istio_namespace().value, "istio-system");
    assert_eq!(
        c.istio_namespace().origin.to_string(),
        "MutatingWebhookConfiguration istio-sidecar-injector-canary"
    );
    assert_eq!(c.revisions().iter().collect::<Vec<_>>(), ["canary"]);
    assert_eq!(c.trust_domain().value, "corp.example");
    assert!(c.injector("canary").unwrap().observed());
    assert_eq!(c.errors().len(), 1, "{:?}", c.errors());
    assert!(c.errors()[0]
        .to_string()
        .starts_with("MutatingWebhookConfiguration istio-revision-tag-broken: cannot read it"));
    // An explicit Istio namespace filters the ConfigMaps.
    let c = MeshContext::from_objects(&objects, Some("apps"), MeshOverrides::default());
    assert_eq!(c.trust_domain().value, "evil.example");
    assert!(!c.injector("canary").unwrap().observed());
}

#[test]
fn summary_and_header() {
    let c = ctx(
        &[
            revision_mwc("canary", false),
            tag_mwc("prod-stable", "canary", false),
        ],
        &[
            injector_cm("canary", ENABLED, "1.28.0"),
            mesh_cm("istio-canary", "trustDomain: corp.example\n"),
        ],
    );
    let s = serde_json::to_value(c.summary()).unwrap();
    assert_eq!(
        s["trustDomain"],
        json!({"value": "corp.example", "source": "ConfigMap istio-system/istio-canary"})
    );
    assert_eq!(s["rootNamespace"]["source"], "Istio default");
    assert_eq!(s["injectors"], "observed");
    assert_eq!(s["tags"], json!({"prod-stable": "canary"}));
    assert_eq!(s["revisions"][0]["name"], "canary");
    assert_eq!(
        s["revisions"][0]["webhooks"],
        json!(["istio-sidecar-injector-canary"])
    );
    assert_eq!(
        s["revisions"][0]["proxyImage"],
        "docker.io/istio/proxyv2:1.28.0"
    );
    let text = c.to_string();
    assert!(
        text.contains(
            "trust domain: corp.example (ConfigMap istio-system/istio-canary), no aliases"
        ),
        "{text}"
    );
    assert!(text.contains("injectors: revision canary (policy enabled, proxy docker.io/istio/proxyv2:1.28.0), tag prod-stable → canary"), "{text}");
    let f = MeshContext::default();
    assert_eq!(
        serde_json::to_value(f.summary()).unwrap()["injectors"],
        "assumed-default"
    );
    assert!(f
        .to_string()
        .contains("injection verdicts assume Istio's default injector"));
}

#[test]
fn ambient_as_installed_comes_from_the_daemonsets_and_istio_cni() {
    // Nothing visible: Istio's defaults, said once.
    let c = MeshContext::default();
    assert!(c.ambient().assumed && c.ambient().enabled.value);
    assert_eq!(c.summary().ambient.state, "assumed-default");
    assert!(c
        .to_string()
        .contains("ambient: no ztunnel or istio-cni visible"));
    // ztunnel and istio-cni from objects (manifests or a listing), the node agent's ConfigMap
    // in another namespace than Istio's (GKE runs istio-cni in kube-system).
    let objects: Vec<DynamicObject> = [
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "ztunnel", "namespace": "istio-system"},
            "spec": {"selector": {}, "template": {"metadata": {"labels": {"app": "ztunnel"}}}}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "istio-cni-node", "namespace": "kube-system"},
            "spec": {"selector": {}, "template": {"metadata": {"labels": {"k8s-app": "istio-cni-node"}}}}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "fluentd", "namespace": "kube-system"},
            "spec": {"selector": {}, "template": {"metadata": {"labels": {"app": "fluentd"}}}}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio-cni-config", "namespace": "kube-system"},
            "data": {"AMBIENT_ENABLED": "true", "EXCLUDE_NAMESPACES": "kube-system,legacy"}}),
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).expect("object"))
    .collect();
    let c = MeshContext::from_objects(&objects, None, MeshOverrides::default());
    let a = c.ambient();
    assert!(!a.assumed && a.enabled.value);
    assert_eq!(a.ztunnel, ["istio-system/ztunnel"]);
    assert_eq!(a.cni, ["kube-system/istio-cni-node"]);
    assert_eq!(a.exclude_namespaces.value, ["kube-system", "legacy"]);
    let s = c.summary();
    assert_eq!(s.ambient.state, "observed");
    assert_eq!(
        s.ambient.exclude_namespaces.source,
        "ConfigMap kube-system/istio-cni-config"
    );
    let text = c.to_string();
    assert!(
        text.contains("ambient: capture on (ConfigMap kube-system/istio-cni-config), ztunnel istio-system/ztunnel, istio-cni kube-system/istio-cni-node, excludeNamespaces kube-system, legacy (ConfigMap kube-system/istio-cni-config), enablement selectors: chart defaults"),
        "{text}"
    );
    assert_eq!(
        c.ambient().captures(
            "legacy",
            &labels(&[("istio.io/dataplane-mode", "ambient")]),
            &NoLabels
        ),
        crate::mesh::Capture::Excluded
    );
}

/// A MutatingWebhookConfiguration or ConfigMap the typed model refuses is an error of the mesh
/// context (for Istio's names), with k8s-openapi's message for the same object (what meshguard
/// decoded them with before the model): never a panic, never silently taken.
#[test]
fn refused_mesh_objects_are_errors_with_k8s_openapi_messages() {
    fn k8s<K: serde::de::DeserializeOwned>(v: &Value) -> String {
        serde_json::from_value::<K>(v.clone())
            .map(drop)
            .expect_err("k8s-openapi refuses it")
            .to_string()
    }
    let mwc = |webhooks: Value| {
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "istio-sidecar-injector", "labels": {"istio.io/rev": "default"}},
            "webhooks": webhooks})
    };
    let cm = |data: Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "istio", "namespace": "istio-system"}, "data": data})
    };
    let mut beta = mwc(json!([]));
    beta["apiVersion"] = json!("admissionregistration.k8s.io/v1beta1");
    for (v, kind, origin) in [
        (
            mwc(
                json!([{"name": "sidecar-injector.istio.io", "namespaceSelector": {"matchExpressions": [{"key": "a", "values": "x"}]}}]),
            ),
            "MutatingWebhookConfiguration",
            "MutatingWebhookConfiguration istio-sidecar-injector",
        ),
        (
            mwc(json!([{"name": "sidecar-injector.istio.io", "clientConfig": {"caBundle": "%%"}}])),
            "MutatingWebhookConfiguration",
            "MutatingWebhookConfiguration istio-sidecar-injector",
        ),
        (
            beta,
            "MutatingWebhookConfiguration",
            "MutatingWebhookConfiguration istio-sidecar-injector",
        ),
        (
            cm(json!({"mesh": 1})),
            "ConfigMap",
            "ConfigMap istio-system/istio",
        ),
    ] {
        let message = if kind == "ConfigMap" {
            k8s::<ConfigMap>(&v)
        } else {
            k8s::<MutatingWebhookConfiguration>(&v)
        };
        let c = MeshContext::from_objects(&[dynamic(v.clone())], None, MeshOverrides::default());
        assert!(
            c.errors().contains(&crate::mesh::MeshError::Object {
                origin: origin.to_owned(),
                kind: kind.to_owned(),
                message: message.clone(),
            }),
            "{v}: want {message:?}, got {:?}",
            c.errors()
        );
        assert!(c.webhooks().is_empty() && c.injectors().iter().all(|i| !i.observed()));
    }
}
