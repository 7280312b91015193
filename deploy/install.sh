#!/usr/bin/env bash
# Installs MCR on this machine, or into a scratch root with DESTDIR.
#
#   deploy/install.sh [--prefix DIR] [--bin-dir DIR]
#
#   --prefix DIR   programs in DIR/bin, docs and examples in
#                  DIR/share/doc/mcr (default /usr/local)
#   --bin-dir DIR  where the built binaries are (default
#                  ${CARGO_TARGET_DIR:-target}/release); build them first
#                  with `cargo build --release -p mcr-cli` (mcrsrv, mcrctl
#                  and mcr-web)
#   DESTDIR=ROOT   install under ROOT: no user is created, owners are left
#                  alone and systemd is not reloaded
#
# What it does, every time (running it again converges, changing nothing
# that is already right):
#   - the system user and group `mcr` (uid/gid 10001, as in the container
#     image, when free), no login shell, home /srv/mcr
#   - PREFIX/bin: mcrsrv, mcrctl, mcr-web (when built), mcr-backup
#   - PREFIX/share/doc/mcr: RUNBOOK.md, ARCHITECTURE.md, examples/,
#     mcr-alerts.yml (Prometheus alert rules)
#   - /etc/systemd/system: mcr.service, mcr-web.service,
#     mcr-backup.service, mcr-backup.timer (paths rewritten for PREFIX)
#   - /srv/mcr (mcr:mcr 0750) with layers/ (0750), uploads/ and backups/
#     (0700), tls/ (root:mcr 0750: the daemon reads its key, cannot change it)
#   - /srv/mcr/mcr.toml and /srv/mcr/mcr-web.toml (root:mcr 0640) from the
#     examples, only when missing: an existing config is never touched
#   - /srv/mcr/web-session.key (mcr 0600, 64 random bytes), when missing
#   - `systemctl daemon-reload` when systemd runs this machine
# It enables and starts nothing: edit the config first (see the end).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/usr/local
BIN_DIR=${CARGO_TARGET_DIR:-$REPO/target}/release
ROOT=${DESTDIR:-}
ROOT=${ROOT%/}
DATA=/srv/mcr
UNIT_DIR=/etc/systemd/system
ID=10001

say() { printf 'install: %s\n' "$*"; }
fail() { printf 'install: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case $1 in
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
    --bin-dir) BIN_DIR=${2:?--bin-dir needs a directory}; shift 2 ;;
    -h|--help) sed -n '2,/^[^#]/s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) fail "unknown argument $1 (see --help)" ;;
  esac
done
case $PREFIX in /*) ;; *) fail "--prefix must be an absolute path, not $PREFIX" ;; esac
PREFIX=${PREFIX%/}

for bin in mcrsrv mcrctl; do
  [ -x "$BIN_DIR/$bin" ] || fail "no $BIN_DIR/$bin: build it with \`cargo build --release -p mcr-cli\` or name the directory with --bin-dir"
done

if [ -z "$ROOT" ]; then
  [ "$(id -u)" -eq 0 ] || fail "run as root (or set DESTDIR to install into a scratch root)"
  if ! getent group mcr >/dev/null; then
    if getent group "$ID" >/dev/null; then groupadd --system mcr; else groupadd --system --gid "$ID" mcr; fi
    say "created group mcr"
  fi
  if ! getent passwd mcr >/dev/null; then
    uid=(--uid "$ID"); getent passwd "$ID" >/dev/null && uid=()
    useradd --system "${uid[@]}" --gid mcr --home-dir "$DATA" --no-create-home \
      --shell /usr/sbin/nologin --comment "MCR container registry" mcr
    say "created user mcr"
  fi
fi

# own OWNER PATH: chown, except into a scratch root (no such user there).
own() { [ -n "$ROOT" ] || chown "$1" "$2"; }
# dir MODE OWNER PATH
dir() { install -d -m "$1" "$ROOT$3"; own "$2" "$ROOT$3"; }
# file MODE SOURCE DEST
file() { install -D -m "$1" "$2" "$ROOT$3"; }

for bin in mcrsrv mcrctl; do
  file 0755 "$BIN_DIR/$bin" "$PREFIX/bin/$bin"
done
if [ -x "$BIN_DIR/mcr-web" ]; then
  file 0755 "$BIN_DIR/mcr-web" "$PREFIX/bin/mcr-web"
else
  say "no $BIN_DIR/mcr-web: the web UI is not installed (cargo build --release -p mcr-cli --bin mcr-web)"
fi
file 0755 "$REPO/deploy/mcr-backup.sh" "$PREFIX/bin/mcr-backup"
say "programs in $ROOT$PREFIX/bin"

DOC=$PREFIX/share/doc/mcr
file 0644 "$REPO/docs/RUNBOOK.md" "$DOC/RUNBOOK.md"
file 0644 "$REPO/docs/ARCHITECTURE.md" "$DOC/ARCHITECTURE.md"
# Replicas on PostgreSQL and S3, which RUNBOOK.md points to.
for doc in replicas.md postgresql.md s3.md; do
  file 0644 "$REPO/docs/$doc" "$DOC/$doc"
done
for example in mcr.toml mcr-dev.toml mcr-web.toml mcr-replica.toml; do
  file 0644 "$REPO/deploy/examples/$example" "$DOC/examples/$example"
done
file 0644 "$REPO/deploy/prometheus/mcr-alerts.yml" "$DOC/mcr-alerts.yml"
say "documentation in $ROOT$DOC"

install -d -m 0755 "$ROOT$UNIT_DIR"
for unit in mcr.service mcr-web.service mcr-backup.service mcr-backup.timer; do
  # Units name /usr/local; another prefix is written into them.
  tmp=$(mktemp)
  sed "s|/usr/local/|$PREFIX/|g" "$REPO/deploy/systemd/$unit" >"$tmp"
  install -m 0644 "$tmp" "$ROOT$UNIT_DIR/$unit"
  rm -f "$tmp"
done
say "systemd units in $ROOT$UNIT_DIR"

dir 0750 mcr:mcr "$DATA"
dir 0750 mcr:mcr "$DATA/layers"
dir 0700 mcr:mcr "$DATA/uploads"
dir 0700 mcr:mcr "$DATA/backups"
dir 0750 root:mcr "$DATA/tls"
for config in mcr.toml mcr-web.toml; do
  if [ -e "$ROOT$DATA/$config" ]; then
    say "kept the existing $ROOT$DATA/$config"
  else
    install -m 0640 "$REPO/deploy/examples/$config" "$ROOT$DATA/$config"
    own root:mcr "$ROOT$DATA/$config"
    say "wrote $ROOT$DATA/$config from the example: edit it before starting"
  fi
done
# mcr-web signs its cookies with this key and, with /srv/mcr read-only
# under mcr-web.service, cannot create it itself. Kept across reinstalls:
# a new key logs every user out.
KEY=$DATA/web-session.key
if [ ! -e "$ROOT$KEY" ]; then
  (umask 077 && head -c 64 /dev/urandom >"$ROOT$KEY")
  own mcr:mcr "$ROOT$KEY"
  say "made the web UI's session key $ROOT$KEY"
fi
say "data directory $ROOT$DATA"

if [ -n "$ROOT" ]; then
  say "DESTDIR set: no user created, owners and systemd left alone"
elif [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  say "systemd reloaded"
else
  say "systemd does not run this machine: not reloaded"
fi

cat <<NEXT
install: next steps
  1. edit $DATA/mcr.toml (identity, TLS, addresses) and put the certificate in $DATA/tls/
  2. runuser -u mcr -- $PREFIX/bin/mcrsrv init --config $DATA/mcr.toml
  3. systemctl enable --now mcr.service mcr-backup.timer
  4. curl -fsS --cacert $DATA/tls/ca.crt https://localhost:8443/v1/health   (docs/RUNBOOK.md)
NEXT
