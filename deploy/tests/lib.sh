# Shared by the deploy/tests/*.sh checks (sourced, not run): logging,
# installing missing tools, building the release binaries, free ports,
# and a `mcrsrv dev` to push to. Each script sets TEST before sourcing.
# shellcheck shell=bash

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mcr/target}"
# MCR_BIN_DIR=DIR tests binaries already built there instead of building
# the release ones (e.g. a debug build while iterating).
# shellcheck disable=SC2034 # used by the scripts that source this
BIN_DIR=${MCR_BIN_DIR:-$CARGO_TARGET_DIR/release}

log() { printf '[%s] %s\n' "$TEST" "$*"; }
fail() { printf '[%s] FAIL: %s\n' "$TEST" "$*" >&2; exit 1; }
# skip REASON: the whole check cannot run on this machine; says why.
skip() { printf '[%s] SKIPPED: %s\n' "$TEST" "$*"; exit 0; }

# shellcheck source=scripts/need.sh
source "$REPO/scripts/need.sh"

# build_release: mcrsrv, mcrctl and mcr-web (the binaries of mcr-cli).
build_release() {
  [ -z "${MCR_BIN_DIR:-}" ] || return 0
  (cd "$REPO" && cargo build --quiet --release -p mcr-cli)
}

# Whether the workspace builds an mcr-web binary (mcr-cli does).
has_web_binary() {
  (cd "$REPO" && cargo metadata --no-deps --format-version 1 2>/dev/null) |
    jq -e '.packages[].targets[] | select(.kind[] == "bin" and .name == "mcr-web")' >/dev/null
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_http URL PID LOG: until URL answers at all, or the process died.
wait_http() {
  local _
  for _ in $(seq 1 150); do
    curl -s -o /dev/null "$1" && return 0
    kill -0 "$2" 2>/dev/null || { cat "$3" >&2; fail "the server exited before answering $1"; }
    sleep 0.1
  done
  cat "$3" >&2; fail "no answer from $1 in 15 s"
}
