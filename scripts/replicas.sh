#!/usr/bin/env bash
# End-to-end check of MCR beyond one machine: three `mcrsrv server`
# replicas over one PostgreSQL database (scripts/postgres.sh) and one blob
# store, behind nginx round robin on 127.0.0.1, so consecutive requests —
# the chunks of one upload too — land on different replicas.
#
# Checks:
#   1. a token issued by one replica is accepted by every one (the shared
#      signing key file);
#   2. skopeo pushes images through nginx and pulls them back byte-identical
#      (one image, a multi-platform index);
#   3. a chunked upload whose replica is killed (SIGKILL) in the middle of
#      a chunk is finished through the others, from the offset the upload
#      status reports, and the blob reads back byte-identical;
#   4. GC started on one replica again and again (as soon as the last run
#      ended) for as long as skopeo pushes go to the other two, three of
#      the pushed images reusing layers of images deleted before (garbage
#      older than the grace period), loses nothing: every push succeeds,
#      the first run starts while upload sessions are open and at least
#      one more starts during the pushes, the first removes the garbage
#      the pushes did not take back (from the audit log, which also gives
#      the blob uploads that completed during a run), the runs are visible
#      from every replica, and afterwards the blob rows are exactly the blobs of the
#      surviving manifests, reconcile finds no file without a row and no
#      row without a file, the store itself (the bucket listed over S3, or
#      the shared directory) holds exactly those blobs, and every surviving
#      image pulls byte-identical.
#
# Blobs on Garage over S3 (scripts/garage.sh), or with
# MCR_REPLICAS_STORAGE=fs in a directory the replicas share (said so in the
# output). The cluster itself is scripts/cluster.sh's.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[replicas] %s\n' "$*"; }
fail() { printf '[replicas] FAIL: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/need.sh
source "scripts/need.sh"
# shellcheck source=scripts/cluster.sh
source "scripts/cluster.sh"
need skopeo curl jq nginx python3

STORAGE=${MCR_REPLICAS_STORAGE:-s3}
case $STORAGE in
  s3) [ -x scripts/garage.sh ] || fail "blobs on S3 need scripts/garage.sh (MCR_REPLICAS_STORAGE=fs uses a shared directory)" ;;
  fs) log "MCR_REPLICAS_STORAGE=fs: blobs on a shared directory, not on S3" ;;
  *) fail "MCR_REPLICAS_STORAGE must be s3 or fs, not $STORAGE" ;;
esac

# MCRSRV names a binary built already; else a release build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mcr/target}"
if [ -z "${MCRSRV:-}" ]; then
  cargo build --quiet --release -p mcr-cli --bin mcrsrv
  MCRSRV="$CARGO_TARGET_DIR/release/mcrsrv"
fi

WORK=$(mktemp -d)
cleanup() {
  cluster_down
  rm -rf "$WORK"
}
trap cleanup EXIT

GRACE=8
cluster_up "$STORAGE" 3 "$GRACE"
[ "$(sql 'SELECT count(*) FROM schema_migrations')" -ge 1 ] || fail "no migration recorded"

# A replica whose database is unreachable refuses to start, naming it.
BAD_PORT=$(cluster_free_port)
if replica_run 0 "postgres://mcr@127.0.0.1:$BAD_PORT/mcr?connect_timeout=2" >"$WORK/bad.log" 2>&1; then
  fail "a replica started without its database"
fi
grep -q "127.0.0.1:$BAD_PORT" "$WORK/bad.log" || { cat "$WORK/bad.log" >&2; fail "the refusal does not name the database"; }
log "a replica with an unreachable database refuses to start: $(grep -m1 '^Error' "$WORK/bad.log")"

token() {
  curl -sf -u "$CREDS" "http://$LB/v2/token?service=mcr&scope=repository:$1:pull,push,delete" | jq -r .token
}

# --- 1. a token from one replica works on all ---------------------------------
TOKEN=$(curl -sf -u "$CREDS" "http://127.0.0.1:${PORTS[0]}/v2/token?service=mcr&scope=repository:tok/app:pull" | jq -r .token)
{ [ -n "$TOKEN" ] && [ "$TOKEN" != null ]; } || fail "replica 0 issued no token"
for i in 0 1 2; do
  CODE=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:${PORTS[$i]}/v2/")
  [ "$CODE" = 200 ] || fail "replica $i answered $CODE to a token from replica 0"
done
log "a token issued by replica 0 is accepted by replicas 0, 1 and 2"

SK=(skopeo --insecure-policy)
TLS=(--src-tls-verify=false --dest-tls-verify=false)
compare_layouts() {
  local a=$1 b=$2 f
  for f in "$a"/blobs/sha256/*; do
    cmp -s "$f" "$b/blobs/sha256/$(basename "$f")" || fail "blob $(basename "$f") differs or is missing after the round trip"
  done
}
# image NAME LAYERS BYTES: an OCI layout in $WORK/img/NAME tagged "t",
# printing its manifest digest.
image() {
  python3 bench/mklayout.py "$WORK/img/$1" t "$2" "$3" | cut -d' ' -f1
}
# push NAME REGISTRY REPO:TAG
push() {
  "${SK[@]}" copy --quiet --preserve-digests "${TLS[@]}" --dest-creds "$CREDS" "oci:$WORK/img/$1:t" "docker://$2/$3"
}
# pull_and_compare NAME REPO:TAG: pulls through nginx and compares
pull_and_compare() {
  rm -rf "$WORK/pull"
  "${SK[@]}" copy --quiet --preserve-digests "${TLS[@]}" --src-creds "$CREDS" "docker://$LB/$2" "oci:$WORK/pull:t"
  compare_layouts "$WORK/img/$1" "$WORK/pull"
}

# --- 2. skopeo through nginx ---------------------------------------------------
APP=$(image app 4 300000)
push app "$LB" e2e/app:v1
GOT=$("${SK[@]}" inspect --raw --tls-verify=false --creds "$CREDS" "docker://$LB/e2e/app:v1" | sha256sum | cut -d' ' -f1)
[ "sha256:$GOT" = "$APP" ] || fail "inspect through nginx gave sha256:$GOT, pushed $APP"
pull_and_compare app e2e/app:v1
for i in 0 1 2; do
  CODE=$(curl -s -o /dev/null -w '%{http_code}' -u "$CREDS" "http://127.0.0.1:${PORTS[$i]}/v2/e2e/app/manifests/v1")
  [ "$CODE" = 200 ] || fail "replica $i does not see e2e/app:v1 ($CODE)"
done
# Round robin spread the requests (the chunks of each upload included).
for i in 0 1 2; do
  [ "$(served_by "$i")" -gt 0 ] || fail "nginx passed no request to replica $i"
done
log "skopeo pushed e2e/app:v1 through nginx and pulled it back: identical, visible on every replica; requests per replica: $(served_by 0) $(served_by 1) $(served_by 2)"

# --- 3. a chunked upload whose replica dies mid-chunk --------------------------
BLOB="$WORK/blob.bin"
MIB=$((1024 * 1024))
# 20 MiB, the first chunk 9 MiB: on S3 one whole 8 MiB multipart part is
# written before the kill, so the multipart upload itself changes hands.
TOTAL=$((20 * MIB))
FIRST=$((9 * MIB))
head -c "$TOTAL" /dev/urandom >"$BLOB"
BLOB_DIGEST="sha256:$(sha256sum "$BLOB" | cut -d' ' -f1)"
head -c "$FIRST" "$BLOB" >"$WORK/chunk1"
tail -c +$((FIRST + 1)) "$BLOB" >"$WORK/rest"
TOKEN=$(token e2e/chunked)
AUTH=(-H "Authorization: Bearer $TOKEN")
LOC=$(curl -sf -D - -o /dev/null -X POST "${AUTH[@]}" "http://$LB/v2/e2e/chunked/blobs/uploads/" \
  | tr -d '\r' | awk 'tolower($1)=="location:" {print $2}')
[ -n "$LOC" ] || fail "no Location for a new upload"
case $LOC in http*) ;; *) LOC="http://$LB$LOC" ;; esac
UPATH=${LOC#http://"$LB"}
# chunk 1 through nginx
CODE=$(curl -s -o /dev/null -w '%{http_code}' -X PATCH "${AUTH[@]}" -H 'Content-Type: application/octet-stream' \
  -H "Content-Range: 0-$((FIRST - 1))" --data-binary @"$WORK/chunk1" "$LOC")
[ "$CODE" = 202 ] || fail "chunk 1 answered $CODE"
# chunk 2 straight to replica 0, slowly, and replica 0 killed while it streams
curl -s -o /dev/null -X PATCH "${AUTH[@]}" -H 'Content-Type: application/octet-stream' \
  -H "Content-Range: $FIRST-$((TOTAL - 1))" --limit-rate 500k --data-binary @"$WORK/rest" \
  "http://127.0.0.1:${PORTS[0]}$UPATH" &
SLOW=$!
sleep 2
kill -9 "${PIDS[0]}"
wait "${PIDS[0]}" 2>/dev/null || true
wait "$SLOW" 2>/dev/null || true
log "replica 0 killed while it received chunk 2"
# Where the upload stands, asked through nginx (replica 0 is gone)
RANGE=$(curl -sf -D - -o /dev/null "${AUTH[@]}" "$LOC" | tr -d '\r' | awk 'tolower($1)=="range:" {print $2}')
[ -n "$RANGE" ] || fail "no Range in the upload status after the kill"
OFFSET=$(( ${RANGE#0-} + 1 ))
{ [ "$OFFSET" -ge "$FIRST" ] && [ "$OFFSET" -lt "$TOTAL" ]; } || fail "upload status after the kill says $RANGE"
log "upload status through another replica: $OFFSET bytes recorded"
tail -c +$((OFFSET + 1)) "$BLOB" >"$WORK/remaining"
CODE=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "${AUTH[@]}" -H 'Content-Type: application/octet-stream' \
  -H "Content-Range: $OFFSET-$((TOTAL - 1))" --data-binary @"$WORK/remaining" "$LOC$(case $LOC in *\?*) echo '&' ;; *) echo '?' ;; esac)digest=$BLOB_DIGEST")
[ "$CODE" = 201 ] || fail "finishing the upload through another replica answered $CODE"
curl -sf "${AUTH[@]}" -o "$WORK/blob.back" "http://$LB/v2/e2e/chunked/blobs/$BLOB_DIGEST"
cmp -s "$BLOB" "$WORK/blob.back" || fail "the finished blob reads back different"
replica_start 0
replica_wait 0
log "the upload finished through the other replicas; the blob reads back identical; replica 0 restarted"

# --- 4. GC on replica 0, again and again, while pushes go to replicas 1 and 2
# Garbage: images pushed, then deleted, older than the grace period.
declare -A KEEP=( [app]=e2e/app:v1 )
for n in 1 2 3; do
  image "gone$n" 6 50000 >/dev/null
  push "gone$n" "$LB" "gc/gone$n:t"
  D=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$WORK/img/gone$n/index.json")
  T=$(token "gc/gone$n")
  CODE=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "Authorization: Bearer $T" "http://$LB/v2/gc/gone$n/manifests/$D")
  [ "$CODE" = 202 ] || fail "deleting gc/gone$n answered $CODE"
done
# reuse_image NAME FROM K: NAME's layout (one fresh layer, made already)
# with the first K layers of FROM's in front, so a push of NAME uploads K
# blobs that are garbage when it starts.
reuse_image() {
  python3 - "$WORK/img/$1" "$WORK/img/$2" "$3" <<'PY'
import hashlib, json, os, shutil, sys
out, src, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
def blob(d, digest): return os.path.join(d, "blobs", "sha256", digest.split(":")[1])
def load(d, digest):
    with open(blob(d, digest), "rb") as f: return json.load(f)
def put(d, obj):
    data = json.dumps(obj, separators=(",", ":")).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with open(blob(d, digest), "wb") as f: f.write(data)
    return digest, len(data)
def image(d):
    with open(os.path.join(d, "index.json")) as f: index = json.load(f)
    manifest = load(d, index["manifests"][0]["digest"])
    return index, manifest, load(d, manifest["config"]["digest"])
_, src_manifest, src_config = image(src)
index, manifest, config = image(out)
for layer in src_manifest["layers"][:k]:
    shutil.copyfile(blob(src, layer["digest"]), blob(out, layer["digest"]))
manifest["layers"][:0] = src_manifest["layers"][:k]
config["rootfs"]["diff_ids"][:0] = src_config["rootfs"]["diff_ids"][:k]
# The one-layer image's manifest and config are not the new image's.
os.remove(blob(out, manifest["config"]["digest"]))
os.remove(blob(out, index["manifests"][0]["digest"]))
manifest["config"]["digest"], manifest["config"]["size"] = put(out, config)
index["manifests"][0]["digest"], index["manifests"][0]["size"] = put(out, manifest)
with open(os.path.join(out, "index.json"), "w") as f: json.dump(index, f)
PY
}
for n in 1 2 3; do
  image "reuse$n" 1 100000 >/dev/null
  reuse_image "reuse$n" "gone$n" 3
  image "new$n" 3 100000 >/dev/null
done
sleep $((GRACE + 1))
ADMIN=$(curl -sf -u "$CREDS" "http://$LB/v2/token?service=mcr" | jq -r .token)
ADM=(-H "Authorization: Bearer $ADMIN")
PUSHED=(reuse1 reuse2 reuse3 new1 new2 new3)
PUSHERS=()
for n in "${!PUSHED[@]}"; do
  push "${PUSHED[$n]}" "127.0.0.1:${PORTS[$(( 1 + n % 2 ))]}" "gc/${PUSHED[$n]}:t" >"$WORK/push-${PUSHED[$n]}.log" 2>&1 &
  PUSHERS+=($!)
done
pushing() {
  local pid
  for pid in "${PUSHERS[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done
  return 1
}
# GC starts once upload sessions are open, and starts again on replica 0
# as soon as the last run ended, for as long as a push runs.
OPEN=0
for _ in $(seq 1 600); do
  OPEN=$(sql 'SELECT count(*) FROM uploads')
  [ "$OPEN" -gt 0 ] && break
  pushing || break
  sleep 0.05
done
[ "$OPEN" -gt 0 ] || fail "the pushes ended before an upload session was seen: GC could not overlap them"
ACCEPTED=0 BUSY=0
while pushing; do
  CODE=$(curl -s -o "$WORK/gc.json" -w '%{http_code}' -X POST "${ADM[@]}" "http://127.0.0.1:${PORTS[0]}/v1/gc")
  case $CODE in
    202) ACCEPTED=$((ACCEPTED + 1)) ;;
    409) BUSY=$((BUSY + 1)) ;;
    *) fail "GC on replica 0 answered $CODE: $(cat "$WORK/gc.json")" ;;
  esac
  sleep 0.1
done
for n in "${!PUSHERS[@]}"; do
  wait "${PUSHERS[$n]}" || { cat "$WORK/push-${PUSHED[$n]}.log" >&2; fail "push of ${PUSHED[$n]} during GC failed"; }
done
[ "$ACCEPTED" -ge 2 ] || fail "only $ACCEPTED GC runs started while the pushes ran: the pushes were too quick to overlap GC"
# The runs are visible from the other replicas while they last or once done.
for _ in $(seq 1 300); do
  STATUS=$(curl -sf "${ADM[@]}" "http://127.0.0.1:${PORTS[2]}/v1/gc/status")
  [ "$(jq -r .running <<<"$STATUS")" = false ] && [ "$(jq -r '.last_run != null' <<<"$STATUS")" = true ] && break
  sleep 0.1
done
[ "$(jq -r .running <<<"$STATUS")" = false ] || fail "GC still running after 30 s: $STATUS"
# From the audit log: what the first run swept (the garbage the pushes did
# not take back), how long the runs took (gc_started to the gc_completed
# of the same run id, ms), and the blob uploads that completed while a run
# was in progress.
RUNS="SELECT s.time AS started, c.time AS completed FROM audit_log s
  JOIN audit_log c ON c.event_type = 'gc_completed' AND c.details->>'id' = s.details->>'id'
  WHERE s.event_type = 'gc_started'"
SWEPT=$(sql "SELECT details->>'blobs_removed' FROM audit_log WHERE event_type = 'gc_completed' ORDER BY time, id LIMIT 1")
[ "${SWEPT:-0}" -gt 0 ] || fail "the first GC run removed no blob: the garbage was not swept during the pushes"
DURATIONS=$(sql "SELECT string_agg((completed - started)::text, ' ' ORDER BY started) FROM ($RUNS) runs")
OVERLAP=$(sql "SELECT count(*) FROM audit_log u JOIN ($RUNS) runs ON u.time BETWEEN runs.started AND runs.completed
  WHERE u.event_type = 'blob_uploaded'")
log "GC on replica 0 ran $ACCEPTED times during ${#PUSHED[@]} pushes to replicas 1 and 2 ($BUSY starts refused while one ran; runs of $DURATIONS ms), the first with $OPEN upload sessions open; it removed $SWEPT blobs; $OVERLAP blob uploads completed during a run; last run seen from replica 2: $(jq -c .last_run <<<"$STATUS")"
for name in "${PUSHED[@]}"; do KEEP[$name]="gc/$name:t"; done

# Blob rows == blobs of the surviving manifests (the chunked upload's
# blob, in no manifest and older than the grace period, is gone too).
EXPECTED=$(for name in "${!KEEP[@]}"; do
  M=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$WORK/img/$name/index.json")
  jq -r '.config.digest, .layers[].digest' "$WORK/img/$name/blobs/sha256/${M#sha256:}"
done)
EXPECTED=$(sort -u <<<"$EXPECTED")
ROWS=$(sql 'SELECT digest FROM blobs ORDER BY digest' | sort -u)
[ "$ROWS" = "$EXPECTED" ] || { diff <(echo "$EXPECTED") <(echo "$ROWS") >&2 || true; fail "blob rows differ from the blobs of surviving manifests (< expected, > rows)"; }
# The store holds exactly the rows: reconcile removes and misses nothing.
REPORT=$(curl -sf -X POST "${ADM[@]}" "http://$LB/v1/gc/reconcile")
[ "$(jq '(.files_removed | length) + (.missing_files | length)' <<<"$REPORT")" = 0 ] \
  || fail "reconcile after GC found a difference between the store and the rows: $REPORT"
if [ "$STORAGE" = fs ]; then
  FILES=$(find "$WORK/shared/layers" -type f -printf '%f\n' | sed 's/^/sha256:/' | sort -u)
  [ "$FILES" = "$EXPECTED" ] || fail "files on disk differ from the blobs of surviving manifests"
else
  # The bucket itself, listed over S3: exactly the surviving blobs, no
  # upload object or multipart upload left behind, and no replica kept a
  # blob on its local disk.
  OBJECTS=$(bucket_blobs)
  [ "$OBJECTS" = "$EXPECTED" ] || { diff <(echo "$EXPECTED") <(echo "$OBJECTS") >&2 || true; fail "objects in the bucket differ from the blobs of surviving manifests (< expected, > bucket)"; }
  LEFT=$(s3_keys uploads/)
  [ -z "$LEFT" ] || fail "objects of finished uploads are left in the bucket: $LEFT"
  LEFT=$(s3_multipart_uploads)
  [ -z "$LEFT" ] || fail "multipart uploads are left in progress in the bucket: $LEFT"
  LOCAL=$(find "$WORK" -path "$WORK/garage" -prune -o -path "$WORK/img" -prune -o -path "$WORK/pull" -prune -o -type d -name layers -print)
  [ -z "$LOCAL" ] || fail "a replica wrote blobs to its local disk: $LOCAL"
fi
for name in "${!KEEP[@]}"; do pull_and_compare "$name" "${KEEP[$name]}"; done
log "GC during pushes lost nothing: $(wc -l <<<"$EXPECTED") blobs kept, exactly the surviving images', each of ${#KEEP[@]} images pulls identical"

log "4 passed, 0 failed ($STORAGE blobs)"
