#!/usr/bin/env bash
# Static checks of the deployment files, no server needed:
#   - shellcheck on every script under deploy/ and scripts/need.sh
#     (warnings fail);
#   - promtool check rules on the Prometheus alert rules;
#   - `--version`'s commit: crates/mcr-cli/build.rs compiled on its own and
#     run in this checkout (HEAD's commit) and in a copy without .git, as
#     a tarball build is (`unknown`), `-dirty` after the commit in a clone
#     whose sources were changed, and MCR_GIT_COMMIT taking precedence.
set -euo pipefail
TEST=lint
# shellcheck source=deploy/tests/lib.sh
source "$(dirname "$0")/lib.sh"
need shellcheck promtool:prometheus

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

mapfile -t scripts < <(cd "$REPO" && ls deploy/*.sh deploy/tests/*.sh scripts/need.sh)
(cd "$REPO" && shellcheck -x --severity=warning "${scripts[@]}") || fail "shellcheck found problems (above)"
log "shellcheck: ${#scripts[@]} scripts clean (${scripts[*]})"

promtool check rules "$REPO/deploy/prometheus/mcr-alerts.yml" >"$WORK/promtool.log" 2>&1 \
  || { cat "$WORK/promtool.log" >&2; fail "promtool check rules"; }
promtool test rules "$REPO/deploy/prometheus/mcr-alerts.test.yml" >"$WORK/promtool-test.log" 2>&1 \
  || { cat "$WORK/promtool-test.log" >&2; fail "promtool test rules"; }
log "promtool: deploy/prometheus/mcr-alerts.yml valid, and its unit tests pass ($(grep -o '[0-9]* rules found' "$WORK/promtool.log"))"

rustc --edition 2021 -O -o "$WORK/build-script" "$REPO/crates/mcr-cli/build.rs" 2>"$WORK/rustc.log" \
  || { cat "$WORK/rustc.log" >&2; fail "crates/mcr-cli/build.rs does not compile on its own"; }
commit_of() { sed -n 's/^cargo:rustc-env=MCR_GIT_COMMIT=//p'; }
HEAD=$(git -C "$REPO" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
# Run from a checkout with uncommitted source changes, the build is dirty.
if [ "$HEAD" != unknown ] && [ -n "$(git -C "$REPO" status --porcelain --untracked-files=no -- crates proto Cargo.toml Cargo.lock)" ]; then
  HEAD=$HEAD-dirty
fi
got=$(cd "$WORK" && env -u MCR_GIT_COMMIT CARGO_MANIFEST_DIR="$REPO/crates/mcr-cli" ./build-script | commit_of)
[ "$got" = "$HEAD" ] || fail "build.rs in the checkout gave $got, HEAD is $HEAD"
git clone -q "$REPO" "$WORK/clone"
echo "// changed" >>"$WORK/clone/crates/mcr-cli/build.rs"
got=$(cd "$WORK" && env -u MCR_GIT_COMMIT CARGO_MANIFEST_DIR="$WORK/clone/crates/mcr-cli" ./build-script | commit_of)
[ "$got" = "$(git -C "$WORK/clone" rev-parse --short=12 HEAD)-dirty" ] || fail "build.rs in a changed clone gave $got, not <commit>-dirty"
mkdir -p "$WORK/tarball/crates/mcr-cli"
got=$(cd "$WORK" && env -u MCR_GIT_COMMIT CARGO_MANIFEST_DIR="$WORK/tarball/crates/mcr-cli" GIT_CEILING_DIRECTORIES="$WORK" ./build-script | commit_of)
[ "$got" = unknown ] || fail "build.rs without .git gave $got, not unknown"
got=$(cd "$WORK" && MCR_GIT_COMMIT=0123abcd CARGO_MANIFEST_DIR="$WORK/tarball/crates/mcr-cli" ./build-script | commit_of)
[ "$got" = 0123abcd ] || fail "MCR_GIT_COMMIT=0123abcd gave $got"
log "--version commit: $HEAD in the checkout, -dirty when sources changed, unknown without .git, MCR_GIT_COMMIT wins"
build_release
v=$("$BIN_DIR/mcrsrv" --version)
[[ $v == "mcrsrv "*" (commit $HEAD)" ]] || fail "mcrsrv --version printed: $v"
v2=$("$BIN_DIR/mcrctl" --version)
[[ $v2 == "mcrctl "*" (commit $HEAD)" ]] || fail "mcrctl --version printed: $v2"
log "$v; $v2"
log "passed"
