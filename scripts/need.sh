# need CMD[:PACKAGE]...: installs, with apt-get, the Debian package of each
# command that is missing (PACKAGE defaults to CMD), saying so through the
# caller's `log`. Sourced by scripts/e2e.sh, bench/run.sh and
# deploy/tests/lib.sh: CI starts from a machine that may lack them.
# shellcheck shell=bash
need() {
  local missing=() spec
  for spec in "$@"; do
    command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >/dev/null
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}
