#!/usr/bin/env bash
# Runs every test of the project: the Rust suites (unit, HTTPS integration, conformance, CLI),
# the benchmarks in smoke mode, and the Helm chart tests (which set up their own Python
# virtualenv under target/). Usage: bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --locked --all-targets
cargo test --locked --doc

if [ -f tests/chart.sh ]; then
  bash tests/chart.sh
fi
