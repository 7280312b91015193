#!/usr/bin/env bash
# Backup and restore as docs/RUNBOOK.md describes them ("Backup",
# "Restore"), on real parts: images pushed with skopeo into `mcrsrv
# server`, `mcr-backup` (deploy/mcr-backup.sh) while it serves, one more
# image pushed after the backup, then a FRESH data directory made from the
# snapshot and the blob copy only, served again, and every image pulled
# back and compared byte for byte with what was pushed. The image pushed
# after the backup is gone, and reconcile removes nothing a manifest uses.
set -euo pipefail
TEST=restore
# shellcheck source=deploy/tests/lib.sh
source "$(dirname "$0")/lib.sh"
need skopeo curl jq sqlite3
build_release

WORK=$(mktemp -d)
SERVER_PID=""
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
trap 'stop_server; rm -rf "$WORK"' EXIT

PASSWORD=restore-secret
HASH=$(printf '%s\n' "$PASSWORD" | "$BIN_DIR/mcrsrv" hash-password)
CREDS=ops:$PASSWORD
# config DATA_DIR PORT: a server config with everything under DATA_DIR.
config() {
  cat >"$1.toml" <<TOML
[server]
listen_addr = "127.0.0.1:$2"
[database]
path = "$1/mcr.db"
[storage]
layers_path = "$1/layers"
uploads_path = "$1/uploads"
[[local.users]]
username = "ops"
password_hash = "$HASH"
account_type = "human"
roles = ["admin"]
TOML
}
# serve DATA_DIR: mcrsrv server on a free port; sets REG.
serve() {
  local port; port=$(free_port)
  config "$1" "$port"
  "$BIN_DIR/mcrsrv" server --config "$1.toml" >"$1.log" 2>&1 &
  SERVER_PID=$!
  REG=127.0.0.1:$port
  wait_http "http://$REG/v2/" "$SERVER_PID" "$1.log"
}

# make_layout DIR: an OCI layout with one image of two random layers.
make_layout() {
  local dir=$1 layers="" diffs="" i
  mkdir -p "$dir/blobs/sha256"
  for i in 1 2; do
    head -c $(( (RANDOM % 256 + 16) * 1024 )) /dev/urandom >"$WORK/raw"
    tar -C "$WORK" -cf "$WORK/layer.tar" raw
    diffs+="${diffs:+,}\"sha256:$(sha256sum <"$WORK/layer.tar" | cut -d' ' -f1)\""
    gzip -n <"$WORK/layer.tar" >"$WORK/layer.tgz"
    local h; h=$(sha256sum <"$WORK/layer.tgz" | cut -d' ' -f1)
    layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$h\",\"size\":$(stat -c %s "$WORK/layer.tgz")}"
    mv "$WORK/layer.tgz" "$dir/blobs/sha256/$h"
  done
  printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[%s]}}' "$diffs" >"$WORK/config.json"
  local c; c=$(sha256sum <"$WORK/config.json" | cut -d' ' -f1)
  local csize; csize=$(stat -c %s "$WORK/config.json")
  mv "$WORK/config.json" "$dir/blobs/sha256/$c"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
    "$c" "$csize" "$layers" >"$WORK/manifest.json"
  local m; m=$(sha256sum <"$WORK/manifest.json" | cut -d' ' -f1)
  local msize; msize=$(stat -c %s "$WORK/manifest.json")
  mv "$WORK/manifest.json" "$dir/blobs/sha256/$m"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"t"}}]}' \
    "$m" "$msize" >"$dir/index.json"
}
SK=(skopeo --insecure-policy)
push() { "${SK[@]}" copy --quiet --preserve-digests --dest-tls-verify=false --dest-creds "$CREDS" "oci:$1:t" "docker://$REG/$2"; }
pull() { "${SK[@]}" copy --quiet --preserve-digests --src-tls-verify=false --src-creds "$CREDS" "docker://$REG/$1" "oci:$2:t"; }
same_layout() {
  local f
  for f in "$1"/blobs/sha256/*; do
    cmp -s "$f" "$2/blobs/sha256/$(basename "$f")" || return 1
  done
}

# --- the registry before the disaster ---------------------------------------
OLD=$WORK/old
serve "$OLD"
IMAGES=(library/app:1.0 library/app:1.1 team/tool:latest deep/name/space/x:v2)
for i in "${!IMAGES[@]}"; do
  make_layout "$WORK/src$i"
  push "$WORK/src$i" "${IMAGES[$i]}"
done
# One image shares its layers with another repository (a mount, one file).
"${SK[@]}" copy --quiet --preserve-digests --src-tls-verify=false --dest-tls-verify=false \
  --src-creds "$CREDS" --dest-creds "$CREDS" "docker://$REG/library/app:1.0" "docker://$REG/mirror/app:1.0"
log "pushed ${#IMAGES[@]} images and a copy into mcrsrv at $REG"

# --- the backup, online ------------------------------------------------------
BACKUPS=$WORK/backups
MCRSRV=$BIN_DIR/mcrsrv "$REPO/deploy/mcr-backup.sh" --config "$OLD.toml" --layers "$OLD/layers" --dest "$BACKUPS" >"$WORK/backup.log"
while read -r line; do log "mcr-backup: $line"; done <"$WORK/backup.log"
SNAPSHOT=$(ls -1 "$BACKUPS"/mcr-*.db | tail -n 1)
[ -f "$SNAPSHOT" ] || fail "no snapshot in $BACKUPS"
[ "$(sqlite3 -readonly "$SNAPSHOT" 'PRAGMA integrity_check;')" = ok ] || fail "the snapshot fails its integrity check"
BLOBS=$(find "$OLD/layers" -type f | wc -l)
COPIED=$(find "$BACKUPS/layers" -type f | wc -l)
[ "$COPIED" -eq "$BLOBS" ] || fail "the backup has $COPIED blobs, the registry $BLOBS"
# A second run copies nothing new and keeps both snapshots (within 14 days).
sleep 1
MCRSRV=$BIN_DIR/mcrsrv "$REPO/deploy/mcr-backup.sh" --config "$OLD.toml" --layers "$OLD/layers" --dest "$BACKUPS" >"$WORK/backup2.log"
grep -q '^blobs copied 0 ' "$WORK/backup2.log" || fail "a second backup copied again: $(cat "$WORK/backup2.log")"
[ "$(ls -1 "$BACKUPS"/mcr-*.db | wc -l)" -eq 2 ] || fail "expected two snapshots after two runs"
touch -d '20 days ago' "$SNAPSHOT"
MCRSRV=$BIN_DIR/mcrsrv "$REPO/deploy/mcr-backup.sh" --config "$OLD.toml" --layers "$OLD/layers" --dest "$BACKUPS" --keep-days 14 >"$WORK/backup3.log"
[ ! -e "$SNAPSHOT" ] || fail "a 20-day-old snapshot was kept with --keep-days 14"
grep -q 'removed 1$' "$WORK/backup3.log" || fail "the pruning was not reported: $(cat "$WORK/backup3.log")"
log "backup: snapshot passes integrity_check, $COPIED blobs copied and verified, a rerun copies none, old snapshots pruned"

# A corrupt blob in the live store fails the backup, naming it.
VICTIM=$(find "$OLD/layers" -type f | head -n 1)
cp "$VICTIM" "$WORK/victim.good"
rm -rf "$WORK/backups-corrupt"
printf 'x' >>"$VICTIM"
if MCRSRV=$BIN_DIR/mcrsrv "$REPO/deploy/mcr-backup.sh" --config "$OLD.toml" --layers "$OLD/layers" --dest "$WORK/backups-corrupt" >/dev/null 2>"$WORK/corrupt.err"; then
  fail "mcr-backup copied a corrupt blob without failing"
fi
grep -q "$(basename "$VICTIM")" "$WORK/corrupt.err" || fail "the failure does not name the blob: $(cat "$WORK/corrupt.err")"
cp "$WORK/victim.good" "$VICTIM"
log "a blob that no longer matches its digest fails the backup, named"

# Pushed after the backup: must not come back.
make_layout "$WORK/late"
push "$WORK/late" library/late:1
stop_server

# --- restore into a fresh data directory ------------------------------------
NEW=$WORK/new
mkdir -p "$NEW/layers"
SNAPSHOT=$(ls -1 "$BACKUPS"/mcr-*.db | tail -n 1)
install -m 0600 "$SNAPSHOT" "$NEW/mcr.db"
cp -a "$BACKUPS/layers/." "$NEW/layers/"
serve "$NEW"
[ "$(curl -s -o /dev/null -w '%{http_code}' -u "$CREDS" "http://$REG/v1/health")" = 200 ] || fail "the restored server is not healthy"
for i in "${!IMAGES[@]}"; do
  rm -rf "$WORK/back$i"
  pull "${IMAGES[$i]}" "$WORK/back$i"
  same_layout "$WORK/src$i" "$WORK/back$i" || fail "${IMAGES[$i]} came back different"
done
rm -rf "$WORK/backm"
pull mirror/app:1.0 "$WORK/backm"
same_layout "$WORK/src0" "$WORK/backm" || fail "mirror/app:1.0 came back different"
log "restored from $(basename "$SNAPSHOT") and the blob copy: all $(( ${#IMAGES[@]} + 1 )) images pulled back byte-identical"
if "${SK[@]}" inspect --tls-verify=false --creds "$CREDS" "docker://$REG/library/late:1" >/dev/null 2>&1; then
  fail "an image pushed after the backup is in the restored registry"
fi
log "the image pushed after the backup is not there (as the runbook warns)"

# Reconcile on the restored registry: the late image's blobs (on disk
# when restoring on the same machine, unknown to the snapshot) go, no row
# lacks its file, and every image still pulls.
cp -a "$OLD/layers/." "$NEW/layers/"
LATE_BLOBS=$(( $(find "$NEW/layers" -type f | wc -l) - COPIED ))
[ "$LATE_BLOBS" -gt 0 ] || fail "the late image left no blob files to reconcile"
TOKEN=$(printf '%s\n' "$PASSWORD" | "$BIN_DIR/mcrctl" --server "http://$REG" login --username ops --password-stdin 2>/dev/null)
[ -n "$TOKEN" ] || fail "no admin token from mcrctl login"
"$BIN_DIR/mcrctl" --server "http://$REG" --token "$TOKEN" --json gc --reconcile >"$WORK/reconcile.json" 2>"$WORK/reconcile.err" \
  || { cat "$WORK/reconcile.err" >&2; fail "mcrctl gc --reconcile failed"; }
jq -e ".files_removed | length == $LATE_BLOBS" "$WORK/reconcile.json" >/dev/null \
  || fail "reconcile removed $(jq -c .files_removed "$WORK/reconcile.json"), expected the $LATE_BLOBS late blobs"
jq -e '.missing_files == []' "$WORK/reconcile.json" >/dev/null || fail "rows without files after the restore: $(cat "$WORK/reconcile.json")"
for i in "${!IMAGES[@]}"; do
  rm -rf "$WORK/again$i"
  pull "${IMAGES[$i]}" "$WORK/again$i"
  same_layout "$WORK/src$i" "$WORK/again$i" || fail "${IMAGES[$i]} differs after the reconcile"
done
log "reconcile after the restore: removed the $LATE_BLOBS blobs of the late image, no row without its file, every image still pulls byte-identical"
log "passed"
