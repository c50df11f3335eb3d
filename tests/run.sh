#!/usr/bin/env bash
# Runs every test of the project: the Rust suites (unit, HTTPS integration, conformance, CLI),
# the benchmarks in smoke mode, the Helm chart tests (which set up their own Python
# virtualenv under target/), the posture page in headless Chromium (when installed), and —
# when MESHGUARD_E2E_KUBECONFIG names a cluster — the end-to-end suite (tests/e2e) as its own,
# timed step. Usage: bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# `--tests --benches`: every target that has tests (the library's unit tests, tests/integration,
# tests/e2e) and the criterion benches, which run each benchmark once as a smoke test. Not
# `--all-targets`, which also compiles the binary and every example in test mode although
# none has a test (Cargo.toml: `test = false`; `cargo clippy --all-targets` in .ci/run still
# compiles the examples), nor `--doc`: the library has no doctests (`doctest = false`).

if [ -n "${MESHGUARD_E2E_KUBECONFIG:-}" ]; then
  # The e2e target is one of --tests; here it runs on its own afterwards, so this
  # first run leaves it out (it then prints that it is skipped).
  echo "run.sh: the end-to-end suite runs as its own step after the other suites" >&2
  env -u MESHGUARD_E2E_KUBECONFIG -u MESHGUARD_E2E_KUBECONFIG_KCM_SHARED \
    cargo test --locked --tests --benches
else
  cargo test --locked --tests --benches
fi

if [ -f tests/chart.sh ]; then
  bash tests/chart.sh
fi

# The posture page (`meshguard report --html`) in a real browser: the tutorial's page, loaded
# from file:// in headless Chromium over the DevTools pipe (tests/browser/posture.py, Python's
# standard library only), against `meshguard check --format json` of the same input. Set
# MESHGUARD_POSTURE_SCREENSHOT=docs/posture.png to regenerate docs/commands.md's screenshot.
if command -v chromium >/dev/null 2>&1; then
  target=${CARGO_TARGET_DIR:-target}
  bin=$target/debug/meshguard # built by `cargo test` above (the integration tests use it)
  [ -x "$bin" ] || bin=$target/release/meshguard
  [ -x "$bin" ] || { cargo build --locked --quiet; bin=$target/debug/meshguard; }
  page_dir=$target/posture-check # kept after a failure, for a look at the page
  rm -rf "$page_dir" && mkdir -p "$page_dir"
  rc=0
  "$bin" check tests/fixtures/tutorial --format json >"$page_dir/check.json" || rc=$?
  [ "$rc" -le 1 ] || { echo "run.sh: meshguard check failed ($rc)" >&2; exit 1; }
  "$bin" report tests/fixtures/tutorial --html "$page_dir/posture.html"
  python3 tests/browser/posture.py check "$page_dir/posture.html" --expect "$page_dir/check.json" \
    ${MESHGUARD_POSTURE_SCREENSHOT:+--screenshot "$MESHGUARD_POSTURE_SCREENSHOT"}
else
  echo "run.sh: chromium not on PATH: the posture page's browser check is skipped (apt-get install chromium to run it)" >&2
fi

if [ -n "${MESHGUARD_E2E_KUBECONFIG:-}" ]; then
  # Built by the first step already: this times the suite itself.
  start=$(date +%s%N)
  cargo test --locked --test e2e
  echo "run.sh: end-to-end suite: $(( ($(date +%s%N) - start) / 1000000 )) ms wall time"
fi
