#!/usr/bin/env bash
# The weekly fuzz job: every target to FUZZ_RUNS executions (default 1,000,000; `bounds` to
# FUZZ_BOUNDS_RUNS, default 100,000: each of its inputs builds and decodes up to 7 MiB, ~10 per
# second, so 10^5 take about 3 hours), printing per target the executions, the wall time and
# libFuzzer's peak RSS (README, Fuzzing). Too long for CI; run it on a spare machine, e.g.
# from cron:
#   bash fuzz/run-weekly.sh                      # all targets
#   FUZZ_RUNS=100000 bash fuzz/run-weekly.sh bounds
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"
RUNS="${FUZZ_RUNS:-1000000}"
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(admission manifest config bounds)

for t in "${TARGETS[@]}"; do
  cargo fuzz build -O -s none --debug-assertions --target-dir "$TARGET_DIR" "$t"
done
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
  # bounds: the input is a recipe (a few bytes); what it builds is up to the 7 MiB body limit.
  max_len=65536
  [ "$t" = bounds ] && max_len=64
  runs=$RUNS
  [ "$t" = bounds ] && runs="${FUZZ_BOUNDS_RUNS:-100000}"
  start=$(date +%s)
  echo "== $t ($runs runs)"
  cargo fuzz run -O -s none --debug-assertions --target-dir "$TARGET_DIR" "$t" "corpus/$t" -- \
    -runs="$runs" -print_final_stats=1 -max_len="$max_len" -timeout=30 \
    -rss_limit_mb=1024 -malloc_limit_mb=512 -artifact_prefix="artifacts/$t/" 2>&1 \
    | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|.*panicked|Done )' || true
  echo "wall: $(($(date +%s) - start)) s"
  # (`ls a b c` fails when any one of them is missing: count what is there instead.)
  if [ -n "$(find "artifacts/$t" -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' | head -1)" ]; then
    echo "FAIL: $t found inputs in fuzz/artifacts/$t" >&2
    exit 1
  fi
done
echo "fuzz weekly run: no crashes"
