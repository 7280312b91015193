#!/usr/bin/env bash
# Real storage faults against a running `mcrsrv server` (issue 16): the blob
# directory and the database directory are small tmpfs mounts, and while
# clients push, each is filled to the last byte, remounted read-only, or
# (the database's) moved away. Every refused request must answer with an
# error naming the cause, nothing acknowledged may be lost, no half-written
# blob may be served, and once the fault clears the same running registry
# takes the push again and reconcile finds nothing inconsistent.
# (The database's filesystem cannot be remounted read-only under a live
# SQLite: the kernel refuses while files are open for writing, so that
# fault is the directory moved away instead.)
#
# Needs root (mount); without it, or where mounting a tmpfs is refused (an
# unprivileged container), it says why and skips. CI runs it as root.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[faults] %s\n' "$*"; }
fail() {
  printf '[faults] FAIL: %s\n' "$*" >&2
  [ -f "${WORK:-}/server.log" ] && tail -n 20 "$WORK/server.log" >&2
  exit 1
}

if [ "$(id -u)" -ne 0 ]; then
  log "SKIP: not root; mounting the tmpfs these faults need requires root (CI runs as root)"
  exit 0
fi

# shellcheck source=scripts/need.sh
source "scripts/need.sh"
need curl jq python3 mountpoint:util-linux

WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null; fi
  for m in "$WORK/blobs" "$WORK/db"; do
    mountpoint -q "$m" 2>/dev/null && umount -l "$m"
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 1" INT TERM

BLOBS="$WORK/blobs"
DBFS="$WORK/db"
mkdir -p "$BLOBS" "$DBFS"
if ! mount -t tmpfs -o size=8m mcr-faults-blobs "$BLOBS" 2>"$WORK/mount.err"; then
  log "SKIP: mounting a tmpfs was refused ($(cat "$WORK/mount.err")); no real faults can be made here"
  exit 0
fi
mount -t tmpfs -o size=2m mcr-faults-db "$DBFS"
# The database lives one directory down, so that directory can disappear.
DBDIR="$DBFS/mcr"
mkdir -p "$DBDIR"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mcr/target}"
cargo build --quiet --release -p mcr-cli --bin mcrsrv
MCRSRV="$CARGO_TARGET_DIR/release/mcrsrv"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG="http://127.0.0.1:$PORT"
PASSWORD=faults-pw
HASH=$(printf '%s\n' "$PASSWORD" | "$MCRSRV" hash-password)
cat >"$WORK/mcr.toml" <<TOML
[server]
listen_addr = "127.0.0.1:$PORT"
[database]
path = "$DBDIR/mcr.db"
[storage]
layers_path = "$BLOBS/layers"
uploads_path = "$BLOBS/uploads"
[local]
key_path = "$WORK/token.key"
[[local.users]]
username = "admin"
password_hash = "$HASH"
account_type = "human"
roles = ["admin"]
TOML
MCR_LOG_LEVEL=warn "$MCRSRV" server --config "$WORK/mcr.toml" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  curl -s -o /dev/null "$REG/v2/" && break
  kill -0 "$SERVER_PID" 2>/dev/null || fail "mcrsrv exited"
  sleep 0.1
done
TOKEN=$(curl -sf -X POST -H 'Content-Type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$PASSWORD\"}" "$REG/v1/auth/login" | jq -r .token)
[ -n "$TOKEN" ] && [ "$TOKEN" != null ] || fail "no token from /v1/auth/login"
AUTH="Authorization: Bearer $TOKEN"
log "mcrsrv server on $REG; blobs on an 8 MiB tmpfs, the database on a 2 MiB tmpfs"

BODY="$WORK/body"
HEADERS="$WORK/headers"
# req ARGS... -> prints the status; the body is in $BODY, the headers in $HEADERS.
req() { curl -s --max-time 30 -o "$BODY" -D "$HEADERS" -w '%{http_code}' -H "$AUTH" "$@"; }
header() { grep -i "^$1:" "$HEADERS" | head -n1 | cut -d' ' -f2- | tr -d '\r'; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
random_file() { head -c "$2" /dev/urandom >"$1"; }

# expect_refusal WHAT STATUS WORDS: the request failed with STATUS and an
# OCI error whose message names the cause (WORDS, a grep -E pattern).
expect_refusal() {
  local what=$1 got=$2 words=$3 msg
  msg=$(jq -r '.errors[0].message // empty' "$BODY" 2>/dev/null || true)
  case "$got" in 4??|5??) ;; *) fail "$what answered $got while the fault held, want a refusal" ;; esac
  echo "$msg" | grep -qiE "$words" || fail "$what answered $got with '$msg', which does not name the cause ($words)"
  log "  $what: $got \"$msg\""
}

# start_upload REPO -> prints the session's Location
start_upload() {
  local code
  code=$(req -X POST "$REG/v2/$1/blobs/uploads/")
  [ "$code" = 202 ] || fail "POST upload to $1 answered $code: $(cat "$BODY")"
  header Location
}
abs() { case "$1" in http*) echo "$1" ;; *) echo "$REG$1" ;; esac; }
with_query() { case "$1" in *\?*) echo "$1&$2" ;; *) echo "$1?$2" ;; esac; }

# patch LOCATION FILE START -> status
patch() {
  local size end
  size=$(stat -c %s "$2"); end=$(($3 + size - 1))
  req -X PATCH -H 'Content-Type: application/octet-stream' -H "Content-Range: $3-$end" \
    --data-binary "@$2" "$(abs "$1")"
}
# put_blob REPO FILE -> status of a whole-blob push in one request (POST ?digest=)
put_blob() {
  req -X POST -H 'Content-Type: application/octet-stream' --data-binary "@$2" \
    "$REG/v2/$1/blobs/uploads/?digest=sha256:$(sha "$2")"
}
# put_manifest REPO TAG CONFIG LAYER... -> status; the manifest is in $WORK/manifest.json
put_manifest() {
  local repo=$1 tag=$2 cfg=$3 layers="" f
  shift 3
  for f in "$@"; do
    layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:$(sha "$f")\",\"size\":$(stat -c %s "$f")}"
  done
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
    "$(sha "$cfg")" "$(stat -c %s "$cfg")" "$layers" >"$WORK/manifest.json"
  req -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary "@$WORK/manifest.json" "$REG/v2/$repo/manifests/$tag"
}
# pull_same REPO FILE...: every file is served from REPO byte for byte.
pull_same() {
  local repo=$1 f code
  shift
  for f in "$@"; do
    code=$(req "$REG/v2/$repo/blobs/sha256:$(sha "$f")")
    [ "$code" = 200 ] || fail "acknowledged blob $(basename "$f") of $repo answers $code"
    cmp -s "$BODY" "$f" || fail "acknowledged blob $(basename "$f") of $repo came back different"
  done
}
# not_served REPO FILE: a blob whose push failed is not served.
not_served() {
  local code
  code=$(req "$REG/v2/$1/blobs/sha256:$(sha "$2")")
  [ "$code" = 404 ] || fail "blob $(basename "$2") whose push failed answers $code in $1"
}
# fill DIR: writes a filler file until the filesystem under DIR is full.
fill() {
  dd if=/dev/zero of="$1/filler" bs=16k status=none 2>/dev/null || true
  local avail; avail=$(df --output=avail -B1 "$1" | tail -n1 | tr -d ' ')
  [ "$avail" -lt 16384 ] || fail "could not fill $1 ($avail bytes still free)"
}
# consistent: reconcile finds no file without a row and no row without a file.
consistent() {
  local code
  code=$(req -X POST "$REG/v1/gc/reconcile")
  [ "$code" = 200 ] || fail "reconcile answered $code: $(cat "$BODY")"
  jq -e '(.files_removed | length) == 0 and (.missing_files | length) == 0' "$BODY" >/dev/null \
    || fail "reconcile found inconsistencies after $1: $(cat "$BODY")"
  log "  reconcile after $1: nothing inconsistent"
}

mkdir -p "$WORK/f"
# --- an image acknowledged before any fault ----------------------------------
random_file "$WORK/f/base1" 524288
random_file "$WORK/f/base2" 262144
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$WORK/f/basecfg"
for f in base1 base2 basecfg; do
  [ "$(put_blob faults/base "$WORK/f/$f")" = 201 ] || fail "pushing $f answered $(cat "$BODY")"
done
[ "$(put_manifest faults/base v1 "$WORK/f/basecfg" "$WORK/f/base1" "$WORK/f/base2")" = 201 ] \
  || fail "pushing the base manifest: $(cat "$BODY")"
cp "$WORK/manifest.json" "$WORK/f/basemanifest"
BASE=("$WORK/f/base1" "$WORK/f/base2" "$WORK/f/basecfg")
base_intact() {
  pull_same faults/base "${BASE[@]}"
  local code; code=$(req "$REG/v2/faults/base/manifests/v1")
  [ "$code" = 200 ] && cmp -s "$BODY" "$WORK/f/basemanifest" || fail "the acknowledged manifest faults/base:v1 answers $code or differs"
}
log "pushed faults/base:v1 (3 blobs and a manifest) before any fault"

# --- 1. the blob directory fills up mid-push ---------------------------------
log "1. blob storage full"
random_file "$WORK/f/full1" 1048576
random_file "$WORK/f/full2" 1048576
LOC=$(start_upload faults/full)
fill "$BLOBS"
expect_refusal "PATCH of 1 MiB into a full blob store" "$(patch "$LOC" "$WORK/f/full1" 0)" "storage is full"
expect_refusal "whole-blob push into a full blob store" "$(put_blob faults/full "$WORK/f/full2")" "storage is full"
not_served faults/full "$WORK/f/full1"
not_served faults/full "$WORK/f/full2"
base_intact
rm -f "$BLOBS/filler"
# The same session takes the chunk again from byte 0: the half-written one was discarded.
code=$(patch "$LOC" "$WORK/f/full1" 0)
[ "$code" = 202 ] || fail "after freeing space, the interrupted upload's chunk answered $code: $(cat "$BODY")"
code=$(req -X PUT "$(with_query "$(abs "$(header Location)")" "digest=sha256:$(sha "$WORK/f/full1")")")
[ "$code" = 201 ] || fail "finishing the interrupted upload answered $code: $(cat "$BODY")"
[ "$(put_blob faults/full "$WORK/f/full2")" = 201 ] || fail "pushing after freeing space: $(cat "$BODY")"
[ "$(put_blob faults/full "$WORK/f/basecfg")" = 201 ] || fail "pushing the config: $(cat "$BODY")"
[ "$(put_manifest faults/full v1 "$WORK/f/basecfg" "$WORK/f/full1" "$WORK/f/full2")" = 201 ] \
  || fail "manifest after freeing space: $(cat "$BODY")"
pull_same faults/full "$WORK/f/full1" "$WORK/f/full2"
base_intact
consistent "a full blob store"
[ -z "$(find "$BLOBS/uploads" -type f)" ] || fail "upload files left behind: $(find "$BLOBS/uploads" -type f)"

# --- 2. the database directory fills up --------------------------------------
log "2. database storage full"
fill "$DBFS"
# SQLite reuses space its write-ahead log already holds, so the refusal
# comes after some pushes; each acknowledged one must stay.
ACKED=()
REFUSED=""
for i in $(seq 1 400); do
  random_file "$WORK/f/db$i" 1024
  code=$(put_blob faults/dbfull "$WORK/f/db$i")
  if [ "$code" = 201 ]; then ACKED+=("$WORK/f/db$i"); continue; fi
  expect_refusal "whole-blob push $i into a full database" "$code" "storage is full"
  REFUSED="$WORK/f/db$i"
  break
done
[ -n "$REFUSED" ] || fail "400 pushes into a full database were all acknowledged"
log "  ${#ACKED[@]} pushes acknowledged before the database was full"
# A refused push gives its transaction's pages back, so a few small writes
# (an upload session and its event) may still fit: each acknowledged
# session must stay usable, and the refusal must come.
STARTED=()
for i in $(seq 1 50); do
  code=$(req -X POST "$REG/v2/faults/dbfull/blobs/uploads/")
  if [ "$code" = 202 ]; then STARTED+=("$(header Location)"); continue; fi
  expect_refusal "upload start $i into a full database" "$code" "storage is full"
  break
done
[ "$code" != 202 ] || fail "50 upload starts into a full database were all acknowledged"
# Every pull is audited, and the audit log is in the full database: a pull
# is served whole or refused as full, never anything else.
code=$(req "$REG/v2/faults/base/blobs/sha256:$(sha "$WORK/f/base1")")
if [ "$code" = 200 ]; then
  cmp -s "$BODY" "$WORK/f/base1" || fail "a blob pulled from a registry with a full database came back different"
else
  expect_refusal "pull with a full database" "$code" "storage is full"
fi
rm -f "$DBFS/filler"
not_served faults/dbfull "$REFUSED"
[ ${#ACKED[@]} -eq 0 ] || pull_same faults/dbfull "${ACKED[@]}"
base_intact
[ "$(put_blob faults/dbfull "$REFUSED")" = 201 ] || fail "pushing after freeing database space: $(cat "$BODY")"
pull_same faults/dbfull "$REFUSED" "${ACKED[@]}"
for loc in "${STARTED[@]}"; do
  code=$(req "$(abs "$loc")")
  [ "$code" = 204 ] || fail "an upload session acknowledged while the database was full answered $code: $(cat "$BODY")"
  code=$(req -X DELETE "$(abs "$loc")")
  [ "$code" = 204 ] || fail "cancelling an upload session acknowledged while the database was full answered $code"
done
consistent "a full database"

# --- 3. the blob directory turns read-only mid-push --------------------------
log "3. blob storage remounted read-only mid-push"
random_file "$WORK/f/ro1" 65536
random_file "$WORK/f/ro2" 65536
random_file "$WORK/f/ro3" 4096
cat "$WORK/f/ro1" "$WORK/f/ro2" >"$WORK/f/ro12"
LOC=$(start_upload faults/ro)
[ "$(patch "$LOC" "$WORK/f/ro1" 0)" = 202 ] || fail "first chunk answered $(cat "$BODY")"
LOC=$(header Location)
mount -o remount,ro "$BLOBS"
expect_refusal "second chunk to a read-only blob store" "$(patch "$LOC" "$WORK/f/ro2" 65536)" "read-only"
expect_refusal "whole-blob push to a read-only blob store" "$(put_blob faults/ro "$WORK/f/ro3")" "read-only"
not_served faults/ro "$WORK/f/ro3"
base_intact
mount -o remount,rw "$BLOBS"
code=$(patch "$LOC" "$WORK/f/ro2" 65536)
[ "$code" = 202 ] || fail "after remounting read-write, the second chunk answered $code: $(cat "$BODY")"
code=$(req -X PUT "$(with_query "$(abs "$(header Location)")" "digest=sha256:$(sha "$WORK/f/ro12")")")
[ "$code" = 201 ] || fail "finishing the interrupted upload answered $code: $(cat "$BODY")"
[ "$(put_blob faults/ro "$WORK/f/ro3")" = 201 ] || fail "pushing after remounting read-write: $(cat "$BODY")"
pull_same faults/ro "$WORK/f/ro12" "$WORK/f/ro3"
consistent "a read-only blob store"

# --- 4. the database's directory disappears ----------------------------------
log "4. the database's directory disappears"
random_file "$WORK/f/gone" 4096
mv "$DBDIR" "$DBFS/moved-away"
expect_refusal "whole-blob push while the database's directory is gone" \
  "$(put_blob faults/gone "$WORK/f/gone")" "read-only|unavailable|storage"
not_served faults/gone "$WORK/f/gone"
mv "$DBFS/moved-away" "$DBDIR"
[ "$(put_blob faults/gone "$WORK/f/gone")" = 201 ] || fail "pushing after the directory came back: $(cat "$BODY")"
pull_same faults/gone "$WORK/f/gone"
base_intact
consistent "the database's directory coming back"

# Everything acknowledged is still there after a restart, read from disk.
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
MCR_LOG_LEVEL=warn "$MCRSRV" server --config "$WORK/mcr.toml" >>"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  curl -s -o /dev/null "$REG/v2/" && break
  kill -0 "$SERVER_PID" 2>/dev/null || fail "mcrsrv did not restart"
  sleep 0.1
done
base_intact
pull_same faults/full "$WORK/f/full1" "$WORK/f/full2"
pull_same faults/dbfull "$REFUSED" "${ACKED[@]}"
pull_same faults/ro "$WORK/f/ro12" "$WORK/f/ro3"
pull_same faults/gone "$WORK/f/gone"
consistent "a restart"
log "4 faults passed, 0 failed"
