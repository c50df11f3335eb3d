#!/usr/bin/env python3
"""Load a cluster for the auditor's memory measurement (docs/auditor.md).

    python3 tests/scale/load.py --kubeconfig $KUBECONFIG --namespaces 3000 \
        --service-accounts 5 --deployments 10000          # the issue's scale
    python3 tests/scale/load.py --kubeconfig $KUBECONFIG --namespaces 1 \
        --large 1 --large-mib 1.4 --large-replicas 20     # one 1.4 MiB workload, 20 Pods

Objects are created with plain POSTs over a pool of keep-alive HTTPS connections (standard
library only; a client certificate or a bearer token from the kubeconfig). Namespaces are named
<prefix>-<i>, each gets --service-accounts ServiceAccounts beside the default one that
kube-controller-manager creates, and the Deployments are spread round-robin over the namespaces
(replicas 0 unless --replicas; a Deployment's ReplicaSet is created by the controller anyway).
A large workload carries its payload in container env values (annotations are capped at 256 KiB
in total; a whole object at about 1.5 MiB by etcd). Existing objects (409) count as created.
"""
import argparse, base64, http.client, json, os, ssl, sys, tempfile, threading, time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse


def kubeconfig(path):
    # The kubeconfig envtest writes is YAML in flow style; try JSON first, then a tiny reader.
    text = open(path).read()
    try:
        import yaml  # type: ignore
        return yaml.safe_load(text)
    except ImportError:
        pass
    try:
        return json.loads(text)
    except ValueError:
        sys.exit("needs PyYAML for a YAML kubeconfig (pip install pyyaml)")


class Api:
    def __init__(self, path):
        cfg = kubeconfig(path)
        ctx_name = cfg["current-context"]
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        url = urlparse(cluster["server"])
        self.host, self.port = url.hostname, url.port or 443
        self.ssl = ssl.create_default_context()
        tmp = tempfile.mkdtemp()
        def material(key):
            if key + "-data" in src:
                f = os.path.join(tmp, key)
                with open(f, "wb") as out:
                    out.write(base64.b64decode(src[key + "-data"]))
                return f
            return src.get(key)
        src = cluster
        ca = material("certificate-authority")
        if ca:
            self.ssl.load_verify_locations(ca)
        src = user
        cert, key = material("client-certificate"), material("client-key")
        if cert and key:
            self.ssl.load_cert_chain(cert, key)
        self.headers = {"Content-Type": "application/json"}
        if user.get("token"):
            self.headers["Authorization"] = "Bearer " + user["token"]
        self.local = threading.local()

    def post(self, path, body):
        for attempt in range(5):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = http.client.HTTPSConnection(self.host, self.port, context=self.ssl, timeout=60)
                self.local.conn = conn
            try:
                conn.request("POST", path, body=json.dumps(body), headers=self.headers)
                r = conn.getresponse()
                data = r.read()
            except (OSError, http.client.HTTPException):
                self.local.conn = None
                time.sleep(0.2 * (attempt + 1))
                continue
            if r.status in (200, 201, 202, 409):
                return r.status
            if r.status in (429, 500, 503, 504):
                time.sleep(0.5 * (attempt + 1))
                continue
            raise RuntimeError(f"POST {path}: {r.status} {data[:300]!r}")
        raise RuntimeError(f"POST {path}: gave up")


def run(api, label, items, workers):
    start, done = time.time(), 0
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(lambda pb: api.post(*pb), items):
            done += 1
    took = time.time() - start
    print(f"{label}: {done} in {took:.1f}s ({done / max(took, 1e-9):.0f}/s)", flush=True)


def deployment(name, ns, replicas, env=None):
    container = {"name": "app", "image": "registry.example/app:1.0",
                 "securityContext": {"allowPrivilegeEscalation": False}}
    if env:
        container["env"] = env
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"serviceAccountName": "sa-0" , "containers": [container]}}}}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    p.add_argument("--prefix", default="scale")
    p.add_argument("--namespaces", type=int, default=3000)
    p.add_argument("--service-accounts", type=int, default=5, help="per namespace, beside default")
    p.add_argument("--deployments", type=int, default=10000)
    p.add_argument("--replicas", type=int, default=0)
    p.add_argument("--large", type=int, default=0, help="large Deployments")
    p.add_argument("--large-mib", type=float, default=1.4)
    p.add_argument("--large-replicas", type=int, default=20)
    p.add_argument("--workers", type=int, default=16)
    a = p.parse_args()
    api = Api(a.kubeconfig)
    names = [f"{a.prefix}-{i}" for i in range(a.namespaces)]
    run(api, "namespaces", [("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": n, "labels": {"istio-injection": "enabled"}}}) for n in names], a.workers)
    run(api, "serviceaccounts", [(f"/api/v1/namespaces/{n}/serviceaccounts", {"apiVersion": "v1",
        "kind": "ServiceAccount", "metadata": {"name": f"sa-{j}", "namespace": n}})
        for n in names for j in range(a.service_accounts)], a.workers)
    run(api, "deployments", [(f"/apis/apps/v1/namespaces/{names[i % len(names)]}/deployments",
        deployment(f"app-{i}", names[i % len(names)], a.replicas)) for i in range(a.deployments)], a.workers)
    if a.large:
        value = "x" * 1024
        env = [{"name": f"V{k}", "value": value} for k in range(int(a.large_mib * 1024))]
        run(api, "large deployments", [(f"/apis/apps/v1/namespaces/{names[i % len(names)]}/deployments",
            deployment(f"large-{i}", names[i % len(names)], a.large_replicas, env)) for i in range(a.large)], 2)


if __name__ == "__main__":
    main()
