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

# The webhooks, split by what they protect (issue 24), and the kinds each handles:
# name -> (group, version) -> resources.
ISTIO_POLICY_KINDS = {
    ("security.istio.io", v): {"peerauthentications", "authorizationpolicies", "requestauthentications"}
    for v in ("v1", "v1beta1")
} | {("networking.istio.io", v): {"destinationrules", "sidecars"} for v in ("v1", "v1beta1")} | {
    ("networking.istio.io", "v1alpha3"): {"destinationrules", "sidecars", "envoyfilters"},
    # meshguard's own PolicyExceptions (CREATE and UPDATE: deleting one never weakens anything).
    ("meshguard.io", "v1alpha1"): {"policyexceptions"},
}
WORKLOAD_KINDS = {
    ("", "v1"): {"pods", "namespaces", "replicationcontrollers"},
    ("apps", "v1"): {"deployments", "statefulsets", "daemonsets", "replicasets"},
    ("batch", "v1"): {"jobs", "cronjobs"},
}
VALIDATE_WEBHOOKS = {
    "policies.validate.meshguard.io": ISTIO_POLICY_KINDS,
    # kubectl debug adds containers through pods/ephemeralcontainers (wl-net-admin, wl-proxy-uid).
    "workloads.validate.meshguard.io": WORKLOAD_KINDS | {
        ("", "v1"): WORKLOAD_KINDS[("", "v1")] | {"pods/ephemeralcontainers"}},
    "services.validate.meshguard.io": {("", "v1"): {"services"}},
}
MUTATE_WEBHOOKS = {
    "policies.mutate.meshguard.io": {("security.istio.io", v): {"peerauthentications"} for v in ("v1", "v1beta1")},
    "workloads.mutate.meshguard.io": WORKLOAD_KINDS,
}
# What the webhook reads (admission only): Namespaces and ServiceAccounts (watched, read by name
# on a cache miss), Istio's injector webhooks, the ztunnel and istio-cni DaemonSets and
# PolicyExceptions (watched).
WEBHOOK_READS = {
    "": ({"namespaces", "serviceaccounts"}, {"get", "list", "watch"}),
    "admissionregistration.k8s.io": ({"mutatingwebhookconfigurations"}, {"list", "watch"}),
    # The ztunnel and istio-cni DaemonSets: ambient as installed.
    "apps": ({"daemonsets"}, {"list", "watch"}),
    "meshguard.io": ({"policyexceptions"}, {"list", "watch"}),
}
# What the auditor lists (every kind meshguard judges, and the injector webhooks).
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
# Namespaces the engine exempts as a whole with default values (exemptNamespaces, the root and
# Istio namespaces, the release namespace): never sent to the workload and Service webhooks.
ENGINE_EXEMPT = ["istio-system", "kube-node-lease", "kube-public", "kube-system", NS]
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


def webhooks(r, kind):
    return {wh["name"]: wh for wh in r.one(kind)["webhooks"]}


def excluded_namespaces(wh):
    exprs = {e["key"]: e for e in wh["namespaceSelector"]["matchExpressions"]}
    return exprs["kubernetes.io/metadata.name"]["values"]


def test_validating_webhook_safety():
    r = render(namespace=NS)
    service = r.one("Service", "meshguard")
    whs = webhooks(r, "ValidatingWebhookConfiguration")
    assert list(whs) == list(VALIDATE_WEBHOOKS), list(whs)
    for name, wanted in VALIDATE_WEBHOOKS.items():
        wh = whs[name]
        check_common_webhook(wh, service, "/validate")
        kinds = rule_kinds(wh)
        assert {k: set(v) for k, v in kinds.items()} == wanted, (name, kinds)
        for (group, _), resources in kinds.items():
            for res, ops in resources.items():
                if group == "security.istio.io":
                    # pa-weakening-delete, ap-deny-all-delete read DELETE.
                    assert ops == {"CREATE", "UPDATE", "DELETE"}, (group, res, ops)
                elif res == "pods/ephemeralcontainers":
                    # kubectl debug's PATCH of the subresource arrives as an UPDATE.
                    assert ops == {"UPDATE"}, (group, res, ops)
                else:
                    assert ops == {"CREATE", "UPDATE"}, (group, res, ops)
        assert "serviceaccounts" not in json.dumps(wh["rules"]), "no rule judges a ServiceAccount"
    # Blast radius while meshguard is down: Istio's policies and workloads fail closed, Services
    # open; workloads and Services are never sent from a namespace the engine exempts anyway, so
    # istiod, istio-cni and kube-system can be recreated while meshguard is down.
    assert whs["policies.validate.meshguard.io"]["failurePolicy"] == "Fail"
    assert whs["workloads.validate.meshguard.io"]["failurePolicy"] == "Fail"
    assert whs["services.validate.meshguard.io"]["failurePolicy"] == "Ignore"
    assert excluded_namespaces(whs["policies.validate.meshguard.io"]) == ["kube-system", "kube-node-lease", NS]
    for name in ("workloads.validate.meshguard.io", "services.validate.meshguard.io"):
        assert sorted(excluded_namespaces(whs[name])) == ENGINE_EXEMPT, (name, excluded_namespaces(whs[name]))
    # The root namespace of the mesh (here from MeshConfig) is excluded too, and config's
    # exemptNamespaces.
    mesh = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "istio-system"},
            "data": {"mesh": "rootNamespace: mesh-root\ntrustDomain: corp.example\n"}}
    r = render({"config": {"exemptNamespaces": ["legacy"]}}, namespace=NS, objects=[mesh])
    whs = webhooks(r, "ValidatingWebhookConfiguration")
    assert sorted(excluded_namespaces(whs["workloads.validate.meshguard.io"])) == sorted(
        ["istio-system", "kube-node-lease", "kube-system", "legacy", "mesh-root", NS])
    assert excluded_namespaces(whs["policies.validate.meshguard.io"]) == ["kube-system", "kube-node-lease", NS]
    r = render({"webhook": {"servicesFailurePolicy": "Fail", "failurePolicy": "Ignore"}}, namespace=NS)
    whs = webhooks(r, "ValidatingWebhookConfiguration")
    assert [w["failurePolicy"] for w in whs.values()] == ["Ignore", "Ignore", "Fail"]


def test_mutating_webhook_safety():
    r = render(namespace=NS)
    whs = webhooks(r, "MutatingWebhookConfiguration")
    assert list(whs) == list(MUTATE_WEBHOOKS), list(whs)
    for name, wanted in MUTATE_WEBHOOKS.items():
        wh = whs[name]
        check_common_webhook(wh, r.one("Service", "meshguard"), "/mutate")
        assert wh["reinvocationPolicy"] == "IfNeeded"
        assert wh["failurePolicy"] == "Fail"
        kinds = rule_kinds(wh)
        assert {k: set(v) for k, v in kinds.items()} == wanted, kinds
        assert all(ops == {"CREATE", "UPDATE"} for res in kinds.values() for ops in res.values())
    assert sorted(excluded_namespaces(whs["workloads.mutate.meshguard.io"])) == ENGINE_EXEMPT


def test_audit_mode_registers_fail_open_webhooks():
    r = render({"config": {"mode": "audit"}, "webhook": {"failurePolicy": "Ignore"}}, namespace=NS)
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        assert {wh["failurePolicy"] for wh in r.one(kind)["webhooks"]} == {"Ignore"}
    policy = yaml.safe_load(r.one("ConfigMap", "meshguard-policy")["data"]["policy.yaml"])
    assert policy["mode"] == "audit"


def test_timeout_and_exclusions_are_values():
    r = render({"webhook": {"timeoutSeconds": 3, "excludeNamespaces": ["legacy"], "optOutLabel": ""}}, namespace=NS)
    wh = r.one("ValidatingWebhookConfiguration")["webhooks"][0]
    assert wh["timeoutSeconds"] == 3
    assert wh["name"] == "policies.validate.meshguard.io"
    exprs = wh["namespaceSelector"]["matchExpressions"]
    assert [e["key"] for e in exprs] == ["kubernetes.io/metadata.name"], exprs
    assert exprs[0]["values"] == ["kube-system", "kube-node-lease", NS, "legacy"], exprs
    assert all(w["timeoutSeconds"] == 3 for w in r.one("ValidatingWebhookConfiguration")["webhooks"])


def test_mutating_webhook_can_be_turned_off():
    r = render({"webhook": {"mutating": False}}, namespace=NS)
    assert not r.all("MutatingWebhookConfiguration")
    r.one("ValidatingWebhookConfiguration")


# --- rendered Deployment, PDB, RBAC, policy -----------------------------------------------------

def test_deployment_security_and_availability():
    r = render(namespace=NS)
    d = r.one("Deployment", "meshguard")
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
    # The webhook audits nothing and writes no reports: the auditor does.
    assert "--audit-interval=0s" in c["args"] and not any(a.startswith("--reports") for a in c["args"]), c["args"]
    assert pod["priorityClassName"] == "system-cluster-critical", "admission depends on these pods"
    # Certificate and policy files are where the args say, from the right objects.
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert all("subPath" not in m for m in c["volumeMounts"]), "subPath mounts never see Secret updates"
    vols = {v["name"]: v for v in pod["volumes"]}
    args = dict(a.split("=", 1) for a in c["args"][1:] if "=" in a)
    assert args["--tls-cert"] == mounts["tls"] + "/tls.crt" and args["--tls-key"] == mounts["tls"] + "/tls.key"
    assert args["--config"] == mounts["policy"] + "/policy.yaml"
    assert vols["tls"]["secret"]["secretName"] == r.one("Secret")["metadata"]["name"]
    assert vols["policy"]["configMap"]["name"] == r.one("ConfigMap", "meshguard-policy")["metadata"]["name"]
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
    assert pod["serviceAccountName"] == r.one("ServiceAccount", "meshguard")["metadata"]["name"]
    pdb = r.one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1 and pdb["spec"]["selector"]["matchLabels"] == sel
    svc = r.one("Service", "meshguard")
    assert svc["spec"]["selector"] == sel
    assert {p["targetPort"] for p in svc["spec"]["ports"]} == {"https", "admin"}


def test_single_replica_has_no_blocking_pdb():
    r = render({"replicaCount": 1}, namespace=NS)
    assert not r.all("PodDisruptionBudget"), "a PDB with minAvailable 1 on one replica blocks drains"
    assert r.one("Deployment", "meshguard")["spec"]["replicas"] == 1


def test_service_targets_https_port():
    r = render(namespace=NS)
    svc = r.one("Service", "meshguard")
    https = next(p for p in svc["spec"]["ports"] if p["targetPort"] == "https")
    assert https["port"] == 443 and https["name"].startswith("https"), https


def rbac_rules(role):
    """group -> resources -> verbs, with resourceNames rules apart: (group, resource, names) -> verbs."""
    out, named = {}, {}
    for rule in role["rules"]:
        assert "*" not in rule["resources"] and "*" not in rule["apiGroups"] and "*" not in rule["verbs"], rule
        for g in rule["apiGroups"]:
            for res in rule["resources"]:
                if "resourceNames" in rule:
                    named.setdefault((g, res, tuple(rule["resourceNames"])), set()).update(rule["verbs"])
                else:
                    out.setdefault(g, {}).setdefault(res, set()).update(rule["verbs"])
    return out, named


def test_rbac_is_read_only_and_minimal():
    r = render(namespace=NS)
    webhook_sa = [{"kind": "ServiceAccount", "name": "meshguard", "namespace": NS}]
    auditor_sa = [{"kind": "ServiceAccount", "name": "meshguard-auditor", "namespace": NS}]
    # The webhook: what admission reads, nothing more.
    role = r.one("ClusterRole", "meshguard")
    rules, named = rbac_rules(role)
    assert not named
    assert {g: set(res) for g, res in rules.items()} == {g: v[0] for g, v in WEBHOOK_READS.items()}, rules
    for g, res in rules.items():
        for name, verbs in res.items():
            assert verbs == WEBHOOK_READS[g][1], (g, name, verbs)
    binding = r.one("ClusterRoleBinding", "meshguard")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == webhook_sa
    # The auditor: lists every kind meshguard judges; never watches, reads by name or writes.
    role = r.one("ClusterRole", "meshguard-auditor")
    rules, named = rbac_rules(role)
    assert not named
    assert {g: set(res) for g, res in rules.items()} == RBAC_READS, rules
    assert all(v == {"list"} for res in rules.values() for v in res.values()), rules
    assert "secrets" not in rules.get("", {})
    assert r.one("ClusterRoleBinding", "meshguard-auditor")["subjects"] == auditor_sa
    # ConfigMaps only in the Istio namespace, read-only (list and watch: nothing reads one by name).
    ns_role = r.one("Role", "meshguard-istio-config")
    assert ns_role["metadata"]["namespace"] == "istio-system", ns_role["metadata"]
    rules, named = rbac_rules(ns_role)
    assert rules == {"": {"configmaps": {"list", "watch"}}} and not named, rules
    ns_binding = r.one("RoleBinding", "meshguard-istio-config")
    assert ns_binding["metadata"]["namespace"] == "istio-system"
    assert ns_binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                     "name": ns_role["metadata"]["name"]}
    assert ns_binding["subjects"] == webhook_sa + auditor_sa
    # Another Istio namespace moves the Role; it can be left out (Istio not installed yet).
    other = render({"istioNamespace": "istio-mesh"}, namespace=NS)
    assert other.one("Role", "meshguard-istio-config")["metadata"]["namespace"] == "istio-mesh"
    for name in ("meshguard", "meshguard-auditor"):
        args = other.one("Deployment", name)["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--istio-namespace=istio-mesh" in args, (name, args)
    none = render({"rbac": {"istioNamespaceRole": False}}, namespace=NS)
    assert [r["metadata"]["name"] for r in none.all("Role") + none.all("RoleBinding")] == \
        ["meshguard-lease", "meshguard-lease"], none.kinds()
    # Impact at admission watches what it reasons over (src/impact_watch.rs `watched`): with
    # config.impact on, the webhook may list and watch those kinds too (it is forbidden
    # otherwise, and impact would reason over an empty mesh); still no get, no writes.
    for impact in ("warn", "audit"):
        role = render({"config": {"impact": impact}}, namespace=NS).one("ClusterRole", "meshguard")
        rules, named = rbac_rules(role)
        assert not named
        for g, kinds in RBAC_READS.items():
            if g in ("admissionregistration.k8s.io", "meshguard.io", "networking.istio.io",
                     "gateway.networking.k8s.io"):
                continue
            for k in kinds:
                assert {"list", "watch"} <= rules.get(g, {}).get(k, set()), (impact, g, k, rules)
        assert all(v <= {"get", "list", "watch"} for res in rules.values() for v in res.values())
    # Without the auditor, nothing of it: no read-everything role, no Lease, no report writes.
    r = render({"auditor": {"enabled": False}}, namespace=NS)
    assert [c["metadata"]["name"] for c in r.all("ClusterRole")] == ["meshguard"], r.kinds()
    assert not r.all("Role") or [x["metadata"]["name"] for x in r.all("Role")] == ["meshguard-istio-config"]
    assert [d["metadata"]["name"] for d in r.all("Deployment")] == ["meshguard"]


REPORT_KINDS = {"wgpolicyk8s": ("wgpolicyk8s.io", ["policyreports", "clusterpolicyreports"]),
                "openreports": ("openreports.io", ["reports", "clusterreports"])}


def test_rbac_for_reports_and_the_lease_is_exactly_what_meshguard_does():
    """src/report_writer.rs lists its reports by label, creates missing ones, and updates or
    deletes the one named meshguard; src/lease.rs and src/auditor.rs get, create and update the
    two Leases by name. The roles grant exactly that, to the auditor only."""
    sa = {"kind": "ServiceAccount", "name": "meshguard-auditor", "namespace": NS}
    for api, (group, resources) in REPORT_KINDS.items():
        r = render({"reports": {"api": api}}, namespace=NS)
        role = r.one("ClusterRole", "meshguard-reports")
        assert role["rules"] == [
            {"apiGroups": [group], "resources": resources, "verbs": ["list", "create"]},
            {"apiGroups": [group], "resources": resources, "resourceNames": ["meshguard"],
             "verbs": ["update", "delete"]}], role["rules"]
        binding = r.one("ClusterRoleBinding", "meshguard-reports")
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                      "name": "meshguard-reports"}
        assert binding["subjects"] == [sa]
        args = r.one("Deployment", "meshguard-auditor")["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"--reports={api}" in args, args
    # The Leases: only in the release namespace; get and update only on meshguard's two.
    r = render(namespace=NS)
    lease = r.one("Role", "meshguard-lease")
    assert lease["metadata"]["namespace"] == NS
    assert lease["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "resourceNames": ["meshguard-audit", "meshguard-audit-run"], "verbs": ["get", "update"]}], lease["rules"]
    rb = r.one("RoleBinding", "meshguard-lease")
    assert rb["metadata"]["namespace"] == NS and rb["subjects"] == [sa]
    assert rb["roleRef"]["name"] == lease["metadata"]["name"] and rb["roleRef"]["kind"] == "Role"
    # Reports off: no write access at all, and the auditor is told.
    r = render({"reports": {"enabled": False}}, namespace=NS)
    assert sorted(c["metadata"]["name"] for c in r.all("ClusterRole")) == ["meshguard", "meshguard-auditor"]
    args = r.one("Deployment", "meshguard-auditor")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--reports=none" in args, args


def report_crds(r):
    return [c for c in r.all("CustomResourceDefinition") if c["spec"]["group"] != "meshguard.io"]


def test_report_crds_only_on_request_kept_on_uninstall_and_unchanged():
    assert not report_crds(render(namespace=NS))
    fixtures = os.path.join(ROOT, "tests", "fixtures", "policy-report-crds")
    for api, (group, resources) in REPORT_KINDS.items():
        r = render({"reports": {"api": api, "installCRDs": True}}, namespace=NS)
        crds = report_crds(r)
        assert {c["spec"]["names"]["plural"] for c in crds} == set(resources), crds
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
    policy = yaml.safe_load(r.one("ConfigMap", "meshguard-policy")["data"]["policy.yaml"])
    expected = helmlib.merge(helmlib.default_values()["config"], values["config"])
    expected = {k: v for k, v in expected.items() if v is not None}
    assert policy == expected, (policy, expected)
    # An empty injectionRevision is left out (meshguard refuses an empty one), and so are the
    # mesh values left unset: meshguard takes them from the mesh.
    policy = yaml.safe_load(render(namespace=NS).one("ConfigMap", "meshguard-policy")["data"]["policy.yaml"])
    assert "injectionRevision" not in policy, policy
    for key in MESH_KEYS:
        assert key not in policy, (key, policy)
    assert policy == {k: v for k, v in helmlib.default_values()["config"].items()
                      if k != "injectionRevision" and k not in MESH_KEYS}
    # Set ones are written, an explicit empty alias list included (it replaces the mesh's).
    values = {"config": {"rootNamespace": "mesh-root", "trustDomainAliases": [], "enableAutoMtls": False,
                         "trustDomain": ""}}
    policy = yaml.safe_load(render(values, namespace=NS).one("ConfigMap", "meshguard-policy")["data"]["policy.yaml"])
    assert policy["rootNamespace"] == "mesh-root" and policy["trustDomainAliases"] == []
    assert policy["enableAutoMtls"] is False and "trustDomain" not in policy, policy


def test_policy_change_rolls_the_pods():
    a = render(namespace=NS).one("Deployment", "meshguard")["spec"]["template"]["metadata"]["annotations"]["checksum/policy"]
    b = render({"config": {"mode": "warn"}}, namespace=NS).one("Deployment", "meshguard")
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
        for wh in r.one(kind)["webhooks"]:
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
        assert "previous-ca.crt" not in b
    other = render(namespace=NS).one("Secret")["data"]
    assert other["tls.crt"] != a["tls.crt"], "a new install generates a new pair"


def pem_certs(b64):
    from cryptography import x509
    return x509.load_pem_x509_certificates(base64.b64decode(b64))


def test_generated_certificate_rotation_trusts_old_and_new_ca():
    """Rotation (generate.rotation changed, or renewBeforeDays reached) issues a new CA and pair;
    the webhooks' caBundle holds the new CA and the previous one, so that reviews succeed
    whichever pair a pod serves until it reloads the Secret. The previous CA stays until it
    expires; the next rotation drops it."""
    with Cluster(NS) as cluster:
        first = cluster.install()
        old = first.one("Secret")["data"]
        second = cluster.upgrade({"certificates": {"generate": {"rotation": "2026-01"}}})
        new = second.one("Secret")["data"]
        assert new["tls.crt"] != old["tls.crt"] and new["ca.crt"] != old["ca.crt"]
        assert new["previous-ca.crt"] == old["ca.crt"]
        ann = second.one("Secret")["metadata"]["annotations"]
        assert ann["meshguard.io/rotation"] == "2026-01"
        assert int(ann["meshguard.io/previous-not-after"]) > datetime.datetime.now().timestamp()
        expected = [load_cert(base64.b64decode(new["ca.crt"])), load_cert(base64.b64decode(old["ca.crt"]))]
        for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            for wh in second.one(kind)["webhooks"]:
                assert pem_certs(wh["clientConfig"]["caBundle"]) == expected, (kind, wh["name"])
        # The new pair is signed by the new CA.
        leaf = load_cert(base64.b64decode(new["tls.crt"]))
        assert leaf.issuer == expected[0].subject
        # An upgrade without rotation keeps both.
        third = cluster.upgrade({"certificates": {"generate": {"rotation": "2026-01"}}, "config": {"mode": "warn"}})
        assert third.one("Secret")["data"] == new
        wh = third.one("ValidatingWebhookConfiguration")["webhooks"][0]
        assert pem_certs(wh["clientConfig"]["caBundle"]) == expected
        # The next rotation trusts the last two CAs only.
        fourth = cluster.upgrade({"certificates": {"generate": {"rotation": "2026-02"}}})
        latest = fourth.one("Secret")["data"]
        assert latest["previous-ca.crt"] == new["ca.crt"]
        wh = fourth.one("ValidatingWebhookConfiguration")["webhooks"][0]
        assert pem_certs(wh["clientConfig"]["caBundle"]) == [load_cert(base64.b64decode(latest["ca.crt"])),
                                                              expected[0]]
        ann = fourth.one("Secret")["metadata"]["annotations"]
        hours = (int(ann["meshguard.io/previous-not-after"]) - datetime.datetime.now().timestamp()) / 3600
        assert 23.5 < hours <= 24, hours
        # Once previousCAHours have passed, the next upgrade drops the previous CA.
        [stored] = cluster.api.objects("Secret")
        stored["metadata"]["annotations"]["meshguard.io/previous-not-after"] = "1"
        fifth = cluster.upgrade({"certificates": {"generate": {"rotation": "2026-02"}}})
        data = fifth.one("Secret")["data"]
        assert data["ca.crt"] == latest["ca.crt"] and "previous-ca.crt" not in data
        wh = fifth.one("ValidatingWebhookConfiguration")["webhooks"][0]
        assert wh["clientConfig"]["caBundle"] == latest["ca.crt"]


def test_cert_manager_mode():
    r = render(CERT_MANAGER, namespace=NS)
    certs = {c["metadata"]["name"]: c for c in r.all("Certificate")}
    serving = certs["meshguard-serving"]
    ref = f"{NS}/meshguard-serving"
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        obj = r.one(kind)
        assert obj["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == ref, obj["metadata"]
        assert all("caBundle" not in wh["clientConfig"] for wh in obj["webhooks"]), "cert-manager injects it"
    assert not r.all("Secret"), "cert-manager writes the Secret"
    assert set(serving["spec"]["dnsNames"]) == {f"meshguard.{NS}.svc", f"meshguard.{NS}.svc.cluster.local",
                                                f"meshguard.{NS}", "meshguard"}
    vol = next(v for v in r.one("Deployment", "meshguard")["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
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
        assert {wh["clientConfig"]["caBundle"] for wh in r.one(kind)["webhooks"]} == {CA_B64}
    vol = next(v for v in r.one("Deployment", "meshguard")["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
    assert vol["secret"]["secretName"] == "my-tls"


# --- admission policies: the rules kube-apiserver enforces itself ------------------------------

def meshguard_bin():
    """The meshguard binary tests/run.sh built (`cargo test` builds it); the chart's admission
    policies must be exactly what `meshguard generate` writes."""
    path = os.environ.get("MESHGUARD_BIN") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "debug", "meshguard")
    assert os.access(path, os.X_OK), f"{path} not found: build it first (cargo build) or set MESHGUARD_BIN"
    return path


def generate(*args, stdin_files=None):
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        argv = [meshguard_bin(), "generate", *args]
        for flag, text in (stdin_files or {}).items():
            path = os.path.join(tmp, flag.strip("-") + ".yaml")
            with open(path, "w") as f:
                f.write(text)
            argv += [flag, path]
        out = subprocess.run(argv + ["--format", "json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)["items"]


def by_name(objs):
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


def assert_same_objects(rendered, generated, what):
    rendered, generated = by_name(rendered), by_name(generated)
    assert sorted(rendered) == sorted(generated), (what, sorted(set(rendered) ^ set(generated)))
    for key, want in generated.items():
        got = rendered[key]
        assert got["spec"] == want["spec"], (what, key, dump(got["spec"]), dump(want["spec"]))
        assert got["metadata"].get("annotations") == want["metadata"].get("annotations"), (what, key)
        labels = got["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in want["metadata"]["labels"].items()), (what, key, labels)


MESH = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "istio-system"},
        "data": {"mesh": "rootNamespace: mesh-root\ntrustDomain: corp.example\ntrustDomainAliases: [old.example]\n"}}
POLICY_VALUES = {"config": {
    "mode": "enforce", "allowExistingViolations": False, "exemptNamespaces": ["kube-system", "legacy"],
    "meshHostSuffixes": [".Mesh.Internal"], "injectionRevision": "canary", "clusterDomain": "corp.local",
    "rules": {
        "pa-permissive-mtls": {"exemptions": [
            {"namespaces": ["migrating"]},
            {"namespaceSelector": {"matchLabels": {"team": "a"}},
             "objectSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["x", "y"]}]}}]},
        "ns-injection-disabled": {"exemptions": [{"namespaceSelector": {"matchExpressions": [
            {"key": "tier", "operator": "Exists"}]}}]},
        "ap-allow-all": {"action": "off"},
        "dr-tls-disabled": {"action": "audit"},
        "svc-port-protocol": {"action": "deny"},
    }}}


# Per-namespace actions and exceptions (issue 25) in the generated policies.
OPERATIONS_VALUES = {"config": {
    "mode": "enforce",
    "platform": {"labels": ["env", "tier"], "users": ["system:serviceaccount:argocd:argocd"]},
    "overrides": [
        {"namespaces": ["sandbox"], "mode": "audit"},
        {"namespaceSelector": {"matchLabels": {"env": "dev"}}, "mode": "warn"},
        {"namespaces": ["payments"], "rules": ["wl-host-network"], "action": "deny"},
    ],
    "rules": {
        "pa-permissive-mtls": {"overrides": [
            {"namespaceSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["edge"]}]},
             "action": "warn"},
            {"namespaces": ["legacy"], "action": "off"}]},
        "svc-port-protocol": {"action": "off", "overrides": [{"namespaces": ["strict"], "action": "deny"}]},
        "ap-allow-all": {"action": "deny"},
    },
    "exceptions": [
        {"name": "legacy-sa", "rules": ["wl-default-service-account", "wl-host-network"], "namespaces": ["shop"],
         "names": ["legacy-*", "batch"], "kinds": ["Deployment"], "reason": "moving", "owner": "team-shop",
         "expires": "2099-09-30"},
        {"name": "edge-pa", "rules": ["pa-permissive-mtls"],
         "namespaceSelector": {"matchLabels": {"env": "prod"}},
         "objectSelector": {"matchLabels": {"app": "edge"}}, "reason": "edge", "ticket": "NET-1",
         "expires": "2098-01-02T03:04:05Z"},
        {"name": "gone", "rules": ["pa-disabled-mtls"], "namespaces": ["old"], "reason": "done",
         "owner": "x", "expires": "2020-01-01"},
    ],
    "policyExceptions": {"namespaces": ["payments", "shop"], "rules": ["wl-default-service-account", "dr-tls-disabled"]},
}}


def test_admission_policies_are_what_meshguard_generates():
    cases = [
        ({}, [], None),
        (POLICY_VALUES, [], None),
        (OPERATIONS_VALUES, [], None),
        ({"config": {"mode": "warn"}, "admissionPolicies": {"failurePolicy": "Ignore"}}, [MESH], MESH["data"]["mesh"]),
        ({"config": {"mode": "audit", "trustDomain": "td.example", "trustDomainAliases": []},
          "webhook": {"failurePolicy": "Ignore", "servicesFailurePolicy": "Ignore"},
          "fullnameOverride": "guard"}, [MESH], MESH["data"]["mesh"]),
    ]
    for values, objects, mesh in cases:
        r = render(values, namespace=NS, objects=objects)
        fullname = values.get("fullnameOverride", "meshguard")
        policy = r.one("ConfigMap", f"{fullname}-policy")["data"]["policy.yaml"]
        files = {"--config": policy}
        if mesh:
            files["--mesh-config"] = mesh
        fp = (values.get("admissionPolicies") or {}).get("failurePolicy", "Fail").lower()
        generated = generate("admission-policies", "--own-namespace", NS, "--istio-namespace", "istio-system",
                             "--name-prefix", f"{fullname}-", "--failure-policy", fp, stdin_files=files)
        rendered = r.all("ValidatingAdmissionPolicy") + r.all("ValidatingAdmissionPolicyBinding")
        rendered = [o for o in rendered if not o["metadata"]["name"].endswith("-self-protection")]
        assert len(generated) > 40, len(generated)
        assert_same_objects(rendered, generated, values)
    # Spot checks of the per-namespace actions and exceptions.
    r = render(OPERATIONS_VALUES, namespace=NS)
    names = {o["metadata"]["name"] for o in r.all("ValidatingAdmissionPolicy")}
    assert {"meshguard-pa-permissive-mtls", "meshguard-pa-permissive-mtls-warn",
            "meshguard-pa-permissive-mtls-audit", "meshguard-svc-port-protocol-deny"} <= names, sorted(names)
    assert "meshguard-svc-port-protocol" not in names
    assert r.one("ValidatingAdmissionPolicyBinding", "meshguard-svc-port-protocol-deny")["spec"][
        "validationActions"] == ["Deny"]
    pa = r.one("ValidatingAdmissionPolicy", "meshguard-pa-permissive-mtls-warn")
    assert pa["spec"]["validations"][0]["expression"] == 'variables.actionHere != "warn" || size(variables.fresh) == 0'
    assert "edge" in variable_of(pa, "exempt") and "gone" not in json.dumps(pa)
    assert pa["metadata"]["annotations"]["meshguard.io/exceptions-until"] == "2098-01-02T03:04:05Z"
    sa = r.one("ValidatingAdmissionPolicy", "meshguard-wl-default-service-account")
    assert variable_of(sa, "actionHere") == ('(request.namespace in ["sandbox"]) ? "audit" : '
                                         '([variables.namespaceLabels].all(l, "env" in l && l["env"] == "dev")) ? "warn" : "deny"')
    assert 'n.startsWith("legacy-")' in variable_of(sa, "exempt")
    assert {"name": "not-where-policy-exceptions-are-accepted", "expression": '!(request.namespace in ["payments", "shop"])'} \
        in sa["spec"]["matchConditions"]
    # ap-allow-all sets its own action: the overrides for every rule stand behind it.
    assert "meshguard-ap-allow-all-audit" not in names and "meshguard-ap-allow-all-warn" not in names
    guard = r.one("ValidatingAdmissionPolicy", "meshguard-ns-platform-label-change")
    assert variable_of(guard, "platformLabels") == '["env", "tier"]'
    # Spot checks of what the cases change.
    r = render(POLICY_VALUES, namespace=NS)
    names = {o["metadata"]["name"] for o in r.all("ValidatingAdmissionPolicy")}
    assert "meshguard-ap-allow-all" not in names and "meshguard-pa-permissive-mtls" in names
    binding = r.one("ValidatingAdmissionPolicyBinding", "meshguard-dr-tls-disabled")
    assert binding["spec"]["validationActions"] == ["Audit"]
    pa = r.one("ValidatingAdmissionPolicy", "meshguard-pa-permissive-mtls")
    assert "migrating" in json.dumps(pa["spec"]["variables"]) and 'team' in json.dumps(pa["spec"]["variables"])
    assert pa["spec"]["validations"][0]["messageExpression"].startswith('"[pa-permissive-mtls] "')


def variable_of(policy, name):
    return next(v["expression"] for v in policy["spec"]["variables"] if v["name"] == name)


def test_admission_policies_only_where_served_and_enabled():
    r = render(namespace=NS, admission_policies=False)
    assert not r.all("ValidatingAdmissionPolicy") and not r.all("ValidatingAdmissionPolicyBinding"), r.kinds()
    r.one("ValidatingWebhookConfiguration")
    r = render({"admissionPolicies": {"enabled": False}, "selfProtection": {"enabled": False}}, namespace=NS)
    assert not r.all("ValidatingAdmissionPolicy"), r.kinds()
    r = render({"admissionPolicies": {"enabled": False}}, namespace=NS)
    assert [p["metadata"]["name"] for p in r.all("ValidatingAdmissionPolicy")] == ["meshguard-self-protection"]


def test_the_charts_rule_parts_are_current():
    """files/admission-policies.json is `meshguard generate admission-policies --format chart`."""
    import subprocess
    out = subprocess.run([meshguard_bin(), "generate", "admission-policies", "--format", "chart"],
                         check=True, capture_output=True, text=True).stdout
    with open(os.path.join(CHART, "files", "admission-policies.json")) as f:
        assert json.loads(f.read()) == json.loads(out), "files/admission-policies.json is stale"


def test_self_protection_is_what_meshguard_generates():
    cases = [
        ({}, []),
        (POLICY_VALUES | {"selfProtection": {"allowedGroups": ["platform-admins", "system:masters"],
                                             "allowedUsers": ["alice"]}}, []),
        (helmlib.merge(CERT_MANAGER, {"webhook": {"optOutLabel": ""}}),
         ["--allowed-user", "system:serviceaccount:cert-manager:cert-manager-cainjector"]),
        ({"selfProtection": {"allowedGroups": []}, "fullnameOverride": "guard"}, []),
        (OPERATIONS_VALUES, []),
    ]
    for values, extra in cases:
        r = render(values, namespace=NS)
        fullname = values.get("fullnameOverride", "meshguard")
        sp = values.get("selfProtection", {})
        args = ["self-protection", "--name", f"{fullname}-self-protection", "--webhook-configuration", fullname,
                "--opt-out-label", (values.get("webhook") or {}).get("optOutLabel", "meshguard.io/ignore")]
        for g in sp.get("allowedGroups", ["system:masters"]):
            args += ["--allowed-group", g]
        if not sp.get("allowedGroups", ["system:masters"]):
            args += ["--allowed-group", ""]
        for u in sp.get("allowedUsers", []):
            args += ["--allowed-user", u]
        policy = r.one("ConfigMap", f"{fullname}-policy")["data"]["policy.yaml"]
        generated = generate(*args, *extra, stdin_files={"--config": policy})
        rendered = [o for o in r.all("ValidatingAdmissionPolicy") + r.all("ValidatingAdmissionPolicyBinding")
                    if o["metadata"]["name"] == f"{fullname}-self-protection"]
        assert_same_objects(rendered, generated, values)
    r = render(POLICY_VALUES, namespace=NS)
    vap = r.one("ValidatingAdmissionPolicy", "meshguard-self-protection")
    protected = next(v["expression"] for v in vap["spec"]["variables"] if v["name"] == "protected")
    assert protected == '["meshguard.io/ignore", "team", "tier"]', protected
    rules = vap["spec"]["matchConstraints"]["resourceRules"]
    assert rules[0]["resourceNames"] == ["meshguard"] and set(rules[0]["operations"]) == {"CREATE", "UPDATE", "DELETE"}
    assert render({"selfProtection": {"enabled": False}}, namespace=NS).all("ValidatingAdmissionPolicy")[0][
        "metadata"]["name"] != "meshguard-self-protection"


def test_refuses_the_istio_and_root_namespaces():
    for namespace, values, objects in (("istio-system", {}, []),
                                       ("mesh-root", {"config": {"rootNamespace": "mesh-root"}}, []),
                                       ("mesh-root", {}, [MESH])):
        try:
            render(values, namespace=namespace, objects=objects)
        except Exception as e:
            assert "refusing to install into " + namespace in str(e), str(e)
        else:
            raise AssertionError(f"installed into {namespace} with {values}")
    render({"config": {"rootNamespace": "mesh-root"}}, namespace=NS)


def test_host_network_with_its_own_ports():
    values = {"hostNetwork": True, "podAntiAffinity": "hard", "ports": {"https": 10250 + 4000, "admin": 19090}}
    r = render(values, namespace=NS)
    pod = r.one("Deployment", "meshguard")["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    [c] = pod["containers"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"https": 14250, "admin": 19090}
    assert "--listen=0.0.0.0:14250" in c["args"] and "--admin-listen=0.0.0.0:19090" in c["args"], c["args"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in pod["affinity"]["podAntiAffinity"]
    expect_failure({"hostNetwork": True}, "podAntiAffinity=hard")
    assert "hostNetwork" not in r.one("Deployment", "meshguard-auditor")["spec"]["template"]["spec"]


def test_auditor_is_its_own_workload():
    r = render(namespace=NS)
    d = r.one("Deployment", "meshguard-auditor")
    pod = d["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert c["args"][0] == "auditor", c["args"]
    args = dict(a.split("=", 1) for a in c["args"][1:] if "=" in a)
    assert args["--interval"] == "10m" and args["--backoff"] == "1m" and args["--max-backoff"] == "1h"
    assert args["--reports"] == "wgpolicyk8s" and args["--config"] == "/etc/meshguard/policy/policy.yaml"
    assert c["resources"]["limits"]["memory"] == "512Mi", c["resources"]
    assert pod["serviceAccountName"] == "meshguard-auditor"
    assert r.one("ServiceAccount", "meshguard-auditor")
    assert "priorityClassName" not in pod, "the audit can wait"
    # Its labels never match the webhook's selectors (PDB, Service, spread).
    webhook_sel = r.one("Deployment", "meshguard")["spec"]["selector"]["matchLabels"]
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert not all(labels.get(k) == v for k, v in webhook_sel.items()), labels
    assert d["spec"]["selector"]["matchLabels"].items() <= labels.items()
    svc = r.one("Service", "meshguard-auditor")
    assert svc["spec"]["selector"] == d["spec"]["selector"]["matchLabels"]
    r = render({"auditor": {"interval": "1h", "resources": {"limits": {"memory": "1Gi"}}}}, namespace=NS)
    c = r.one("Deployment", "meshguard-auditor")["spec"]["template"]["spec"]["containers"][0]
    assert "--interval=1h" in c["args"] and c["resources"]["limits"]["memory"] == "1Gi"


def known_metrics():
    with open(os.path.join(ROOT, "src", "metrics.rs")) as f:
        return set(re.findall(r'"(meshguard_[a-z_]+)"', f.read()))


def test_prometheus_rule_alerts():
    r = render({"prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus"}}}, namespace=NS)
    rule = r.one("PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus"
    alerts = {a["alert"]: a for g in rule["spec"]["groups"] for a in g["rules"]}
    assert set(alerts) == {"MeshguardWebhookErrors", "MeshguardWebhookFailingOpen", "MeshguardSlowReviews",
                           "MeshguardSlowCalls", "MeshguardReplicasNotReady", "MeshguardDown",
                           "MeshguardCertificateExpiresSoon", "MeshguardWatchStale", "MeshguardPolicyWeakened",
                           "MeshguardAuditFailing", "MeshguardAuditStale", "MeshguardReportWritesFailing"}, set(alerts)
    known = known_metrics()
    for name, a in alerts.items():
        expr = a["expr"]
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), (name, expr)
        for m in re.findall(r"meshguard_[a-z_]+", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", m)
            assert base in known, (name, m)
        if "meshguard_" in expr:
            assert f'namespace="{NS}"' in expr, (name, expr)
        assert a["labels"]["severity"] in ("critical", "warning", "info"), a
    # The webhook-name regex covers every webhook the chart registers.
    regex = re.search(r'name=~"([^"]+)"', alerts["MeshguardWebhookErrors"]["expr"]).group(1)
    regex = regex.replace("\\\\", "\\")
    names = [wh["name"] for k in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
             for wh in r.one(k)["webhooks"]]
    assert all(re.fullmatch(regex, n) for n in names), (regex, names)
    assert 'deployment="meshguard"' in alerts["MeshguardDown"]["expr"]
    assert "> 0.5" in alerts["MeshguardSlowReviews"]["expr"]
    assert str(14 * 86400) in alerts["MeshguardCertificateExpiresSoon"]["expr"]
    assert not render(namespace=NS).all("PrometheusRule")


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
    kinds = [k for k in r.kinds() if k not in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")]
    assert kinds == sorted(["ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding",
                            "ClusterRoleBinding", "ConfigMap", "CustomResourceDefinition", "Deployment", "Deployment",
                            "MutatingWebhookConfiguration", "PodDisruptionBudget", "Role", "Role", "RoleBinding",
                            "RoleBinding", "Secret", "Service", "Service", "ServiceAccount", "ServiceAccount",
                            "ValidatingWebhookConfiguration"]), r.kinds()


def test_service_monitor_network_policy_dashboard():
    r = render(ALL_OPTIONAL, namespace=NS)
    sm = r.one("ServiceMonitor")
    port = sm["spec"]["endpoints"][0]["port"]
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    # It scrapes the webhook and the auditor (audit runs, back-off, report writes).
    for name in ("meshguard", "meshguard-auditor"):
        svc = r.one("Service", name)
        assert port in [p["name"] for p in svc["spec"]["ports"]], name
        assert helmlib_selects(sm["spec"]["selector"], svc["metadata"]["labels"]), name
    assert not helmlib_selects(sm["spec"]["selector"], {"app.kubernetes.io/name": "meshguard",
                                                        "app.kubernetes.io/instance": "other"})
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


def helmlib_selects(selector, labels):
    """A LabelSelector against labels."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        has, value = e["key"] in labels, labels.get(e["key"])
        op = e["operator"]
        if (op == "In" and value not in e["values"]) or (op == "NotIn" and has and value in e["values"]) or \
                (op == "Exists" and not has) or (op == "DoesNotExist" and has):
            return False
    return True


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
    pod = r.one("Deployment", "guard")["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert c["image"] == "meshguard/meshguard:0.1.0@sha256:" + "a" * 64, c["image"]
    assert pod["serviceAccountName"] == "existing-sa" and not r.all("ServiceAccount")
    assert r.one("ClusterRoleBinding", "guard")["subjects"][0]["name"] == "existing-sa"
    assert r.one("ClusterRoleBinding", "guard-reports")["subjects"][0]["name"] == "existing-sa"
    assert r.one("RoleBinding", "guard-lease")["subjects"][0]["name"] == "existing-sa"
    assert r.one("Deployment", "guard-auditor")["spec"]["template"]["spec"]["serviceAccountName"] == "existing-sa"
    assert "requiredDuringSchedulingIgnoredDuringExecution" in pod["affinity"]["podAntiAffinity"]
    assert "nodeAffinity" in pod["affinity"]
    assert "lifecycle" not in c
    assert c["args"][-1] == "--lookup-timeout=1s"
    assert pod["priorityClassName"] == "system-cluster-critical"
    for wh in r.one("ValidatingWebhookConfiguration")["webhooks"]:
        svc = wh["clientConfig"]["service"]
        assert svc == {"name": "guard", "namespace": NS, "path": "/validate", "port": 8443}, svc
    secret = r.one("Secret")
    assert secret["metadata"]["name"] == "guard-tls"
    from cryptography import x509
    leaf = load_cert(base64.b64decode(secret["data"]["tls.crt"]))
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert f"guard.{NS}.svc" in sans, sans
    r2 = render({"podAntiAffinity": "none", "rbac": {"create": False}}, namespace=NS)
    assert "affinity" not in r2.one("Deployment", "meshguard")["spec"]["template"]["spec"]
    r3 = render({"priorityClassName": ""}, namespace=NS)
    assert "priorityClassName" not in r3.one("Deployment", "meshguard")["spec"]["template"]["spec"]
    assert not r2.all("ClusterRole") and not r2.all("ClusterRoleBinding")
    assert not r2.all("Role") and not r2.all("RoleBinding")


# --- Kubernetes schemas -------------------------------------------------------------------------

def test_rendered_objects_match_kubernetes_schemas():
    import kubernetes_validate
    checked = 0
    for values in ({}, ALL_OPTIONAL, CERT_MANAGER, EXISTING, KNOBS, POLICY_VALUES,
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
    assert checked >= 400, checked


# --- golden Deployment for the engine test ------------------------------------------------------

def rendered_golden():
    r = render(namespace="meshguard")
    return r.one("Deployment", "meshguard"), r.one("ConfigMap", "meshguard-policy")["data"]["policy.yaml"]


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
