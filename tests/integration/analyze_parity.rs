//! Parity with `istioctl analyze`, measured on Istio's own analyzer test data.
//!
//! Each case below is one case of istio/istio `pkg/config/analysis/analyzers/analyzers_test.go`
//! (`TestAnalyzers`) whose analyzer raises security-relevant messages: the same input files
//! (tests/fixtures/istio-analyze, copied unchanged) and the same expected messages. meshguard runs
//! over them as `check --complete` (the analyzer, too, takes its input as the whole cluster) and:
//!
//! * every expected message of a code meshguard covers must be matched by a finding of the
//!   code's rule on the same object (or, for namespace-level codes, on an object in that
//!   namespace);
//! * every finding of a rule that maps to one of the analyzer's codes must be one the analyzer
//!   expects, unless it is a deliberate difference listed in [`DELIBERATE`] (with the reason);
//! * codes meshguard leaves to Istio are listed in [`LEFT_TO_ISTIO`], each with the reason; the
//!   tally is printed and kept equal to the parity table (docs/istio-analyze-parity.md).

use clap::Parser;
use meshguard::check;
use meshguard::cli::{Cli, Command};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// One analyzer message: code and object (`Kind name`, `Kind ns/name`, or `Namespace name`).
type Message = (&'static str, &'static str);

struct Case {
    /// Istio's name of the case.
    name: &'static str,
    files: &'static [&'static str],
    /// `meshConfigFile` of the case, when it has one.
    mesh_config: Option<&'static str>,
    /// Every code this case's analyzer can raise (so that a meshguard finding of the rule of
    /// such a code is judged against this case's expectations).
    codes: &'static [&'static str],
    expected: &'static [Message],
}

/// The meshguard rule that covers a code, and whether Istio raises the code per namespace while
/// meshguard reports each object (`true`: matched by any finding in that namespace).
const RULES: &[(&str, &str, bool)] = &[
    // Only the namespace patterns: meshguard's principal findings go beyond IST0101 (see
    // `in_scope`).
    ("IST0101", "ap-unknown-principal", false),
    ("IST0102", "ns-injection-missing", false),
    ("IST0103", "wl-missing-sidecar", false),
    ("IST0118", "svc-port-protocol", false),
    ("IST0123", "ns-conflicting-injection-labels", false),
    ("IST0127", "selector-matches-nothing", false),
    ("IST0128", "dr-tls-no-verification", false),
    ("IST0129", "dr-tls-no-verification", false),
    ("IST0139", "injector-overlap", false),
    ("IST0144", "wl-proxy-uid", false),
    ("IST0146", "wl-proxy-image-auto", false),
    ("IST0147", "wl-proxy-image-auto", false),
    ("IST0158", "wl-proxy-outdated", true),
];

/// Codes with no meshguard rule, and why (also in the parity table).
const LEFT_TO_ISTIO: &[(&str, &str)] = &[
    (
        "IST0148",
        "informational (a namespace injected by enableNamespacesByDefault); meshguard's counterpart is that such a namespace raises no ns-injection-missing, which this test checks",
    ),
    (
        "IST0166",
        "a selector policy matching a Kubernetes Gateway's pods: needs Gateway objects, which the ambient-mode work brings",
    ),
    (
        "IST0175",
        "istiod's BLOCKED_CIDRS_IN_JWKS_URIS environment: meshguard does not read istiod's Deployment; ra-jwks-uri-internal flags the fetches that setting would block",
    ),
];

/// meshguard findings the analyzer does not give, on purpose: (case, rule, object, why).
const DELIBERATE: &[(&str, &str, &str, &str)] = &[];

/// Expected messages meshguard does not give, on purpose: (case, code, object, why).
const DELIBERATE_MISSES: &[(&str, &str, &str, &str)] = &[
    (
        "webook",
        "IST0139",
        "MutatingWebhookConfiguration istio-sidecar-injector-missing-overlap",
        "the test data's webhooks have no rules, so kube-apiserver never calls them and no pod is injected twice; Istio's analyzer ignores rules, meshguard's injector-overlap does not. The second message (a clientConfig Service that does not exist) is left to Istio: the pods then fail closed or start uninjected, which wl-missing-sidecar catches",
    ),
    (
        "webook",
        "IST0139",
        "MutatingWebhookConfiguration istio-sidecar-injector-overlap",
        "as above: webhooks without rules select nothing",
    ),
];

/// Whether a finding of `rule` is within what `code` judges. IST0101 (authorization policies)
/// judges namespace references only; meshguard's `ap-unknown-principal` also reports principals
/// naming ServiceAccounts or namespaces that do not exist, which the analyzer does not look at.
fn in_scope(code: &str, f: &Found) -> bool {
    match code {
        "IST0101" => f.4.contains("amespaces["),
        _ => true,
    }
}

const INJECTION_CODES: &[&str] = &["IST0102", "IST0103", "IST0123", "IST0148"];
const IMAGE_CODES: &[&str] = &["IST0158"];
const DR_CODES: &[&str] = &["IST0128", "IST0129"];

const INJECTION_EXPECTED: &[Message] = &[
    ("IST0102", "Namespace bar"),
    ("IST0103", "Pod default/noninjectedpod"),
    ("IST0123", "Namespace busted"),
    ("IST0123", "Namespace multi-ns-1"),
    ("IST0123", "Namespace multi-ns-2"),
    ("IST0123", "Namespace multi-ns-3"),
];

const CASES: &[Case] = &[
    Case {
        name: "istioInjection",
        files: &["injection.yaml"],
        mesh_config: None,
        codes: INJECTION_CODES,
        expected: INJECTION_EXPECTED,
    },
    Case {
        name: "istioInjectionEnableNamespacesByDefault",
        files: &[
            "injection.yaml",
            "common/sidecar-injector-enabled-nsbydefault.yaml",
        ],
        mesh_config: None,
        codes: INJECTION_CODES,
        expected: &[
            ("IST0148", "Namespace bar"),
            ("IST0103", "Pod default/noninjectedpod"),
            ("IST0123", "Namespace busted"),
            ("IST0123", "Namespace multi-ns-1"),
            ("IST0123", "Namespace multi-ns-2"),
            ("IST0123", "Namespace multi-ns-3"),
        ],
    },
    Case {
        name: "istioInjectionProxyImageMismatch",
        files: &[
            "injection-with-mismatched-sidecar.yaml",
            "common/sidecar-injector-configmap.yaml",
        ],
        mesh_config: None,
        codes: IMAGE_CODES,
        expected: &[
            ("IST0158", "Namespace enabled-namespace"),
            ("IST0158", "Namespace enabled-namespace-native"),
        ],
    },
    Case {
        name: "injectionImageDistroless",
        files: &[
            "injection-image-distroless.yaml",
            "common/sidecar-injector-configmap.yaml",
        ],
        mesh_config: Some("common/meshconfig.yaml"),
        codes: IMAGE_CODES,
        expected: &[("IST0158", "Namespace enabled-namespace")],
    },
    Case {
        name: "injectionImageDistrolessNoMeshConfig",
        files: &[
            "injection-image-distroless-no-meshconfig.yaml",
            "common/sidecar-injector-configmap.yaml",
        ],
        mesh_config: None,
        codes: IMAGE_CODES,
        expected: &[],
    },
    Case {
        name: "istioInjectionProxyImageMismatchAbsolute",
        files: &[
            "injection-with-mismatched-sidecar.yaml",
            "sidecar-injector-configmap-absolute-override.yaml",
        ],
        mesh_config: None,
        codes: IMAGE_CODES,
        expected: &[
            ("IST0158", "Namespace enabled-namespace"),
            ("IST0158", "Namespace enabled-namespace-native"),
        ],
    },
    Case {
        name: "istioInjectionProxyImageMismatchWithRevisionCanary",
        files: &[
            "injection-with-mismatched-sidecar.yaml",
            "sidecar-injector-configmap-absolute-override.yaml",
            "sidecar-injector-configmap-with-revision-canary.yaml",
        ],
        mesh_config: None,
        codes: IMAGE_CODES,
        expected: &[
            ("IST0158", "Namespace enabled-namespace"),
            ("IST0158", "Namespace enabled-namespace-native"),
            ("IST0158", "Namespace revision-namespace"),
        ],
    },
    Case {
        name: "portNameNotFollowConvention",
        files: &["service-no-port-name.yaml"],
        mesh_config: None,
        codes: &["IST0118"],
        expected: &[
            ("IST0118", "Service my-namespace1/my-service1"),
            ("IST0118", "Service my-namespace1/my-service1"),
            ("IST0118", "Service my-namespace2/my-service2"),
        ],
    },
    Case {
        name: "namedPort",
        files: &["service-port-name.yaml"],
        mesh_config: None,
        codes: &["IST0118"],
        expected: &[],
    },
    Case {
        name: "unnamedPortInSystemNamespace",
        files: &["service-no-port-name-system-namespace.yaml"],
        mesh_config: None,
        codes: &["IST0118"],
        expected: &[],
    },
    Case {
        name: "blockedCIDRsMissing",
        files: &["blocked-cidrs-missing.yaml"],
        mesh_config: None,
        codes: &["IST0175"],
        expected: &[("IST0175", "Deployment istio-system/istiod")],
    },
    Case {
        name: "authorizationpolicies",
        files: &["authorizationpolicies.yaml"],
        mesh_config: None,
        codes: &["IST0101", "IST0127"],
        expected: &[
            (
                "IST0127",
                "AuthorizationPolicy istio-system/meshwide-httpbin-v1",
            ),
            (
                "IST0127",
                "AuthorizationPolicy httpbin-empty/httpbin-empty-namespace-wide",
            ),
            ("IST0127", "AuthorizationPolicy httpbin/httpbin-nopods"),
            ("IST0101", "AuthorizationPolicy httpbin/httpbin-bogus-ns"),
            ("IST0101", "AuthorizationPolicy httpbin/httpbin-bogus-ns"),
            (
                "IST0101",
                "AuthorizationPolicy httpbin/httpbin-bogus-not-ns",
            ),
            (
                "IST0101",
                "AuthorizationPolicy httpbin/httpbin-bogus-not-ns",
            ),
            ("IST0127", "AuthorizationPolicy test-ambient/no-workload"),
        ],
    },
    Case {
        name: "destinationrule with no cacert, simple at destinationlevel",
        files: &["destinationrule-simple-destination.yaml"],
        mesh_config: None,
        codes: DR_CODES,
        expected: &[("IST0128", "DestinationRule db-tls")],
    },
    Case {
        name: "destinationrule with no cacert, mutual at destinationlevel",
        files: &["destinationrule-mutual-destination.yaml"],
        mesh_config: None,
        codes: DR_CODES,
        expected: &[("IST0128", "DestinationRule db-mtls")],
    },
    Case {
        name: "destinationrule with no cacert, simple at portlevel",
        files: &["destinationrule-simple-port.yaml"],
        mesh_config: None,
        codes: DR_CODES,
        expected: &[("IST0129", "DestinationRule db-tls")],
    },
    Case {
        name:
            "destinationrule with credentialname, simple at destinationlevel, no workloadSelector",
        files: &["destinationrule-simple-destination-credentialname.yaml"],
        mesh_config: None,
        codes: DR_CODES,
        expected: &[("IST0128", "DestinationRule db-tls")],
    },
    Case {
        name: "destinationrule with credentialname, simple at destinationlevel, workloadSelector",
        files: &["destinationrule-simple-destination-credentialname-selector.yaml"],
        mesh_config: None,
        codes: DR_CODES,
        expected: &[],
    },
    Case {
        name: "destinationrule with credentialname, simple at portlevel, no workloadSelector",
        files: &["destinationrule-simple-port-credentialname.yaml"],
        mesh_config: None,
        codes: DR_CODES,
        expected: &[("IST0129", "DestinationRule db-tls")],
    },
    Case {
        name: "destinationrule with credentialname, simple at portlevel, workloadSelector",
        files: &["destinationrule-simple-port-credentialname-selector.yaml"],
        mesh_config: None,
        codes: DR_CODES,
        expected: &[],
    },
    Case {
        name: "destinationrule with no cacert, mutual at portlevel",
        files: &["destinationrule-mutual-port.yaml"],
        mesh_config: None,
        codes: DR_CODES,
        expected: &[("IST0129", "DestinationRule db-mtls")],
    },
    Case {
        name: "destinationrule with no cacert, mutual at destinationlevel and simple at port level",
        files: &["destinationrule-compound-simple-mutual.yaml"],
        mesh_config: None,
        codes: DR_CODES,
        expected: &[
            ("IST0128", "DestinationRule db-mtls"),
            ("IST0129", "DestinationRule db-mtls"),
        ],
    },
    Case {
        name: "destinationrule with no cacert, simple at destinationlevel and mutual at port level",
        files: &["destinationrule-compound-mutual-simple.yaml"],
        mesh_config: None,
        codes: DR_CODES,
        expected: &[
            ("IST0129", "DestinationRule db-mtls"),
            ("IST0128", "DestinationRule db-mtls"),
        ],
    },
    Case {
        name: "destinationrule with both cacerts",
        files: &["destinationrule-with-ca.yaml"],
        mesh_config: None,
        codes: DR_CODES,
        expected: &[],
    },
    Case {
        name: "webook",
        files: &["webhook.yaml"],
        mesh_config: None,
        codes: &["IST0139"],
        expected: &[
            (
                "IST0139",
                "MutatingWebhookConfiguration istio-sidecar-injector-missing-overlap",
            ),
            (
                "IST0139",
                "MutatingWebhookConfiguration istio-sidecar-injector-missing-overlap",
            ),
            (
                "IST0139",
                "MutatingWebhookConfiguration istio-sidecar-injector-overlap",
            ),
        ],
    },
    Case {
        name: "Application Pod SecurityContext with UID 1337",
        files: &["pod-sec-uid.yaml"],
        mesh_config: None,
        codes: &["IST0144"],
        expected: &[("IST0144", "Pod pod-sec-uid")],
    },
    Case {
        name: "Application Container SecurityContext with UID 1337",
        files: &["pod-con-sec-uid.yaml"],
        mesh_config: None,
        codes: &["IST0144"],
        expected: &[("IST0144", "Pod con-sec-uid")],
    },
    Case {
        name: "Deployment Pod SecurityContext with UID 1337",
        files: &["deployment-pod-sec-uid.yaml"],
        mesh_config: None,
        codes: &["IST0144"],
        expected: &[("IST0144", "Deployment deploy-pod-sec-uid")],
    },
    Case {
        name: "Deployment Container SecurityContext with UID 1337",
        files: &["deployment-con-sec-uid.yaml"],
        mesh_config: None,
        codes: &["IST0144"],
        expected: &[("IST0144", "Deployment deploy-con-sec-uid")],
    },
    Case {
        name: "Detect `image: auto` in non-injected pods",
        files: &["image-auto.yaml"],
        mesh_config: None,
        codes: &["IST0146", "IST0147"],
        expected: &[
            (
                "IST0146",
                "Deployment not-injected/non-injected-gateway-deployment",
            ),
            ("IST0147", "Pod default/injected-pod"),
        ],
    },
    Case {
        name: "KubernetesGatewaySelector",
        files: &["k8sgateway-selector.yaml"],
        mesh_config: None,
        codes: &["IST0166"],
        expected: &[
            ("IST0166", "RequestAuthentication default/ra-ineffective"),
            ("IST0166", "AuthorizationPolicy default/ap-ineffective"),
        ],
    },
];

/// A finding of `check --format json`: (rule, kind, namespace, name, path).
type Found = (String, String, String, String, String);

fn check(case: &Case) -> Vec<Found> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/istio-analyze");
    let mut args: Vec<String> = ["meshguard", "check", "--complete", "--format", "json"]
        .map(String::from)
        .to_vec();
    if let Some(m) = case.mesh_config {
        args.push("--mesh-config".into());
        args.push(dir.join(m).display().to_string());
    }
    args.extend(case.files.iter().map(|f| dir.join(f).display().to_string()));
    let Command::Check(check_args) = Cli::try_parse_from(&args).expect("arguments").command else {
        panic!("not check");
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = check::execute(check_args, &mut &b""[..], &mut out, &mut err).code();
    assert!(
        code <= 1,
        "{}: check exited {code}: {}",
        case.name,
        String::from_utf8_lossy(&err)
    );
    let report: Value = serde_json::from_slice(&out).expect("JSON report");
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
            (s("rule"), s("kind"), s("namespace"), s("name"), s("path"))
        })
        .collect()
}

/// Whether a finding is on the object an analyzer message names.
fn on_object(f: &Found, object: &str) -> bool {
    let (kind, rest) = object.split_once(' ').expect("Kind name");
    let (ns, name) = match rest.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, rest),
    };
    if kind == "Namespace" {
        return f.1 == "Namespace" && f.3 == name;
    }
    f.1 == kind && f.3 == name && ns.is_none_or(|ns| f.2 == ns)
}

/// Whether a finding is in the namespace a namespace-level message names.
fn in_namespace(f: &Found, object: &str) -> bool {
    object
        .strip_prefix("Namespace ")
        .is_some_and(|ns| f.2 == ns)
}

fn rule_of(code: &str) -> Option<(&'static str, bool)> {
    RULES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, r, per_ns)| (*r, *per_ns))
}

#[test]
fn meshguard_covers_istioctl_analyze_on_its_own_test_data() {
    let mut covered = 0;
    let mut left = 0;
    let mut missed = 0;
    let mut problems = Vec::new();
    for case in CASES {
        let found = check(case);
        // 1. Every expected message of a covered code is matched, as many times as expected on
        //    one object (two bad namespace patterns are two findings).
        let mut wanted: BTreeMap<Message, usize> = BTreeMap::new();
        for m in case.expected {
            *wanted.entry(*m).or_default() += 1;
        }
        for ((code, object), n) in &wanted {
            let Some((rule, per_ns)) = rule_of(code) else {
                assert!(
                    LEFT_TO_ISTIO.iter().any(|(c, _)| c == code),
                    "{code} has neither a rule nor a reason"
                );
                left += n;
                if *code == "IST0148" {
                    // Informational: what matters is that meshguard does not call the
                    // namespace uninjected.
                    if found
                        .iter()
                        .any(|f| f.0 == "ns-injection-missing" && on_object(f, object))
                    {
                        problems.push(format!(
                            "{}: {object} is injected by enableNamespacesByDefault (IST0148), yet ns-injection-missing fires",
                            case.name
                        ));
                    }
                }
                continue;
            };
            if DELIBERATE_MISSES
                .iter()
                .any(|(c, m, o, _)| *c == case.name && m == code && o == object)
            {
                missed += n;
                continue;
            }
            let hits = found
                .iter()
                .filter(|f| {
                    f.0 == rule
                        && in_scope(code, f)
                        && if per_ns {
                            in_namespace(f, object)
                        } else {
                            on_object(f, object)
                        }
                })
                .count();
            let need = if per_ns { 1 } else { *n };
            if hits >= need {
                covered += n;
            } else {
                problems.push(format!(
                    "{}: {code} on {object} expected {need}×, {rule} found {hits}×",
                    case.name
                ));
            }
        }
        // 2. No finding of the analyzer's rules that it contradicts.
        for f in &found {
            let codes: Vec<&str> = case
                .codes
                .iter()
                .copied()
                .filter(|c| rule_of(c).is_some_and(|(r, _)| r == f.0) && in_scope(c, f))
                .collect();
            if codes.is_empty() {
                continue;
            }
            let expected = case.expected.iter().any(|(c, object)| {
                codes.contains(c)
                    && (on_object(f, object)
                        || (rule_of(c).is_some_and(|(_, per_ns)| per_ns)
                            && in_namespace(f, object)))
            });
            let deliberate = DELIBERATE
                .iter()
                .any(|(c, r, o, _)| *c == case.name && *r == f.0 && on_object(f, o));
            if !expected && !deliberate {
                problems.push(format!(
                    "{}: meshguard raises {} on {} {}/{}, which the analyzer does not",
                    case.name, f.0, f.1, f.2, f.3
                ));
            }
        }
    }
    let total: usize = CASES.iter().map(|c| c.expected.len()).sum();
    eprintln!(
        "istioctl analyze parity: {covered} of {total} expected messages raised by meshguard, {missed} not on purpose, {left} left to Istio (codes {})",
        LEFT_TO_ISTIO
            .iter()
            .map(|(c, _)| *c)
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(covered + missed + left, total);
}
