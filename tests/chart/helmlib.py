"""Render and lint the chart with the real Helm v4 engine (helm-sdkpy).

helm-sdkpy exposes install/upgrade/lint but no `template` or dry-run, so rendering installs into
FakeApi (an in-memory API server on 127.0.0.1) with the in-memory release driver and reads the
release manifest Helm returns. Lint takes only a chart path, so values are linted from a copy of
the chart whose values.yaml is replaced."""

import asyncio
import copy
import json
import os
import re
import shutil
import tempfile

import yaml

import sys

# Release records in memory: the fake API server does not speak the protobuf of Helm's Secret
# storage. The Go library reads the environment once when loaded, so re-exec to set it.
if os.environ.get("HELM_DRIVER") != "memory":
    os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, HELM_DRIVER="memory"))

import helm_sdkpy  # noqa: E402

from fakeapi import FakeApi  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "charts", "meshguard")


def default_values():
    with open(os.path.join(CHART, "values.yaml")) as f:
        return yaml.safe_load(f)


def merge(base, override):
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


class Release:
    """A rendered release: the manifest documents and the API server's stored objects."""

    def __init__(self, manifest, api):
        self.manifest = manifest
        self.docs = [d for d in yaml.safe_load_all(manifest) if d]
        self.api = api

    def kinds(self):
        return sorted(d["kind"] for d in self.docs)

    def one(self, kind, name=None):
        found = [d for d in self.docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
        if len(found) != 1:
            raise AssertionError(f"expected one {kind} {name or ''}, found {len(found)}: {self.kinds()}")
        return found[0]

    def all(self, kind):
        return [d for d in self.docs if d["kind"] == kind]


class Cluster:
    """One fake cluster; installs and upgrades share its state (so `lookup` sees earlier
    releases' objects)."""

    def __init__(self, namespace="meshguard", **api_options):
        self.namespace = namespace
        self.api = FakeApi(**api_options)
        self.api.__enter__()
        self.tmp = tempfile.mkdtemp(prefix="meshguard-chart-")
        self.config = helm_sdkpy.Configuration(
            namespace=namespace, kubeconfig=self.api.kubeconfig(os.path.join(self.tmp, "kubeconfig")))

    def close(self):
        self.api.__exit__(None, None, None)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def install(self, values=None, release="meshguard"):
        result = asyncio.run(helm_sdkpy.Install(self.config).run(
            release, CHART, values=values or {}, wait=False, timeout=60))
        return Release(result["manifest"], self.api)

    def upgrade(self, values=None, release="meshguard"):
        result = asyncio.run(helm_sdkpy.Upgrade(self.config).run(
            release, CHART, values=values or {}, wait=False, timeout=60))
        return Release(result["manifest"], self.api)


def render(values=None, namespace="meshguard", release="meshguard", **api_options):
    with Cluster(namespace, **api_options) as c:
        return c.install(values, release)


FAIL_LOG = re.compile(r'funcMap fail.*?message="((?:[^"\\]|\\.)*)"')


def lint(values=None):
    """Lint a copy of the chart whose values.yaml is the defaults merged with `values`.
    Returns (errors, messages): Helm's lint messages of severity error plus the template
    `fail` calls, and all messages.

    Helm v4 lints in "lint mode", where a template's `fail` does not fail the lint but is logged
    ("funcMap fail message=...") to the process's stderr; the log is captured at the file
    descriptor level and each such line counts as an error."""
    tmp = tempfile.mkdtemp(prefix="meshguard-lint-")
    try:
        chart = os.path.join(tmp, "meshguard")
        shutil.copytree(CHART, chart)
        with open(os.path.join(chart, "values.yaml"), "w") as f:
            yaml.safe_dump(merge(default_values(), values), f)
        config = helm_sdkpy.Configuration(namespace="meshguard")
        log_path = os.path.join(tmp, "stderr.log")
        sys.stderr.flush()
        saved = os.dup(2)
        with open(log_path, "wb") as log:
            os.dup2(log.fileno(), 2)
            try:
                result = asyncio.run(helm_sdkpy.Lint(config).run(chart))
            finally:
                os.dup2(saved, 2)
                os.close(saved)
        with open(log_path, errors="replace") as f:
            log_text = f.read()
        sys.stderr.write(log_text)  # keep Helm's log in the test log
        messages = result.get("Messages") or []
        errors = [m for m in messages if m.get("Severity", 0) >= 3] + list(result.get("Errors") or [])
        errors += [{"fail": m} for m in FAIL_LOG.findall(log_text)]
        return errors, messages
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def dump(obj):
    return json.dumps(obj, indent=2, sort_keys=True)
