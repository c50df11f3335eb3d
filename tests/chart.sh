#!/usr/bin/env bash
# Chart tests with the real Helm v4 engine (PyPI helm-sdkpy): lint, refused value
# combinations, rendered-manifest safety checks, Kubernetes JSON schemas.
#   tests/chart.sh            run every test
#   tests/chart.sh --update   also rewrite tests/fixtures/chart/deployment.yaml
#   tests/chart.sh NAME...    run the tests whose name contains NAME
# Creates the virtualenv target/chart-venv on first use. Last line: "N passed, N failed".
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/target/chart-venv"
req="$root/tests/chart/requirements.txt"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]] || ! cmp -s "$req" "$venv/.requirements"; then
  echo "chart.sh: preparing $venv" >&2
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --ignore-requires-python -r "$req" >&2
  cp "$req" "$venv/.requirements"
fi

# Release records in memory: the tests render by installing into an in-memory fake API server,
# which does not speak the protobuf Helm's Secret storage driver uses. Go reads the environment
# once at load, so it is set here rather than from Python.
export HELM_DRIVER=memory
# Helm's own logging (e.g. lint's "funcMap fail") goes to stderr; keep it out of the results.
log="$root/target/chart-tests.log"
set +e
"$venv/bin/python" "$root/tests/chart/test_chart.py" "$@" 2>"$log"
status=$?
set -e
if [[ $status -ne 0 ]]; then
  echo "chart.sh: failures; Helm log and tracebacks in $log" >&2
  grep -v '^[0-9]\{4\}/[0-9][0-9]/[0-9][0-9] ' "$log" >&2 || true
fi
exit $status
