#!/usr/bin/env bash
# mcr-backup: a complete backup of an MCR registry, online.
#
#   mcr-backup [--config FILE] [--layers DIR] [--dest DIR] [--keep-days N]
#
# 1. `mcrsrv snapshot --config FILE`: a consistent copy of the database,
#    mcr-YYYYMMDD-HHMMSS.db (UTC), moved into DEST when mcrsrv's own place
#    for it (<database dir>/backups) is not DEST.
# 2. Every blob under --layers not yet in DEST/layers is copied there and
#    its SHA-256 checked against its name (a mismatch is a corrupt blob in
#    the live store: the run fails naming it). The snapshot comes first, so
#    every blob it references is still on disk when the copy runs; blobs
#    are immutable and content-addressed, so an existing copy is complete
#    and is not read again. DEST/layers keeps blobs GC later removed (older
#    snapshots may reference them); see "Backup" in docs/RUNBOOK.md for
#    pruning.
# 3. Snapshots in DEST older than --keep-days are deleted, the newest
#    always kept.
#
# Defaults match deploy/install.sh's layout and mcr-backup.service:
# /srv/mcr/mcr.toml, /srv/mcr/layers, /srv/mcr/backups, 14 days.
# Exit status: 0 when all of it worked, 1 otherwise (with the reason on
# stderr), 2 for a bad command line.
set -euo pipefail

CONFIG=/srv/mcr/mcr.toml
LAYERS=/srv/mcr/layers
DEST=/srv/mcr/backups
KEEP_DAYS=14
MCRSRV=${MCRSRV:-mcrsrv}

usage() { sed -n '3p' "$0" >&2; exit 2; }
fail() { printf 'mcr-backup: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case $1 in
    --config) CONFIG=${2:?}; shift 2 ;;
    --layers) LAYERS=${2:?}; shift 2 ;;
    --dest) DEST=${2:?}; shift 2 ;;
    --keep-days) KEEP_DAYS=${2:?}; shift 2 ;;
    -h|--help) usage ;;
    *) printf 'mcr-backup: unknown argument %s\n' "$1" >&2; usage ;;
  esac
done
case $KEEP_DAYS in ''|*[!0-9]*) fail "--keep-days wants a number of days, not $KEEP_DAYS" ;; esac
[ -d "$LAYERS" ] || fail "no blob directory $LAYERS (--layers)"
mkdir -p "$DEST/layers"

snapshot=$("$MCRSRV" snapshot --config "$CONFIG") || fail "the database snapshot failed (see above)"
# mcrsrv writes beside the database; a DEST elsewhere (another disk) gets it.
if [ "$(realpath "$(dirname "$snapshot")")" != "$(realpath "$DEST")" ]; then
  mv "$snapshot" "$DEST/"
  snapshot=$DEST/$(basename "$snapshot")
fi
printf 'snapshot %s\n' "$snapshot"

copied=0 bytes=0
while IFS= read -r -d '' blob; do
  rel=${blob#"$LAYERS"/}
  target=$DEST/layers/$rel
  [ -e "$target" ] && continue
  mkdir -p "$(dirname "$target")"
  partial=$target.partial
  if ! cp --preserve=timestamps "$blob" "$partial" 2>/dev/null; then
    # GC removed it since `find` listed it: unreferenced, nothing to keep.
    [ -e "$blob" ] || { rm -f "$partial"; continue; }
    fail "cannot copy $blob to $partial"
  fi
  sum=$(sha256sum "$partial" | cut -d' ' -f1)
  if [ "$sum" != "$(basename "$blob")" ]; then
    rm -f "$partial"
    fail "blob $blob has SHA-256 $sum, not its name: the live copy is corrupt (see \"Blob corrupt\" in RUNBOOK.md)"
  fi
  mv "$partial" "$target"
  copied=$((copied + 1))
  bytes=$((bytes + $(stat -c %s "$target")))
done < <(find "$LAYERS" -type f -path '*/sha256/*' ! -name '*.partial' -print0)
# A run killed mid-copy leaves a .partial file; the next run copies again.
find "$DEST/layers" -type f -name '*.partial' -delete
printf 'blobs copied %d (%d bytes) to %s/layers\n' "$copied" "$bytes" "$DEST"

newest=$(basename "$snapshot")
pruned=0
while IFS= read -r -d '' old; do
  [ "$(basename "$old")" = "$newest" ] && continue
  rm -f "$old"
  pruned=$((pruned + 1))
done < <(find "$DEST" -maxdepth 1 -type f -name 'mcr-*.db' -mtime "+$KEEP_DAYS" -print0)
printf 'snapshots older than %d days removed %d\n' "$KEEP_DAYS" "$pruned"
