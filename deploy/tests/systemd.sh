#!/usr/bin/env bash
# The systemd units as deploy/install.sh installs them: `systemd-analyze
# verify` on each inside the installed tree (so every ExecStart names a
# program that is there), `systemd-analyze security` on the services with
# the figures printed, mcr.service at 2.0 or better (lower), and the
# timer's schedule (daily 02:00 UTC, up to 5 minutes late, caught up
# after downtime).
set -euo pipefail
TEST=systemd
# shellcheck source=deploy/tests/lib.sh
source "$(dirname "$0")/lib.sh"
need systemd-analyze:systemd jq
build_release

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/root
DESTDIR=$ROOT "$REPO/deploy/install.sh" --bin-dir "$BIN_DIR" >"$WORK/install.log" 2>&1 \
  || { cat "$WORK/install.log" >&2; fail "install.sh failed"; }
# The units depend on the standard targets (multi-user, network-online,
# timers): give the scratch root the system's own.
mkdir -p "$ROOT/usr/lib/systemd"
cp -r /usr/lib/systemd/system "$ROOT/usr/lib/systemd/"
if [ ! -x "$ROOT/usr/local/bin/mcr-web" ]; then
  # Not built yet (see install.sh's log): verify the unit against a
  # stand-in so the rest of it is still checked.
  log "mcr-web is not built: mcr-web.service verified against a stand-in binary"
  install -m 0755 /bin/true "$ROOT/usr/local/bin/mcr-web"
fi

units=(mcr.service mcr-web.service mcr-backup.service mcr-backup.timer)
for unit in "${units[@]}"; do
  systemd-analyze verify --root="$ROOT" "$unit" >"$WORK/verify.log" 2>&1 || true
  # verify exits 0 on some findings; any output at all is a finding.
  if [ -s "$WORK/verify.log" ]; then cat "$WORK/verify.log" >&2; fail "systemd-analyze verify $unit (above)"; fi
  log "systemd-analyze verify $unit: clean"
done

for unit in mcr.service mcr-web.service mcr-backup.service; do
  out=$(systemd-analyze security --offline=true --root="$ROOT" "$unit")
  figure=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")
  [ -n "$figure" ] || { echo "$out" >&2; fail "no exposure figure for $unit"; }
  log "systemd-analyze security $unit: exposure $figure"
  if [ "$unit" = mcr.service ] && awk "BEGIN { exit !($figure > 2.0) }"; then
    echo "$out" >&2; fail "mcr.service exposure $figure is above 2.0"
  fi
done

timer=$ROOT/etc/systemd/system/mcr-backup.timer
grep -qx 'OnCalendar=\*-\*-\* 02:00:00 UTC' "$timer" || fail "mcr-backup.timer is not daily at 02:00 UTC"
grep -qx 'RandomizedDelaySec=5min' "$timer" || fail "mcr-backup.timer has no 5 min jitter"
grep -qx 'Persistent=true' "$timer" || fail "mcr-backup.timer does not catch up missed runs"
next=$(TZ=UTC systemd-analyze calendar --iterations=2 '*-*-* 02:00:00 UTC' | sed -n 's/^ *\(Next elapse\|Iter. #2\): //p' | tr '\n' ' ')
[ "$(grep -o ' 02:00:00 UTC' <<<"$next" | wc -l)" -eq 2 ] || fail "the calendar spec does not elapse daily at 02:00 UTC: $next"
log "mcr-backup.timer: daily 02:00 UTC (next: $next), 5 min jitter, persistent"

grep -qx 'ReadWritePaths=/srv/mcr' "$ROOT/etc/systemd/system/mcr.service" || fail "mcr.service may not write /srv/mcr"
grep -qx 'ReadOnlyPaths=/srv/mcr' "$ROOT/etc/systemd/system/mcr-web.service" || fail "mcr-web.service does not mount /srv/mcr read-only"
if grep -q '^ReadWritePaths' "$ROOT/etc/systemd/system/mcr-web.service"; then fail "mcr-web.service can write somewhere"; fi
log "mcr.service writes only /srv/mcr; mcr-web.service writes nothing"
log "passed"
