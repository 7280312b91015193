#!/usr/bin/env bash
# deploy/install.sh into scratch roots (DESTDIR): complete (every file and
# directory an operator needs, with its mode), idempotent (a second run
# leaves the tree identical: files, modes, contents), an existing config
# never overwritten, and --prefix written into the systemd units.
set -euo pipefail
TEST=install
# shellcheck source=deploy/tests/lib.sh
source "$(dirname "$0")/lib.sh"
need jq
build_release

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/root

install_into() { DESTDIR=$1 "$REPO/deploy/install.sh" --bin-dir "$BIN_DIR" "${@:2}" >"$WORK/install.log" 2>&1 \
  || { cat "$WORK/install.log" >&2; fail "install.sh failed"; }; }
# tree ROOT: one line per path: type, mode, size, SHA-256 of a file.
tree() {
  (cd "$1" && find . -printf '%y %m %s %p\n' | sort -k4 | while read -r type mode size path; do
    sum=-; [ "$type" = f ] && sum=$(sha256sum "$path" | cut -d' ' -f1)
    printf '%s %s %s %s %s\n' "$type" "$mode" "$size" "$sum" "$path"
  done)
}

install_into "$ROOT"
tree "$ROOT" >"$WORK/first"
install_into "$ROOT"
tree "$ROOT" >"$WORK/second"
diff -u "$WORK/first" "$WORK/second" || fail "a second run changed the tree (above)"
log "ran twice into a scratch root: identical trees ($(wc -l <"$WORK/first") paths, modes and contents compared)"

# Everything an operator needs, with its mode.
expected=(
  "f 755 ./usr/local/bin/mcrsrv"
  "f 755 ./usr/local/bin/mcrctl"
  "f 755 ./usr/local/bin/mcr-backup"
  "f 644 ./usr/local/share/doc/mcr/RUNBOOK.md"
  "f 644 ./usr/local/share/doc/mcr/ARCHITECTURE.md"
  "f 644 ./usr/local/share/doc/mcr/replicas.md"
  "f 644 ./usr/local/share/doc/mcr/postgresql.md"
  "f 644 ./usr/local/share/doc/mcr/s3.md"
  "f 644 ./usr/local/share/doc/mcr/examples/mcr.toml"
  "f 644 ./usr/local/share/doc/mcr/examples/mcr-dev.toml"
  "f 644 ./usr/local/share/doc/mcr/examples/mcr-web.toml"
  "f 644 ./usr/local/share/doc/mcr/examples/mcr-replica.toml"
  "f 644 ./usr/local/share/doc/mcr/mcr-alerts.yml"
  "f 644 ./etc/systemd/system/mcr.service"
  "f 644 ./etc/systemd/system/mcr-web.service"
  "f 644 ./etc/systemd/system/mcr-backup.service"
  "f 644 ./etc/systemd/system/mcr-backup.timer"
  "d 750 ./srv/mcr"
  "d 750 ./srv/mcr/layers"
  "d 700 ./srv/mcr/uploads"
  "d 700 ./srv/mcr/backups"
  "d 750 ./srv/mcr/tls"
  "f 640 ./srv/mcr/mcr.toml"
  "f 640 ./srv/mcr/mcr-web.toml"
  "f 600 ./srv/mcr/web-session.key"
)
if has_web_binary; then expected+=("f 755 ./usr/local/bin/mcr-web"); else
  log "mcr-web has no binary yet: not expected in the tree"
fi
for e in "${expected[@]}"; do
  read -r type mode path <<<"$e"
  grep -q "^$type $mode [^ ]* [^ ]* $path\$" "$WORK/first" || fail "missing or wrong mode: $e (have: $(grep " $path\$" "$WORK/first" || echo nothing))"
done
log "complete: ${#expected[@]} paths present with their modes"
cmp -s "$ROOT/usr/local/bin/mcrsrv" "$BIN_DIR/mcrsrv" || fail "the installed mcrsrv is not the built one"
cmp -s "$ROOT/srv/mcr/mcr.toml" "$REPO/deploy/examples/mcr.toml" || fail "/srv/mcr/mcr.toml is not the example"
[ "$(stat -c %s "$ROOT/srv/mcr/web-session.key")" -eq 64 ] || fail "the web session key is not 64 bytes"
"$ROOT/usr/local/bin/mcrsrv" --version | grep -q '^mcrsrv ' || fail "the installed mcrsrv does not run"

# An operator's config survives a reinstall.
printf '# edited by the operator\n' >>"$ROOT/srv/mcr/mcr.toml"
chmod 600 "$ROOT/srv/mcr/mcr.toml"
install_into "$ROOT"
tail -1 "$ROOT/srv/mcr/mcr.toml" | grep -q 'edited by the operator' || fail "a reinstall overwrote the edited mcr.toml"
grep -q "kept the existing $ROOT/srv/mcr/mcr.toml" "$WORK/install.log" || fail "install.sh did not say it kept the config"
log "an edited /srv/mcr/mcr.toml is kept on reinstall"

# --prefix: programs and docs move, units follow.
install_into "$WORK/opt" --prefix /opt/mcr
[ -x "$WORK/opt/opt/mcr/bin/mcrsrv" ] || fail "--prefix /opt/mcr did not put mcrsrv in /opt/mcr/bin"
grep -q '^ExecStart=/opt/mcr/bin/mcrsrv server' "$WORK/opt/etc/systemd/system/mcr.service" || fail "mcr.service does not run /opt/mcr/bin/mcrsrv"
grep -q '^Environment=MCRSRV=/opt/mcr/bin/mcrsrv' "$WORK/opt/etc/systemd/system/mcr-backup.service" || fail "mcr-backup.service does not find /opt/mcr/bin/mcrsrv"
if grep -rq /usr/local "$WORK/opt/etc/systemd/system"; then fail "a unit still names /usr/local under --prefix /opt/mcr"; fi
log "--prefix /opt/mcr: programs there, units rewritten to it"

# Bad input is refused with a reason.
if DESTDIR=$WORK/bad "$REPO/deploy/install.sh" --bin-dir "$WORK/nowhere" >"$WORK/bad.log" 2>&1; then
  fail "install.sh accepted a --bin-dir without binaries"
fi
grep -q 'cargo build --release' "$WORK/bad.log" || fail "no hint to build first: $(cat "$WORK/bad.log")"
log "a missing build is refused with the command to run"
log "passed"
