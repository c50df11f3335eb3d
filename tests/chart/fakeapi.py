"""A minimal in-memory Kubernetes API server on 127.0.0.1 for rendering the chart with the real
Helm engine (helm-sdkpy's Install/Upgrade have no dry-run). It serves discovery for the kinds
the chart emits, stores whatever Helm creates, and answers `lookup` from that store, so an
upgrade sees the objects the install created (this is how certificate reuse is tested)."""

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# group/version -> [(plural, kind, namespaced)]
RESOURCES = {
    "v1": [
        ("configmaps", "ConfigMap", True),
        ("secrets", "Secret", True),
        ("services", "Service", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("namespaces", "Namespace", False),
        ("pods", "Pod", True),
    ],
    "apps/v1": [("deployments", "Deployment", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "rbac.authorization.k8s.io/v1": [
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
        ("roles", "Role", True),
        ("rolebindings", "RoleBinding", True),
    ],
    "admissionregistration.k8s.io/v1": [
        ("validatingwebhookconfigurations", "ValidatingWebhookConfiguration", False),
        ("mutatingwebhookconfigurations", "MutatingWebhookConfiguration", False),
        ("validatingadmissionpolicies", "ValidatingAdmissionPolicy", False),
        ("validatingadmissionpolicybindings", "ValidatingAdmissionPolicyBinding", False),
    ],
    "networking.k8s.io/v1": [("networkpolicies", "NetworkPolicy", True)],
    "apiextensions.k8s.io/v1": [("customresourcedefinitions", "CustomResourceDefinition", False)],
}
OPTIONAL = {
    "cert-manager.io/v1": [
        ("issuers", "Issuer", True),
        ("certificates", "Certificate", True),
    ],
    "monitoring.coreos.com/v1": [
        ("servicemonitors", "ServiceMonitor", True),
        ("prometheusrules", "PrometheusRule", True),
    ],
}
# ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1, Kubernetes 1.30+).
ADMISSION_POLICIES = {"validatingadmissionpolicies", "validatingadmissionpolicybindings"}


def merge_patch(target, patch):
    """A strategic merge patch, as far as Helm's patches of the chart's objects need it."""
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return patch
    out = dict(target)
    for k, v in patch.items():
        if k.startswith("$"):
            continue  # directives ($setElementOrder, $patch, $retainKeys): order and hints only
        if v is None:
            out.pop(k, None)
        elif isinstance(v, list) and isinstance(out.get(k), list) and v and all(
                isinstance(i, dict) and "name" in i for i in v):
            items = {i.get("name"): i for i in out[k] if isinstance(i, dict)}
            merged = [merge_patch(items.get(i["name"], {}), i) for i in v]
            names = {i["name"] for i in v}
            out[k] = merged + [i for i in out[k] if isinstance(i, dict) and i.get("name") not in names]
        elif isinstance(v, dict):
            out[k] = merge_patch(out.get(k) or {}, v)
        else:
            out[k] = v
    return out


class FakeApi:
    def __init__(self, cert_manager=True, prometheus_operator=True, minor="33", admission_policies=True,
                 objects=()):
        self.groups = dict(RESOURCES)
        if not admission_policies:
            gv = "admissionregistration.k8s.io/v1"
            self.groups[gv] = [r for r in self.groups[gv] if r[0] not in ADMISSION_POLICIES]
        if cert_manager:
            self.groups["cert-manager.io/v1"] = OPTIONAL["cert-manager.io/v1"]
        if prometheus_operator:
            self.groups["monitoring.coreos.com/v1"] = OPTIONAL["monitoring.coreos.com/v1"]
        self.minor = minor
        self.store = {}  # path of the item -> object
        self.lock = threading.Lock()
        for obj in objects:  # objects the cluster has before the release (e.g. Istio's MeshConfig)
            self.put(obj)
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                api.handle(self, "GET")

            def do_POST(self):
                api.handle(self, "POST")

            def do_PUT(self):
                api.handle(self, "PUT")

            def do_PATCH(self):
                api.handle(self, "PATCH")

            def do_DELETE(self):
                api.handle(self, "DELETE")

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # clients hang up on discovery answers they do not need

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def kubeconfig(self, path):
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "fake", "user": {"token": "fake"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        }
        with open(path, "w") as f:
            json.dump(cfg, f)
        return path

    # -- helpers -----------------------------------------------------------------------
    def put(self, obj):
        """Store an object as if created: {apiVersion, kind, metadata: {name, namespace?}}."""
        gv, kind = obj["apiVersion"], obj["kind"]
        for plural, k, namespaced in self.groups.get(gv, []):
            if k == kind:
                ns = obj["metadata"].get("namespace", "") if namespaced else ""
                with self.lock:
                    self.store[f"{gv}/{ns}/{plural}/{obj['metadata']['name']}"] = obj
                return
        raise KeyError(f"{gv} {kind} is not served")

    def objects(self, kind=None):
        with self.lock:
            objs = list(self.store.values())
        return [o for o in objs if kind is None or o.get("kind") == kind]

    def _kind_of(self, gv, plural):
        for p, kind, namespaced in self.groups.get(gv, []):
            if p == plural:
                return kind, namespaced
        return None, None

    def _send(self, h, code, body):
        data = json.dumps(body).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _status(self, h, code, reason, message):
        self._send(h, code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                             "message": message, "reason": reason, "code": code})

    def _discovery(self, h, path):
        if path == "/version":
            return self._send(h, 200, {"major": "1", "minor": self.minor,
                                       "gitVersion": f"v1.{self.minor}.0", "platform": "linux/amd64"})
        if path == "/api":
            return self._send(h, 200, {"kind": "APIVersions", "versions": ["v1"]})
        if path == "/apis":
            groups = {}
            for gv in self.groups:
                if "/" in gv:
                    g, v = gv.split("/")
                    groups.setdefault(g, []).append(v)
            return self._send(h, 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                 "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}
                for g, vs in groups.items()]})
        gv = path[len("/api/"):] if path.startswith("/api/") else path[len("/apis/"):]
        if gv in self.groups:
            return self._send(h, 200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                                       "resources": [{"name": p, "singularName": k.lower(), "kind": k,
                                                      "namespaced": n,
                                                      "verbs": ["create", "delete", "get", "list", "patch",
                                                                "update", "watch"]}
                                                     for p, k, n in self.groups[gv]]})
        return None

    def handle(self, h, method):
        url = urllib.parse.urlsplit(h.path)
        path = url.path.rstrip("/")
        query = urllib.parse.parse_qs(url.query)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        if body and "json" not in (h.headers.get("Content-Type") or "json"):
            # Typed clients send protobuf; Helm's release storage is the only one, and the
            # tests use the memory driver (HELM_DRIVER=memory) instead.
            return self._status(h, 415, "UnsupportedMediaType", "only JSON is supported")
        parts = path.split("/")[1:]
        is_discovery = path in ("/version", "/api", "/apis", "/api/v1") or (
            parts[0] == "apis" and len(parts) == 3)
        if method == "GET" and is_discovery:
            if self._discovery(h, path) is None:
                self._status(h, 404, "NotFound", f"no group version {path}")
            return
        # /api/v1/... or /apis/g/v/...
        if parts[0] == "api":
            gv, rest = parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 3:
            gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        else:
            return self._status(h, 404, "NotFound", f"no route {path}")
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        if not rest:
            return self._status(h, 404, "NotFound", f"no route {path}")
        plural, name = rest[0], (rest[1] if len(rest) > 1 else None)
        kind, _ = self._kind_of(gv, plural)
        if kind is None:
            return self._status(h, 404, "NotFound", f"the server could not find the requested resource ({gv} {plural})")
        prefix = f"{gv}/{ns or ''}/{plural}"
        if method == "GET" and name is None:
            sel = (query.get("labelSelector") or [""])[0]
            want = dict(kv.split("=", 1) for kv in sel.split(",") if "=" in kv)
            with self.lock:
                items = [o for k, o in self.store.items()
                         if k.startswith(prefix + "/") and all(
                             (o.get("metadata", {}).get("labels") or {}).get(a) == b for a, b in want.items())]
            return self._send(h, 200, {"kind": kind + "List", "apiVersion": gv, "metadata": {"resourceVersion": "1"},
                                       "items": items})
        if method == "GET":
            with self.lock:
                obj = self.store.get(f"{prefix}/{name}")
            if obj is None:
                return self._status(h, 404, "NotFound", f'{plural} "{name}" not found')
            return self._send(h, 200, obj)
        if method in ("POST", "PUT"):
            obj = json.loads(body or b"{}")
            meta = obj.setdefault("metadata", {})
            if ns:
                meta.setdefault("namespace", ns)
            meta.setdefault("uid", f"uid-{len(self.store)}")
            meta["resourceVersion"] = str(len(self.store) + 1)
            key = f"{prefix}/{meta.get('name') or name}"
            with self.lock:
                if method == "POST" and key in self.store:
                    return self._status(h, 409, "AlreadyExists", f'{plural} "{meta.get("name")}" already exists')
                self.store[key] = obj
            return self._send(h, 201 if method == "POST" else 200, obj)
        if method == "PATCH":
            # Helm sends strategic merge patches: applied as a merge (maps merged, null deletes,
            # lists of named items merged by name, other lists replaced), so that lookups after
            # an upgrade see what the upgrade wrote.
            with self.lock:
                obj = self.store.get(f"{prefix}/{name}")
                if obj is not None:
                    obj = merge_patch(obj, json.loads(body or b"{}"))
                    obj["metadata"]["resourceVersion"] = str(int(obj["metadata"].get("resourceVersion", "0")) + 1)
                    self.store[f"{prefix}/{name}"] = obj
            if obj is None:
                return self._status(h, 404, "NotFound", f'{plural} "{name}" not found')
            return self._send(h, 200, obj)
        if method == "DELETE":
            with self.lock:
                obj = self.store.pop(f"{prefix}/{name}", None)
            if obj is None:
                return self._status(h, 404, "NotFound", f'{plural} "{name}" not found')
            return self._send(h, 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
        return self._status(h, 405, "MethodNotAllowed", method)
