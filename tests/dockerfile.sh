#!/usr/bin/env bash
# No Docker engine runs here, so this checks the Dockerfile's conventions and runs its build
# step as CI would: the exact `cargo build` command of the Dockerfile's RUN line, in the
# repository (reusing ${CARGO_TARGET_DIR:-target}), then starts the binary it produced.
# Last line: "N passed, N failed".
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
passed=0 failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1${2:+: $2}"; failed=$((failed + 1)); }
check() { local name="$1"; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else bad "$name"; fi; }

# Join continuation lines so each instruction is one line.
instructions="$(sed -e ':a' -e '/\\$/{N;s/\\\n/ /;ba' -e '}' Dockerfile | grep -v '^\s*#' | grep -v '^\s*$')"
final_stage="$(awk 'BEGIN{s=""} /^FROM /{s=""} {s=s $0 "\n"} END{printf "%s", s}' <<<"$instructions")"

check "multi-stage build" test "$(grep -c '^FROM ' <<<"$instructions")" -ge 2
check "final image is distroless or scratch" grep -Eq '^FROM (scratch|[^ ]*distroless/)' <<<"$final_stage"
check "final stage runs no commands (no shell needed)" bash -c '! grep -q "^RUN " <<<"$1"' _ "$final_stage"
check "numeric non-root USER" grep -Eq '^USER [1-9][0-9]*(:[0-9]+)?$' <<<"$final_stage"
# Every base image can be pinned by digest: its FROM ends in a digest build argument declared
# before the first FROM, empty by default (the tag alone until a digest is passed).
while read -r from; do
  arg="$(grep -o '\${[A-Z_]*DIGEST}' <<<"$from" | tr -d '${}')"
  if [[ -n "$arg" ]] && grep -Eq "^ARG $arg=\$" <<<"$instructions"; then
    ok "base image pinnable by digest ($arg): $from"
  else
    bad "base image pinnable by digest: $from" "end the image with \${SOMETHING_DIGEST} and declare ARG SOMETHING_DIGEST= before the first FROM"
  fi
done < <(grep '^FROM ' <<<"$instructions")
check 'ENTRYPOINT ["/meshguard"]' grep -qx 'ENTRYPOINT \["/meshguard"\]' <<<"$final_stage"
check 'CMD ["serve"]' grep -qx 'CMD \["serve"\]' <<<"$final_stage"

cargo_line="$(grep '^RUN ' <<<"$instructions" | grep -o 'cargo build[^&;]*' | head -1 | sed 's/ *$//')"
if [[ -z "$cargo_line" ]]; then
  bad "RUN line with cargo build"
else
  ok "RUN line with cargo build: $cargo_line"
  for flag in --release --locked; do
    check "cargo build uses $flag" grep -q -- "$flag" <<<"$cargo_line"
  done
fi

# The build context (after .dockerignore) keeps what the build needs and drops secrets.
ignored() {
  python3 - "$1" <<'PY'
import fnmatch, sys
path = sys.argv[1]
hit = False
for line in open(".dockerignore"):
    p = line.strip()
    if not p or p.startswith("#"):
        continue
    neg = p.startswith("!")
    p = p.lstrip("!").lstrip("/")
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    if any(fnmatch.fnmatch(x, p) or fnmatch.fnmatch(x, p.replace("**/", "")) for x in prefixes):
        hit = not neg
sys.exit(0 if hit else 1)
PY
}
for need in Cargo.toml Cargo.lock src/main.rs src/lib.rs src/default-policy.yaml; do
  if ignored "$need"; then bad ".dockerignore keeps $need"; else ok ".dockerignore keeps $need"; fi
done
for drop in target/release/meshguard certs/ca-key.pem .git/config; do
  if ignored "$drop"; then ok ".dockerignore drops $drop"; else bad ".dockerignore drops $drop"; fi
done

if [[ -n "$cargo_line" ]]; then
  echo "running: $cargo_line" >&2
  if $cargo_line >&2; then
    ok "release build with the Dockerfile's flags"
    bin="${CARGO_TARGET_DIR:-target}/release/meshguard"
    check "built binary runs (--version)" "$bin" --version
    check "built binary has the serve command" "$bin" serve --help
  else
    bad "release build with the Dockerfile's flags"
  fi
fi

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
