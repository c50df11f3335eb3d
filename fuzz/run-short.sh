#!/usr/bin/env bash
# Smoke-run every fuzz target for FUZZ_SECS seconds each (default 35: under 2 minutes of
# fuzzing in all, after the build). Not part of tests/run.sh.
#   bash fuzz/run-short.sh            # all targets
#   FUZZ_SECS=3600 bash fuzz/run-short.sh config   # one target, longer
# Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo-fuzz passes nightly-only flags to rustc;
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them. The crate forbids unsafe code, so
# the targets are built without a sanitizer (-s none, faster) but with debug assertions.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"
SECS="${FUZZ_SECS:-35}"
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(admission manifest config bounds)

for t in "${TARGETS[@]}"; do
  cargo fuzz build -O -s none --debug-assertions --target-dir "$TARGET_DIR" "$t"
done

for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
  echo "== $t (${SECS}s)"
  # bounds: the input is a recipe (a few bytes); what it builds is up to the 7 MiB body limit.
  max_len=65536
  [ "$t" = bounds ] && max_len=64
  cargo fuzz run -O -s none --debug-assertions --target-dir "$TARGET_DIR" "$t" "corpus/$t" -- \
    -max_total_time="$SECS" -print_final_stats=1 -max_len="$max_len" \
    -timeout=30 -rss_limit_mb=1024 -malloc_limit_mb=512 -artifact_prefix="artifacts/$t/" 2>&1 \
    | grep -E '^(#[0-9]+.*(DONE|INITED)|stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|.*panicked|Done )' || true
  # (`ls a b c` fails when any one of them is missing: count what is there instead.)
  if [ -n "$(find "artifacts/$t" -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' | head -1)" ]; then
    echo "FAIL: $t found inputs in fuzz/artifacts/$t" >&2
    exit 1
  fi
done
echo "fuzz smoke run: no crashes"
