"""Chart tests: lint, value checks, rendered-manifest safety properties, Kubernetes schemas.

Run through tests/chart.sh (it prepares the virtualenv and HELM_DRIVER=memory).
`python tests/chart/test_chart.py --update` rewrites the golden Deployment in
tests/fixtures/chart/ that the Rust engine test (tests/chart_deployment.rs) evaluates."""

import base64
import datetime
import json
import os
import re
import sys
import traceback

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import helmlib  # noqa: E402
from helmlib import CHART, ROOT, Cluster, lint, render  # noqa: E402

NS = "mesh-sec"  # a release namespace other than the chart name, to catch hard-coded names
GOLDEN = os.path.join(ROOT, "tests", "fixtures", "chart", "deployment.yaml")
GOLDEN_POLICY = os.path.join(ROOT, "tests", "fixtures", "chart", "policy.yaml")

CERT_MANAGER = {"certificates": {"generate": {"enabled": False}, "certManager": {"enabled": True}}}
CA_B64 = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()
EXISTING = {"certificates": {"generate": {"enabled": False},
                             "existingSecret": {"name": "my-tls", "caBundle": CA_B64}}}
ALL_OPTIONAL = {"serviceMonitor": {"enabled": True}, "networkPolicy": {"enabled": True},
                "grafanaDashboard": {"enabled": True}}

# Kinds meshguard handles (issue 6): group -> versions, resources.
VALIDATE_KINDS = {
    ("", "v1"): {"pods", "pods/ephemeralcontainers", "namespaces", "services", "serviceaccounts",
                 "replicationcontrollers"},
    ("apps", "v1"): {"deployments", "statefulsets", "daemonsets", "replicasets"},
    ("batch", "v1"): {"jobs", "cronjobs"},
    ("security.istio.io", "v1"): {"peerauthentications", "authorizationpolicies", "requestauthentications"},
    ("security.istio.io", "v1beta1"): {"peerauthentications", "authorizationpolicies", "requestauthentications"},
    ("networking.istio.io", "v1"): {"destinationrules", "sidecars"},
    ("networking.istio.io", "v1beta1"): {"destinationrules", "sidecars"},
    ("networking.istio.io", "v1alpha3"): {"destinationrules", "sidecars", "envoyfilters"},
    # meshguard's own PolicyExceptions (CREATE and UPDATE: deleting one never weakens anything).
    ("meshguard.io", "v1alpha1"): {"policyexceptions"},
}
MUTATE_KINDS = {
    ("", "v1"): {"pods", "namespaces", "replicationcontrollers"},
    ("apps", "v1"): {"deployments", "statefulsets", "daemonsets", "replicasets"},
    ("batch", "v1"): {"jobs", "cronjobs"},
    ("security.istio.io", "v1"): {"peerauthentications"},
    ("security.istio.io", "v1beta1"): {"peerauthentications"},
}
RBAC_READS = {
    "": {"namespaces", "serviceaccounts", "pods", "services", "replicationcontrollers"},
    "apps": {"deployments", "statefulsets", "daemonsets", "replicasets"},
    "batch": {"jobs", "cronjobs"},
    "security.istio.io": {"peerauthentications", "authorizationpolicies", "requestauthentications"},
    "networking.istio.io": {"destinationrules", "serviceentries", "envoyfilters", "sidecars"},
    # The ambient topology: waypoints, ingress routes.
    "gateway.networking.k8s.io": {"gateways", "gatewayclasses", "httproutes"},
    # The mesh as installed: Istio's injector webhooks (cluster-scoped).
    "admissionregistration.k8s.io": {"mutatingwebhookconfigurations"},
    # PolicyExceptions (serve watches them, audit lists them).
    "meshguard.io": {"policyexceptions"},
}
# The mesh's MeshConfig and injector ConfigMaps, read in the Istio namespace only.
MESH_CONFIG_MAPS = {"": {"configmaps"}}
MESH_KEYS = ("rootNamespace", "trustDomain", "trustDomainAliases", "enableAutoMtls")


def expect_failure(values, *fragments, lint_text=True):
    """Both `helm lint` and `helm install` must refuse `values` with a message containing each
    fragment. (helm-sdkpy returns lint errors without their text; only the template `fail`
    messages, taken from Helm's log, can be matched.)"""
    errors, _ = lint(values)
    assert errors, f"lint accepted {values}"
    if lint_text:
        text = json.dumps(errors)
        for f in fragments:
            assert f in text, f"expected {f!r} in the lint errors, got: {text}"
    try:
        render(values, namespace=NS)
    except Exception as e:  # helm_sdkpy.InstallError
        text = str(e)
        for f in fragments:
            assert f in text, f"expected {f!r} in the error, got: {text}"
        return text
    raise AssertionError(f"render with {values} succeeded; expected a failure")


def rule_kinds(webhook):
    """(group, version) -> resources, per operation set."""
    out = {}
    for r in webhook["rules"]:
        for g in r["apiGroups"]:
            for v in r["apiVersions"]:
                for res in r["resources"]:
                    out.setdefault((g, v), {})[res] = set(r["operations"])
    return out


# --- lint -------------------------------------------------------------------------------------

def test_lint_default_values():
    errors, _ = lint()
    assert not errors, errors


def test_lint_cert_manager_mode():
    errors, _ = lint(CERT_MANAGER)
    assert not errors, errors


def test_lint_existing_secret_mode():
    errors, _ = lint(EXISTING)
    assert not errors, errors


def test_lint_all_optional_pieces():
    errors, _ = lint(ALL_OPTIONAL)
    assert not errors, errors


def test_lint_rejects_a_typo():
    errors, _ = lint({"replicaCont": 3})
    assert errors, "a misspelled top-level key must be a lint error"
    errors, _ = lint({"webhook": {"timeoutSecond": 5}})
    assert errors, "a misspelled nested key must be a lint error"


def test_lint_rejects_wrong_types():
    errors, _ = lint({"replicaCount": "two"})
    assert errors, "a string replicaCount must be a lint error"
    errors, _ = lint({"webhook": {"failurePolicy": "fail"}})
    assert errors, "failurePolicy is an enum (Fail, Ignore)"
    errors, _ = lint({"config": {"mode": "enforcing"}})
    assert errors, "config.mode is an enum"
    errors, _ = lint({"config": {"rules": {"pa-permissive-mtls": {"action": "block"}}}})
    assert errors, "rule actions are an enum"
    errors, _ = lint({"config": {"trustDomain": "Corp_Example"}})
    assert errors, "a trust domain is lowercase DNS labels (Istio's ValidateTrustDomain)"
    errors, _ = lint({"istioNamespace": "Istio System"})
    assert errors, "istioNamespace is a namespace name"


# --- value combinations the templates refuse (`fail`) -----------------------------------------

def test_two_certificate_sources_fail():
    expect_failure(CERT_MANAGER | {"certificates": {"certManager": {"enabled": True}}},
                   "exactly one certificate source", "got 2")


def test_no_certificate_source_fails():
    expect_failure({"certificates": {"generate": {"enabled": False}}},
                   "exactly one certificate source", "got 0")


def test_existing_secret_needs_ca_bundle():
    expect_failure({"certificates": {"generate": {"enabled": False}, "existingSecret": {"name": "x"}}},
                   "caBundle is required")


def test_audit_mode_with_fail_policy_fails():
    expect_failure({"config": {"mode": "audit"}}, "must not register a fail-closed webhook")


def test_schema_enforced_at_install():
    expect_failure({"replicaCont": 3}, "replicaCont", lint_text=False)


def test_grace_period_must_cover_prestop_and_drain():
    expect_failure({"terminationGracePeriodSeconds": 20}, "terminationGracePeriodSeconds (20)")


# --- rendered webhooks --------------------------------------------------------------------------

def check_common_webhook(wh, service, path):
    assert wh["sideEffects"] == "None", wh
    assert wh["admissionReviewVersions"] == ["v1"], wh
    assert wh["timeoutSeconds"] == 5, wh
    assert wh["matchPolicy"] == "Equivalent", wh
    assert len(wh["name"].split(".")) >= 3, f"webhook name needs 3+ DNS labels: {wh['name']}"
    svc = wh["clientConfig"]["service"]
    assert svc["name"] == service["metadata"]["name"] and svc["namespace"] == NS, svc
    assert svc["path"] == path, svc
    assert svc["port"] in [p["port"] for p in service["spec"]["ports"]], svc
    exprs = wh["namespaceSelector"]["matchExpressions"]
    by_key = {e["key"]: e for e in exprs}
    names = by_key["kubernetes.io/metadata.name"]
    assert names["operator"] == "NotIn", names
    for ns in ("kube-system", "kube-node-lease", NS):
        assert ns in names["values"], f"{ns} must be excluded: {names}"
    opt_out = by_key["meshguard.io/ignore"]
    assert opt_out == {"key": "meshguard.io/ignore", "operator": "NotIn", "values": ["true"]}, opt_out
    assert "objectSelector" not in wh, "objects must not be able to opt themselves out"


def test_validating_webhook_safety():
    r = render(namespace=NS)
    service = r.one("Service")
    vwc = r.one("ValidatingWebhookConfiguration")
    [wh] = vwc["webhooks"]
    assert wh["name"] == "validate.meshguard.io"
    check_common_webhook(wh, service, "/validate")
    assert wh["failurePolicy"] == "Fail"
    kinds = rule_kinds(wh)
    assert {k: set(v) for k, v in kinds.items()} == VALIDATE_KINDS, kinds
    for (group, _), resources in kinds.items():
        for res, ops in resources.items():
            if group == "security.istio.io":
                assert ops == {"CREATE", "UPDATE", "DELETE"}, (group, res, ops)
            elif res == "pods/ephemeralcontainers":
                # kubectl debug's PATCH of the subresource arrives as an UPDATE.
                assert ops == {"UPDATE"}, (group, res, ops)
            else:
                assert ops == {"CREATE", "UPDATE"}, (group, res, ops)


def test_mutating_webhook_safety():
    r = render(namespace=NS)
    mwc = r.one("MutatingWebhookConfiguration")
    [wh] = mwc["webhooks"]
    assert wh["name"] == "mutate.meshguard.io"
    check_common_webhook(wh, r.one("Service"), "/mutate")
    assert wh["reinvocationPolicy"] == "IfNeeded"
    assert wh["failurePolicy"] == "Fail"
    kinds = rule_kinds(wh)
    assert {k: set(v) for k, v in kinds.items()} == MUTATE_KINDS, kinds
    assert all(ops == {"CREATE", "UPDATE"} for res in kinds.values() for ops in res.values())


def test_audit_mode_registers_fail_open_webhooks():
    r = render({"config": {"mode": "audit"}, "webhook": {"failurePolicy": "Ignore"}}, namespace=NS)
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        assert r.one(kind)["webhooks"][0]["failurePolicy"] == "Ignore"
    policy = yaml.safe_load(r.one("ConfigMap")["data"]["policy.yaml"])
    assert policy["mode"] == "audit"


def test_timeout_and_exclusions_are_values():
    r = render({"webhook": {"timeoutSeconds": 3, "excludeNamespaces": ["legacy"], "optOutLabel": ""}}, namespace=NS)
    wh = r.one("ValidatingWebhookConfiguration")["webhooks"][0]
    assert wh["timeoutSeconds"] == 3
    exprs = wh["namespaceSelector"]["matchExpressions"]
    assert [e["key"] for e in exprs] == ["kubernetes.io/metadata.name"], exprs
    assert exprs[0]["values"] == ["kube-system", "kube-node-lease", NS, "legacy"], exprs


def test_mutating_webhook_can_be_turned_off():
    r = render({"webhook": {"mutating": False}}, namespace=NS)
    assert not r.all("MutatingWebhookConfiguration")
    r.one("ValidatingWebhookConfiguration")


# --- rendered Deployment, PDB, RBAC, policy -----------------------------------------------------

def test_deployment_security_and_availability():
    r = render(namespace=NS)
    d = r.one("Deployment")
    spec = d["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and isinstance(psc["runAsUser"], int) and psc["runAsUser"] > 0, psc
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, psc
    [c] = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True, sc
    assert sc["allowPrivilegeEscalation"] is False, sc
    assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], sc
    assert "hostNetwork" not in pod and "hostPID" not in pod
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"https": 8443, "admin": 9090}, ports
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert c[probe]["httpGet"] == {"path": path, "port": "admin"}, c[probe]
    sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert "exec" not in c["lifecycle"]["preStop"], "the image has no shell"
    drain = next(a for a in c["args"] if a.startswith("--drain-timeout="))
    drain_s = int(drain.split("=")[1].rstrip("s"))
    assert pod["terminationGracePeriodSeconds"] > sleep + drain_s, (pod["terminationGracePeriodSeconds"], sleep, drain_s)
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"], c["resources"]
    assert c["args"][0] == "serve", c["args"]
    assert not c["image"].endswith(":latest"), c["image"]
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", "Lease identity"
    assert "--reports=wgpolicyk8s" in c["args"], c["args"]
    # Certificate and policy files are where the args say, from the right objects.
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert all("subPath" not in m for m in c["volumeMounts"]), "subPath mounts never see Secret updates"
    vols = {v["name"]: v for v in pod["volumes"]}
    args = dict(a.split("=", 1) for a in c["args"][1:] if "=" in a)
    assert args["--tls-cert"] == mounts["tls"] + "/tls.crt" and args["--tls-key"] == mounts["tls"] + "/tls.key"
    assert args["--config"] == mounts["policy"] + "/policy.yaml"
    assert vols["tls"]["secret"]["secretName"] == r.one("Secret")["metadata"]["name"]
    assert vols["policy"]["configMap"]["name"] == r.one("ConfigMap")["metadata"]["name"]
    # Spread and anti-affinity select exactly these pods.
    labels = spec["template"]["metadata"]["labels"]
    assert labels["sidecar.istio.io/inject"] == "false", "meshguard must not be in the mesh"
    sel = spec["selector"]["matchLabels"]
    assert all(labels[k] == v for k, v in sel.items())
    keys = {t["topologyKey"] for t in pod["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}, keys
    assert all(t["labelSelector"]["matchLabels"] == sel for t in pod["topologySpreadConstraints"])
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == sel
    assert pod["serviceAccountName"] == r.one("ServiceAccount")["metadata"]["name"]
    pdb = r.one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1 and pdb["spec"]["selector"]["matchLabels"] == sel
    svc = r.one("Service")
    assert svc["spec"]["selector"] == sel
    assert {p["targetPort"] for p in svc["spec"]["ports"]} == {"https", "admin"}


def test_single_replica_has_no_blocking_pdb():
    r = render({"replicaCount": 1}, namespace=NS)
    assert not r.all("PodDisruptionBudget"), "a PDB with minAvailable 1 on one replica blocks drains"
    assert r.one("Deployment")["spec"]["replicas"] == 1


def test_service_targets_https_port():
    r = render(namespace=NS)
    svc = r.one("Service")
    https = next(p for p in svc["spec"]["ports"] if p["targetPort"] == "https")
    assert https["port"] == 443 and https["name"].startswith("https"), https


def test_rbac_is_read_only_and_minimal():
    r = render(namespace=NS)
    role = r.one("ClusterRole", "meshguard")
    seen = {}
    for rule in role["rules"]:
        assert set(rule["verbs"]) == {"get", "list", "watch"}, rule
        assert "*" not in rule["resources"] and "*" not in rule["apiGroups"], rule
        assert "resourceNames" not in rule
        for g in rule["apiGroups"]:
            seen.setdefault(g, set()).update(rule["resources"])
    assert seen == RBAC_READS, seen
    assert "secrets" not in seen.get("", set())
    binding = r.one("ClusterRoleBinding", "meshguard")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": r.one("ServiceAccount")["metadata"]["name"],
                                    "namespace": NS}]
    # ConfigMaps only in the Istio namespace, read-only.
    ns_role = r.one("Role", "meshguard-istio-config")
    assert ns_role["metadata"]["namespace"] == "istio-system", ns_role["metadata"]
    seen = {}
    for rule in ns_role["rules"]:
        assert set(rule["verbs"]) == {"get", "list", "watch"}, rule
        for g in rule["apiGroups"]:
            seen.setdefault(g, set()).update(rule["resources"])
    assert seen == MESH_CONFIG_MAPS, seen
    ns_binding = r.one("RoleBinding", "meshguard-istio-config")
    assert ns_binding["metadata"]["namespace"] == "istio-system"
    assert ns_binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                     "name": ns_role["metadata"]["name"]}
    assert ns_binding["subjects"] == binding["subjects"]
    # Another Istio namespace moves the Role; it can be left out (Istio not installed yet).
    other = render({"istioNamespace": "istio-mesh"}, namespace=NS)
    assert other.one("Role", "meshguard-istio-config")["metadata"]["namespace"] == "istio-mesh"
    assert "--istio-namespace=istio-mesh" in other.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    none = render({"rbac": {"istioNamespaceRole": False}}, namespace=NS)
    assert [r["metadata"]["name"] for r in none.all("Role") + none.all("RoleBinding")] == \
        ["meshguard-lease", "meshguard-lease"], none.kinds()


REPORT_KINDS = {"wgpolicyk8s": ("wgpolicyk8s.io", {"policyreports", "clusterpolicyreports"}),
                "openreports": ("openreports.io", {"reports", "clusterreports"})}


def test_rbac_for_reports_and_the_lease_is_exactly_what_meshguard_does():
    sa = {"kind": "ServiceAccount", "name": "meshguard", "namespace": NS}
    for api, (group, resources) in REPORT_KINDS.items():
        r = render({"reports": {"api": api}}, namespace=NS)
        # Reports: exactly the two kinds of the chosen API, read and write, nothing else.
        role = r.one("ClusterRole", "meshguard-reports")
        assert role["rules"] == [{"apiGroups": [group], "resources": sorted(resources, reverse=True),
                                  "verbs": ["get", "list", "watch", "create", "update", "patch",
                                            "delete"]}], role["rules"]
        binding = r.one("ClusterRoleBinding", "meshguard-reports")
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                      "name": "meshguard-reports"}
        assert binding["subjects"] == [sa]
        args = r.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"--reports={api}" in args, args
    # The Lease: only in the release namespace; get and update only on meshguard's Lease.
    r = render(namespace=NS)
    lease = r.one("Role", "meshguard-lease")
    assert lease["metadata"]["namespace"] == NS
    assert lease["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["meshguard-audit"],
         "verbs": ["get", "update"]}], lease["rules"]
    rb = r.one("RoleBinding", "meshguard-lease")
    assert rb["metadata"]["namespace"] == NS and rb["subjects"] == [sa]
    assert rb["roleRef"]["name"] == lease["metadata"]["name"] and rb["roleRef"]["kind"] == "Role"
    # Reports off: no write access at all, and meshguard is told.
    r = render({"reports": {"enabled": False}}, namespace=NS)
    assert [c["metadata"]["name"] for c in r.all("ClusterRole")] == ["meshguard"]
    args = r.one("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--reports=none" in args, args


def report_crds(r):
    return [c for c in r.all("CustomResourceDefinition") if c["spec"]["group"] != "meshguard.io"]


def test_report_crds_only_on_request_kept_on_uninstall_and_unchanged():
    assert not report_crds(render(namespace=NS))
    fixtures = os.path.join(ROOT, "tests", "fixtures", "policy-report-crds")
    for api, (group, resources) in REPORT_KINDS.items():
        r = render({"reports": {"api": api, "installCRDs": True}}, namespace=NS)
        crds = report_crds(r)
        assert {c["spec"]["names"]["plural"] for c in crds} == resources, crds
        for crd in crds:
            assert crd["spec"]["group"] == group
            assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
            assert crd["metadata"]["labels"]["app.kubernetes.io/part-of"] == "meshguard"
            with open(os.path.join(fixtures, f"{crd['metadata']['name'].split('.', 1)[1]}_"
                                             f"{crd['metadata']['name'].split('.')[0]}.yaml")) as f:
                upstream = yaml.safe_load(f)
            assert crd["spec"] == upstream["spec"], crd["metadata"]["name"]
    # The chart's copies are the test fixtures, byte for byte.
    for name in os.listdir(fixtures):
        if name.endswith(".yaml"):
            with open(os.path.join(fixtures, name), "rb") as a, \
                    open(os.path.join(CHART, "files", "crds", name), "rb") as b:
                assert a.read() == b.read(), name


def test_policy_configmap_matches_values():
    values = {"config": {"mode": "warn", "trustDomain": "corp.example", "injectionRevision": "canary",
                         "rules": {"pa-permissive-mtls": {"action": "deny",
                                                          "exemptions": [{"namespaces": ["legacy"]}]}},
                         "mutations": {"peer-authentication-strict-default": {"enabled": False}}}}
    r = render(values, namespace=NS)
    policy = yaml.safe_load(r.one("ConfigMap")["data"]["policy.yaml"])
    expected = helmlib.merge(helmlib.default_values()["config"], values["config"])
    expected = {k: v for k, v in expected.items() if v is not None}
    assert policy == expected, (policy, expected)
    # An empty injectionRevision is left out (meshguard refuses an empty one), and so are the
    # mesh values left unset: meshguard takes them from the mesh.
    policy = yaml.safe_load(render(namespace=NS).one("ConfigMap")["data"]["policy.yaml"])
    assert "injectionRevision" not in policy, policy
    for key in MESH_KEYS:
        assert key not in policy, (key, policy)
    assert policy == {k: v for k, v in helmlib.default_values()["config"].items()
                      if k != "injectionRevision" and k not in MESH_KEYS}
    # Set ones are written, an explicit empty alias list included (it replaces the mesh's).
    values = {"config": {"rootNamespace": "mesh-root", "trustDomainAliases": [], "enableAutoMtls": False,
                         "trustDomain": ""}}
    policy = yaml.safe_load(render(values, namespace=NS).one("ConfigMap")["data"]["policy.yaml"])
    assert policy["rootNamespace"] == "mesh-root" and policy["trustDomainAliases"] == []
    assert policy["enableAutoMtls"] is False and "trustDomain" not in policy, policy


def test_policy_change_rolls_the_pods():
    a = render(namespace=NS).one("Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/policy"]
    b = render({"config": {"mode": "warn"}}, namespace=NS).one("Deployment")
    assert b["spec"]["template"]["metadata"]["annotations"]["checksum/policy"] != a


# --- certificates -------------------------------------------------------------------------------

def load_cert(pem):
    from cryptography import x509
    return x509.load_pem_x509_certificate(pem)


def test_generated_certificate_is_valid_for_the_service():
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    r = render(namespace=NS)
    secret = r.one("Secret")
    assert secret["type"] == "kubernetes.io/tls"
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    ca, leaf = load_cert(data["ca.crt"]), load_cert(data["tls.crt"])
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    for name in (f"meshguard.{NS}.svc", f"meshguard.{NS}.svc.cluster.local", f"meshguard.{NS}", "meshguard"):
        assert name in sans, (name, sans)
    assert leaf.issuer == ca.subject
    pub = ca.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        pub.verify(leaf.signature, leaf.tbs_certificate_bytes, padding.PKCS1v15(), leaf.signature_hash_algorithm)
    else:
        pub.verify(leaf.signature, leaf.tbs_certificate_bytes, ec.ECDSA(leaf.signature_hash_algorithm))
    days = (leaf.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)).days
    assert 3640 < days <= 3650, days
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        wh = r.one(kind)["webhooks"][0]
        assert base64.b64decode(wh["clientConfig"]["caBundle"]) == data["ca.crt"], kind
        assert "cert-manager.io/inject-ca-from" not in (r.one(kind)["metadata"].get("annotations") or {})


def test_generated_certificate_is_reused_on_upgrade():
    with Cluster(NS) as cluster:
        first = cluster.install()
        second = cluster.upgrade({"config": {"mode": "warn"}})
        a, b = first.one("Secret")["data"], second.one("Secret")["data"]
        assert a == b, "an upgrade must not rotate the generated certificate"
        bundle = second.one("ValidatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["caBundle"]
        assert bundle == a["ca.crt"]
    other = render(namespace=NS).one("Secret")["data"]
    assert other["tls.crt"] != a["tls.crt"], "a new install generates a new pair"


def test_cert_manager_mode():
    r = render(CERT_MANAGER, namespace=NS)
    certs = {c["metadata"]["name"]: c for c in r.all("Certificate")}
    serving = certs["meshguard-serving"]
    ref = f"{NS}/meshguard-serving"
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        obj = r.one(kind)
        assert obj["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == ref, obj["metadata"]
        assert "caBundle" not in obj["webhooks"][0]["clientConfig"], "cert-manager injects the caBundle"
    assert not r.all("Secret"), "cert-manager writes the Secret"
    assert set(serving["spec"]["dnsNames"]) == {f"meshguard.{NS}.svc", f"meshguard.{NS}.svc.cluster.local",
                                                f"meshguard.{NS}", "meshguard"}
    vol = next(v for v in r.one("Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
    assert vol["secret"]["secretName"] == serving["spec"]["secretName"]
    issuers = {i["metadata"]["name"] for i in r.all("Issuer")}
    assert issuers == {"meshguard-selfsigned", "meshguard-ca"}, issuers
    assert serving["spec"]["issuerRef"]["name"] == "meshguard-ca"
    assert certs["meshguard-ca"]["spec"]["isCA"] is True


def test_cert_manager_with_own_issuer():
    values = helmlib.merge(CERT_MANAGER, {"certificates": {"certManager": {
        "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}}}})
    r = render(values, namespace=NS)
    assert not r.all("Issuer")
    [cert] = r.all("Certificate")
    assert cert["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}


def test_existing_secret_mode():
    r = render(EXISTING, namespace=NS)
    assert not r.all("Secret") and not r.all("Certificate")
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        assert r.one(kind)["webhooks"][0]["clientConfig"]["caBundle"] == CA_B64
    vol = next(v for v in r.one("Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
    assert vol["secret"]["secretName"] == "my-tls"


def test_policy_exception_crd_is_installed_kept_and_what_meshguard_reads():
    r = render(namespace=NS)
    [crd] = [c for c in r.all("CustomResourceDefinition") if c["spec"]["group"] == "meshguard.io"]
    assert crd["metadata"]["name"] == "policyexceptions.meshguard.io"
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crd["metadata"]["labels"]["app.kubernetes.io/part-of"] == "meshguard"
    assert crd["spec"]["scope"] == "Namespaced" and crd["spec"]["names"]["kind"] == "PolicyException"
    [version] = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    # Exactly the fields meshguard reads (src/config/exceptions.rs ResourceSpec).
    assert set(spec["properties"]) == {"rules", "names", "kinds", "objectSelector", "reason",
                                       "owner", "ticket", "expires"}, spec["properties"]
    assert set(spec["required"]) == {"rules", "reason", "expires"}
    # The plain lines of the template are the CRD as it is (the end-to-end suite applies them).
    with open(os.path.join(CHART, "templates", "policyexception-crd.yaml")) as f:
        body = f.read().split("*/ -}}", 1)[1]
    plain = yaml.safe_load("\n".join(line for line in body.splitlines() if "{{" not in line))
    assert plain["spec"] == crd["spec"], "the template's plain lines differ from the rendered CRD"
    # Off on request; meshguard still reads PolicyExceptions if someone else installs the CRD.
    r = render({"policyExceptions": {"installCRD": False}}, namespace=NS)
    assert not r.all("CustomResourceDefinition")
    # The policy's settings reach the ConfigMap.
    r = render({"config": {"policyExceptions": {"namespaces": ["payments"], "maxDuration": "30d"},
                           "platform": {"labels": ["env"]}}}, namespace=NS)
    policy = yaml.safe_load(r.one("ConfigMap")["data"]["policy.yaml"])
    assert policy["policyExceptions"]["namespaces"] == ["payments"]
    assert policy["platform"]["labels"] == ["env"]


# --- optional pieces ----------------------------------------------------------------------------

def test_optional_pieces_are_off_by_default():
    r = render(namespace=NS)
    for kind in ("ServiceMonitor", "NetworkPolicy", "Certificate", "Issuer"):
        assert not r.all(kind), kind
    assert r.kinds() == sorted(["ClusterRole", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding",
                                "ConfigMap", "CustomResourceDefinition", "Deployment",
                                "MutatingWebhookConfiguration", "PodDisruptionBudget",
                                "Role", "Role", "RoleBinding", "RoleBinding", "Secret", "Service",
                                "ServiceAccount", "ValidatingWebhookConfiguration"]), r.kinds()


def test_service_monitor_network_policy_dashboard():
    r = render(ALL_OPTIONAL, namespace=NS)
    sm = r.one("ServiceMonitor")
    svc = r.one("Service")
    port = sm["spec"]["endpoints"][0]["port"]
    assert port in [p["name"] for p in svc["spec"]["ports"]] and sm["spec"]["endpoints"][0]["path"] == "/metrics"
    np = r.one("NetworkPolicy")
    assert np["spec"]["policyTypes"] == ["Ingress"]
    [webhook_rule, admin_rule] = np["spec"]["ingress"]
    assert webhook_rule["ports"] == [{"port": "https", "protocol": "TCP"}]
    assert admin_rule["ports"] == [{"port": "admin", "protocol": "TCP"}]
    assert admin_rule["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    dash = json.loads(r.one("ConfigMap", "meshguard-dashboard")["data"]["meshguard.json"])
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    for metric in ("meshguard_admission_requests_total", "meshguard_violations_total",
                   "meshguard_admission_duration_seconds_bucket", "meshguard_tls_certificate_expiry_timestamp_seconds"):
        assert metric in exprs, metric
    assert "histogram_quantile(0.99" in exprs
    r = render(helmlib.merge(ALL_OPTIONAL, {"networkPolicy": {"apiserverCIDRs": ["10.0.0.0/24"]}}), namespace=NS)
    assert r.one("NetworkPolicy")["spec"]["ingress"][0]["from"] == [{"ipBlock": {"cidr": "10.0.0.0/24"}}]


def test_dashboard_file_uses_only_known_metrics():
    known = {"meshguard_admission_requests_total", "meshguard_admission_duration_seconds_bucket",
             "meshguard_violations_total", "meshguard_mutations_total",
             "meshguard_tls_certificate_expiry_timestamp_seconds", "meshguard_tls_reloads_total",
             "meshguard_build_info", "meshguard_cache_synced", "meshguard_audit_violations"}
    with open(os.path.join(CHART, "dashboards", "meshguard.json")) as f:
        text = f.read()
    used = set(re.findall(r"meshguard_[a-z_]+", text))
    assert used <= known, used - known


# --- values.yaml and values.schema.json ------------------------------------------------------

def test_every_value_is_commented_and_in_the_schema():
    """Each key of values.yaml down to the chart's own settings has a comment line right above
    it, and the schema closes every chart-owned object (additionalProperties: false)."""
    with open(os.path.join(CHART, "values.yaml")) as f:
        lines = f.read().splitlines()
    with open(os.path.join(CHART, "values.schema.json")) as f:
        schema = json.load(f)
    assert schema["additionalProperties"] is False

    def walk(props, prefix, depth):
        for key, sub in props.items():
            yield prefix + key, sub, depth
            if sub.get("additionalProperties") is False and "properties" in sub:
                yield from walk(sub["properties"], prefix + key + ".", depth + 1)

    values = helmlib.default_values()
    missing, uncommented, open_objects = [], [], []
    for path, sub, depth in walk(schema["properties"], "", 0):
        node = values
        for part in path.split("."):
            node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
        if node is KeyError:
            if path not in ("global",) and not path.startswith(("certificates.certManager.issuerRef.",
                                                                 "config.")):
                missing.append(path)
            continue
        key = path.split(".")[-1]
        indent = "  " * depth
        idx = next((i for i, line in enumerate(lines) if line.startswith(f"{indent}{key}:")), None)
        if idx is None or not lines[idx - 1].lstrip().startswith("#"):
            uncommented.append(path)
        if isinstance(node, dict) and sub.get("type") == "object" and "properties" in sub and \
                sub.get("additionalProperties") is not False:
            open_objects.append(path)
    assert not missing, f"in the schema but not in values.yaml: {missing}"
    assert not uncommented, f"values without a comment: {uncommented}"
    assert not open_objects, f"schema objects that accept typos: {open_objects}"


KNOBS = {
    "fullnameOverride": "guard",
    "image": {"digest": "sha256:" + "a" * 64, "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccount": {"create": False, "name": "existing-sa"},
    "podAntiAffinity": "hard",
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}]}}},
    "preStopSleepSeconds": 0,
    "extraArgs": ["--lookup-timeout=1s"],
    "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}],
    "priorityClassName": "system-cluster-critical",
    "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "podLabels": {"team": "platform"},
    "podAnnotations": {"example.com/owner": "platform"},
    "service": {"port": 8443},
}


def test_every_knob_renders():
    r = render(KNOBS, namespace=NS)
    pod = r.one("Deployment")["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert c["image"] == "meshguard/meshguard:0.1.0@sha256:" + "a" * 64, c["image"]
    assert pod["serviceAccountName"] == "existing-sa" and not r.all("ServiceAccount")
    assert r.one("ClusterRoleBinding", "guard")["subjects"][0]["name"] == "existing-sa"
    assert r.one("ClusterRoleBinding", "guard-reports")["subjects"][0]["name"] == "existing-sa"
    assert r.one("RoleBinding", "guard-lease")["subjects"][0]["name"] == "existing-sa"
    assert "requiredDuringSchedulingIgnoredDuringExecution" in pod["affinity"]["podAntiAffinity"]
    assert "nodeAffinity" in pod["affinity"]
    assert "lifecycle" not in c
    assert c["args"][-1] == "--lookup-timeout=1s"
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert r.one("Deployment")["metadata"]["name"] == "guard"
    wh = r.one("ValidatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["service"]
    assert wh == {"name": "guard", "namespace": NS, "path": "/validate", "port": 8443}, wh
    secret = r.one("Secret")
    assert secret["metadata"]["name"] == "guard-tls"
    from cryptography import x509
    leaf = load_cert(base64.b64decode(secret["data"]["tls.crt"]))
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert f"guard.{NS}.svc" in sans, sans
    r2 = render({"podAntiAffinity": "none", "rbac": {"create": False}}, namespace=NS)
    assert "affinity" not in r2.one("Deployment")["spec"]["template"]["spec"]
    assert not r2.all("ClusterRole") and not r2.all("ClusterRoleBinding")
    assert not r2.all("Role") and not r2.all("RoleBinding")


# --- Kubernetes schemas -------------------------------------------------------------------------

def test_rendered_objects_match_kubernetes_schemas():
    import kubernetes_validate
    checked = 0
    for values in ({}, ALL_OPTIONAL, CERT_MANAGER, EXISTING, KNOBS,
                   {"reports": {"installCRDs": True}}, {"reports": {"api": "openreports", "installCRDs": True}}):
        for doc in render(values, namespace=NS).docs:
            if doc["apiVersion"].startswith(("cert-manager.io/", "monitoring.coreos.com/")):
                continue  # CRDs: no offline schema
            for version in ("1.30.0", "1.33.0"):
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    raise AssertionError(f"{doc['kind']} {doc['metadata']['name']} (k8s {version}): {e.message} "
                                         f"at {list(e.path)}") from e
                checked += 1
    assert checked >= 40, checked


# --- golden Deployment for the engine test ------------------------------------------------------

def rendered_golden():
    r = render(namespace="meshguard")
    return r.one("Deployment"), r.one("ConfigMap")["data"]["policy.yaml"]


def test_golden_deployment_is_current():
    deployment, policy = rendered_golden()
    with open(GOLDEN) as f:
        assert yaml.safe_load(f) == deployment, (
            "tests/fixtures/chart/deployment.yaml is stale: run tests/chart.sh --update")
    with open(GOLDEN_POLICY) as f:
        assert f.read() == policy, "tests/fixtures/chart/policy.yaml is stale: run tests/chart.sh --update"


def update_golden():
    deployment, policy = rendered_golden()
    os.makedirs(os.path.dirname(GOLDEN), exist_ok=True)
    with open(GOLDEN, "w") as f:
        f.write("# Rendered by tests/chart.sh --update from charts/meshguard with default values;\n"
                "# tests/chart_deployment.rs runs meshguard's engine on it.\n")
        yaml.safe_dump(deployment, f, sort_keys=False)
    with open(GOLDEN_POLICY, "w") as f:
        f.write(policy)


def main(argv):
    if "--update" in argv:
        update_golden()
        print(f"wrote {os.path.relpath(GOLDEN, ROOT)} and {os.path.relpath(GOLDEN_POLICY, ROOT)}")
    only = [a for a in argv if not a.startswith("-")]
    tests = [(n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)]
    tests = [(n, f) for n, f in tests if not only or any(o in n for o in only)]
    passed = failed = 0
    for name, fn in tests:
        try:
            fn()
        except Exception:
            failed += 1
            print(f"FAIL {name}")
            traceback.print_exc()
        else:
            passed += 1
            print(f"ok   {name}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
