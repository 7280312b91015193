#!/usr/bin/env bash
# The pull-through cache end to end, with real registries on loopback:
# CNCF Distribution (Debian's docker-registry) with htpasswd auth, and a
# second `mcrsrv dev` (bearer-token auth), mirrored by the `mcrsrv dev`
# under test. skopeo and podman pull through it byte-identical; the
# upstream's access log counts what reached it: a multi-platform index
# pulled for one platform fetches only that platform, a cached tag within
# tag_ttl costs no request and after it one HEAD, a moved tag is followed,
# ten concurrent pulls of one uncached 64 MiB layer make one upstream GET;
# a registry that truncates or corrupts blobs (scripts/corrupt_proxy.py)
# fails the pull and gets nothing stored; with the upstream stopped, cached
# images still pull and an uncached one fails naming the upstream.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[proxy-e2e] %s\n' "$*"; }
fail() { printf '[proxy-e2e] FAIL: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/need.sh
source "scripts/need.sh"
need skopeo podman curl jq python3 docker-registry htpasswd:apache2-utils

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mcr/target}"
cargo build --quiet --release -p mcr-cli --bin mcrsrv --bin mcrctl
MCRSRV="$CARGO_TARGET_DIR/release/mcrsrv"
MCRCTL="$CARGO_TARGET_DIR/release/mcrctl"

WORK=$(mktemp -d)
# shellcheck source=scripts/servers.sh
source "scripts/servers.sh"
trap cleanup EXIT
# shellcheck source=scripts/oci_layout.sh
source "scripts/oci_layout.sh"

SK=(skopeo --insecure-policy)

# --- upstream 1: CNCF Distribution with htpasswd ---------------------------
UP_PORT=$(free_port)
UP="127.0.0.1:$UP_PORT"
UP_PASS=$(openssl rand -hex 12)
htpasswd -Bbn mirror "$UP_PASS" >"$WORK/htpasswd"
cat >"$WORK/upstream.yml" <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $WORK/upstream
http:
  addr: $UP
auth:
  htpasswd:
    realm: upstream
    path: $WORK/htpasswd
YAML
start_upstream() {
  docker-registry serve "$WORK/upstream.yml" >>"$WORK/upstream.log" 2>&1 &
  UP_PID=$!
  PIDS+=("$UP_PID")
  wait_for "http://$UP/v2/" "$UP_PID" "$WORK/upstream.log"
}
start_upstream
UPCREDS="mirror:$UP_PASS"
push_up() { "${SK[@]}" copy --quiet --all --preserve-digests --dest-tls-verify=false --dest-creds "$UPCREDS" "oci:$1" "docker://$UP/$2"; }
# count_up PATTERN: access-log lines of requests from MCR matching PATTERN
count_up() { grep "\"mcr/" "$WORK/upstream.log" | grep -c -- "$1" || true; }

APP="$WORK/app"
read -r AHEX ASIZE < <(make_image "$APP" amd64 3)
write_index "$APP" v1 application/vnd.oci.image.manifest.v1+json "$AHEX" "$ASIZE"
push_up "$APP:v1" app:v1
NEVER="$WORK/never"
read -r NHEX NSIZE < <(make_image "$NEVER" amd64 1)
write_index "$NEVER" v1 application/vnd.oci.image.manifest.v1+json "$NHEX" "$NSIZE"
push_up "$NEVER:v1" never:v1
MULTI="$WORK/multi"
read -r MAHEX MASIZE < <(make_image "$MULTI" amd64 2)
read -r MRHEX MRSIZE < <(make_image "$MULTI" arm64 2)
IDX="$WORK/index.json.tmp"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"arm64","os":"linux"}}]}' \
  "$MAHEX" "$MASIZE" "$MRHEX" "$MRSIZE" >"$IDX"
ISIZE=$(size "$IDX"); IHEX=$(put_blob "$MULTI" "$IDX")
write_index "$MULTI" multi application/vnd.oci.image.index.v1+json "$IHEX" "$ISIZE"
push_up "$MULTI:multi" multi:1
BIG="$WORK/big"
read -r BHEX BSIZE < <(make_image "$BIG" amd64 1 65536)
write_index "$BIG" v1 application/vnd.oci.image.manifest.v1+json "$BHEX" "$BSIZE"
push_up "$BIG:v1" big:v1
BIGLAYER=$(jq -r '.layers[0].digest' "$BIG/blobs/sha256/$BHEX")
BAD="$WORK/bad"
read -r DHEX DSIZE < <(make_image "$BAD" amd64 1 256)
write_index "$BAD" v1 application/vnd.oci.image.manifest.v1+json "$DHEX" "$DSIZE"
push_up "$BAD:v1" bad:v1
BADLAYER=$(jq -r '.layers[0].digest' "$BAD/blobs/sha256/$DHEX")
log "upstream docker-registry on $UP (htpasswd) holds app, never, multi, big, bad"

# --- upstream 2: another mcrsrv (bearer tokens) ------------------------------
U2_PORT=$(free_port)
U2="127.0.0.1:$U2_PORT"
"$MCRSRV" dev --data "$WORK/u2" --listen "$U2" >"$WORK/u2.log" 2>&1 &
PIDS+=("$!")
wait_for "http://$U2/v2/" "$!" "$WORK/u2.log"
U2CREDS="admin:$(cat "$WORK/u2/admin.password")"
"${SK[@]}" copy --quiet --preserve-digests --dest-tls-verify=false --dest-creds "$U2CREDS" "oci:$APP:v1" "docker://$U2/team/app:v1"
log "upstream mcrsrv on $U2 (bearer tokens) holds team/app"

# --- registries that lie -------------------------------------------------------
TRUNC_PORT=$(free_port); FLIP_PORT=$(free_port)
python3 scripts/corrupt_proxy.py "$TRUNC_PORT" "$UP" truncate >"$WORK/trunc.log" 2>&1 &
PIDS+=("$!"); wait_for "http://127.0.0.1:$TRUNC_PORT/v2/" "$!" "$WORK/trunc.log"
python3 scripts/corrupt_proxy.py "$FLIP_PORT" "$UP" flip >"$WORK/flip.log" 2>&1 &
PIDS+=("$!"); wait_for "http://127.0.0.1:$FLIP_PORT/v2/" "$!" "$WORK/flip.log"

# --- the mirror under test -----------------------------------------------------
TTL=20
PORT=$(free_port)
REG="127.0.0.1:$PORT"
METRICS="127.0.0.1:$(free_port)"
GRPC="127.0.0.1:$(free_port)"
MCR_SERVER_METRICS_ADDR="$METRICS" MCR_SERVER_GRPC_ADDR="$GRPC" MCR_PROXY_UP_USERNAME=mirror MCR_PROXY_UP_PASSWORD="$UP_PASS" MCR_PROXY_UP_TAG_TTL="${TTL}s" \
MCR_PROXY_TRUNC_USERNAME=mirror MCR_PROXY_TRUNC_PASSWORD="$UP_PASS" \
MCR_PROXY_FLIP_USERNAME=mirror MCR_PROXY_FLIP_PASSWORD="$UP_PASS" \
MCR_PROXY_U2_USERNAME=admin MCR_PROXY_U2_PASSWORD="$(cat "$WORK/u2/admin.password")" \
  "$MCRSRV" dev --data "$WORK/mcr" --listen "$REG" \
  --proxy "up=http://$UP" --proxy "u2=http://$U2" \
  --proxy "trunc=http://127.0.0.1:$TRUNC_PORT" --proxy "flip=http://127.0.0.1:$FLIP_PORT" \
  >"$WORK/mcr.log" 2>&1 &
PIDS+=("$!")
wait_for "http://$REG/v2/" "$!" "$WORK/mcr.log"
CREDS="admin:$(cat "$WORK/mcr/admin.password")"
SRC=(--src-tls-verify=false --src-creds "$CREDS")
pull() { "${SK[@]}" copy --quiet --preserve-digests "${SRC[@]}" "docker://$REG/$1" "oci:$2"; }
digest_of() { "${SK[@]}" inspect --raw --tls-verify=false --creds "$CREDS" "docker://$REG/$1" | sha256sum | cut -d' ' -f1; }
log "mcrsrv on $REG mirrors up/, u2/, trunc/, flip/"
if grep -q -- "$UP_PASS" "$WORK/mcr.log"; then fail "the upstream password is in mcrsrv's log"; fi

# --- skopeo and podman pull through it, byte-identical ------------------------
pull up/app:v1 "$WORK/got-app:v1"
compare_layouts "$WORK/got-app" "$APP"
[ "$(digest_of up/app:v1)" = "$AHEX" ] || fail "up/app:v1 is not the upstream's manifest"
FETCHED_AT=$(date +%s)
log "skopeo pulled up/app:v1 through the mirror: every blob identical"
PODMAN=(podman --root "$WORK/podman/root" --runroot "$WORK/podman/run" --storage-driver vfs)
"${PODMAN[@]}" pull -q --tls-verify=false --creds "$CREDS" "$REG/up/app:v1" >/dev/null
GOT=$("${PODMAN[@]}" image inspect --format '{{.Digest}}' "$REG/up/app:v1")
[ "$GOT" = "sha256:$AHEX" ] || fail "podman pulled $GOT, want sha256:$AHEX"
log "podman pulled up/app:v1 through the mirror (digest sha256:$AHEX)"

pull u2/team/app:v1 "$WORK/got-u2:v1"
compare_layouts "$WORK/got-u2" "$APP"
log "skopeo pulled u2/team/app:v1 from the bearer-token upstream: identical"

# --- an index pulled for one platform fetches only that platform --------------
"${SK[@]}" --override-arch arm64 --override-os linux copy --quiet --preserve-digests "${SRC[@]}" \
  "docker://$REG/up/multi:1" "oci:$WORK/got-arm:arm"
compare_layouts "$WORK/got-arm" "$MULTI"
[ "$(jq -r '.manifests[0].digest' "$WORK/got-arm/index.json")" = "sha256:$MRHEX" ] || fail "the arm64 pull got another manifest"
[ "$(count_up "/v2/multi/manifests/sha256:$MAHEX")" = 0 ] || fail "the amd64 manifest was fetched upstream"
for layer in $(jq -r '.layers[].digest, .config.digest' "$MULTI/blobs/sha256/$MAHEX"); do
  [ "$(count_up "/v2/multi/blobs/$layer")" = 0 ] || fail "amd64 blob $layer was fetched upstream"
done
log "up/multi:1 for arm64: no amd64 manifest or blob requested upstream"

# --- tag_ttl: no request within it, one HEAD after it, a moved tag followed -----
BEFORE=$(count_up "/v2/app/manifests/")
[ "$(digest_of up/app:v1)" = "$AHEX" ] || fail "up/app:v1 changed"
[ $(( $(date +%s) - FETCHED_AT )) -lt "$TTL" ] || fail "the machine is too slow to check within tag_ttl ($TTL s)"
[ "$(count_up "/v2/app/manifests/")" = "$BEFORE" ] || fail "a pull within tag_ttl reached the upstream"
sleep $(( FETCHED_AT + TTL + 1 - $(date +%s) ))
[ "$(digest_of up/app:v1)" = "$AHEX" ] || fail "up/app:v1 changed"
NEW=$(grep "\"mcr/" "$WORK/upstream.log" | grep -- "/v2/app/manifests/" | tail -n +$((BEFORE + 1)))
[ "$(grep -c . <<<"$NEW")" = 1 ] && grep -q '"HEAD /v2/app/manifests/v1 ' <<<"$NEW" \
  || fail "after tag_ttl, want exactly one HEAD upstream, got: $NEW"
log "a cached tag: no upstream request within tag_ttl, exactly one HEAD after"
APP2="$WORK/app2"
read -r A2HEX A2SIZE < <(make_image "$APP2" amd64 1)
write_index "$APP2" v1 application/vnd.oci.image.manifest.v1+json "$A2HEX" "$A2SIZE"
push_up "$APP2:v1" app:v1
sleep $(( TTL + 1 ))
[ "$(digest_of up/app:v1)" = "$A2HEX" ] || fail "after the tag moved upstream, the mirror still serves the old digest"
MOVED_AT=$(date +%s)
# Pulled whole, so its blobs are cached too when the upstream stops below.
rm -rf "$WORK/got-app2"
pull up/app:v1 "$WORK/got-app2:v1"
compare_layouts "$WORK/got-app2" "$APP2"
log "the tag moved upstream: the new digest is served after tag_ttl"

# --- ten concurrent pulls of one uncached 64 MiB layer: one upstream GET -----
TOKEN=$(curl -sf -u "$CREDS" "http://$REG/v2/token?service=mcr&scope=repository:up/big:pull" | jq -r .token)
for i in $(seq 1 10); do
  curl -sf -H "Authorization: Bearer $TOKEN" -o "$WORK/big.$i" "http://$REG/v2/up/big/blobs/$BIGLAYER" &
  CURLS[i]=$!
done
for i in $(seq 1 10); do
  wait "${CURLS[i]}" || fail "concurrent pull $i failed"
  [ "sha256:$(sha "$WORK/big.$i")" = "$BIGLAYER" ] || fail "concurrent pull $i got other bytes"
done
[ "$(count_up "\"GET /v2/big/blobs/$BIGLAYER ")" = 1 ] || fail "ten concurrent pulls made $(count_up "GET /v2/big/blobs/$BIGLAYER") upstream GETs"
rm -f "$WORK"/big.*
log "ten concurrent pulls of an uncached 64 MiB layer: one upstream GET, ten identical bodies"

# --- a registry that lies: the pull fails, nothing is stored, the next refetches
LAYER_FILE="$WORK/mcr/layers/sha256/${BADLAYER:7:2}/${BADLAYER:7}"
for liar in trunc flip; do
  for round in 1 2; do
    if "${SK[@]}" copy --quiet "${SRC[@]}" "docker://$REG/$liar/bad:v1" "oci:$WORK/got-$liar:v1" 2>"$WORK/$liar.err"; then
      fail "a pull through the $liar upstream succeeded"
    fi
    [ ! -e "$LAYER_FILE" ] || fail "a bad blob from $liar was stored"
    GETS=$(grep -c "^GET /v2/bad/blobs/$BADLAYER 200" "$WORK/$liar.log" || true)
    [ "$GETS" -ge "$round" ] || fail "round $round through $liar did not fetch the blob again ($GETS GETs)"
  done
  # The operator's side: the server's log names the upstream and the blob.
  grep "a pull-through fill failed" "$WORK/mcr.log" | grep -q "${BADLAYER}" \
    || fail "no WARN in mcrsrv's log for the failed fill from $liar"
  log "$liar: the pull fails, the blob is not stored, the next pull fetches again; the log says why"
done

# --- a mirror is read-only -------------------------------------------------------
if "${SK[@]}" copy --quiet --dest-tls-verify=false --dest-creds "$CREDS" "oci:$APP:v1" "docker://$REG/up/pushed:v1" 2>"$WORK/push.err"; then
  fail "a push into the mirror succeeded"
fi
grep -q "read-only mirror" "$WORK/push.err" || fail "the refused push does not say why: $(cat "$WORK/push.err")"
log "a push into up/ is refused: $(grep -o 'up/pushed is a read-only mirror[^"]*' "$WORK/push.err" | head -1)"

# --- the upstream stopped: cached images still pull ---------------------------
kill "$UP_PID"; wait "$UP_PID" 2>/dev/null || true
sleep $(( MOVED_AT + TTL + 1 - $(date +%s) > 0 ? MOVED_AT + TTL + 1 - $(date +%s) : 0 ))
rm -rf "$WORK/got-app"
pull up/app:v1 "$WORK/got-app:v1"
compare_layouts "$WORK/got-app" "$APP2"
rm -rf "$WORK/got-arm"
"${SK[@]}" --override-arch arm64 --override-os linux copy --quiet --preserve-digests "${SRC[@]}" \
  "docker://$REG/up/multi:1" "oci:$WORK/got-arm:arm"
compare_layouts "$WORK/got-arm" "$MULTI"
grep -q "serving the cached tag" "$WORK/mcr.log" || fail "the stale tag was not served from the cache"
if pull up/never:v1 "$WORK/got-never:v1" 2>"$WORK/never.err"; then
  fail "an uncached image pulled with the upstream stopped"
fi
# skopeo shows only the status of a 503; the body is what names the cause.
NTOKEN=$(curl -sf -u "$CREDS" "http://$REG/v2/token?service=mcr&scope=repository:up/never:pull" | jq -r .token)
NCODE=$(curl -s -o "$WORK/never.body" -w '%{http_code}' -H "Authorization: Bearer $NTOKEN" \
  -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/up/never/manifests/v1")
[ "$NCODE" = 503 ] && grep -q "upstream http://$UP" "$WORK/never.body" \
  || fail "an uncached pull with the upstream stopped: want a 503 naming http://$UP, got $NCODE: $(cat "$WORK/never.body")"
log "upstream stopped: cached images pull, an uncached one fails naming http://$UP"

# --- Prometheus counters ----------------------------------------------------------
curl -sf "http://$METRICS/metrics" >"$WORK/metrics.txt" || fail "no metrics on $METRICS"
# counter NAME PROXY: the counter's value for the proxy prefix (0 if absent)
counter() { awk -v m="$1{proxy=\"$2\"}" '$1 == m { print int($2); f=1 } END { if (!f) print 0 }' "$WORK/metrics.txt"; }
[ "$(counter mcr_proxy_cache_hits_total up)" -gt 0 ] || fail "no cache hits counted for up/"
[ "$(counter mcr_proxy_cache_misses_total up)" -gt 0 ] || fail "no cache misses counted for up/"
[ "$(counter mcr_proxy_upstream_errors_total trunc)" -gt 0 ] || fail "no upstream errors counted for trunc/"
[ "$(counter mcr_proxy_upstream_errors_total up)" -gt 0 ] || fail "the stopped upstream's errors were not counted"
if grep -q -- "$UP_PASS" "$WORK/metrics.txt" "$WORK/mcr.log"; then fail "the upstream password leaked"; fi
log "metrics: up/ hits $(counter mcr_proxy_cache_hits_total up), misses $(counter mcr_proxy_cache_misses_total up), upstream errors $(counter mcr_proxy_upstream_errors_total up); trunc/ upstream errors $(counter mcr_proxy_upstream_errors_total trunc)"

# --- the admin listing: mcrctl over REST and gRPC, the same answer ---------------
export MCR_SERVER="http://$REG"
MCR_TOKEN=$("$MCRCTL" login --username admin --password-stdin <"$WORK/mcr/admin.password")
export MCR_TOKEN
"$MCRCTL" --json proxy list >"$WORK/proxies.rest.json"
"$MCRCTL" --grpc "$GRPC" --json proxy list >"$WORK/proxies.grpc.json"
cmp -s "$WORK/proxies.rest.json" "$WORK/proxies.grpc.json" \
  || fail "mcrctl proxy list differs between REST and gRPC: $(diff "$WORK/proxies.rest.json" "$WORK/proxies.grpc.json")"
UPROW=$(jq -c '.[] | select(.prefix == "up")' "$WORK/proxies.rest.json")
[ "$(jq -r .upstream <<<"$UPROW")" = "http://$UP" ] || fail "proxy list: up/ has upstream $(jq -r .upstream <<<"$UPROW")"
[ "$(jq -r .repositories <<<"$UPROW")" -ge 3 ] || fail "proxy list: up/ caches $(jq -r .repositories <<<"$UPROW") repositories, want app, multi and big"
[ "$(jq -r .cache_size <<<"$UPROW")" -gt $((64 << 20)) ] || fail "proxy list: up/ caches $(jq -r .cache_size <<<"$UPROW") bytes, less than its 64 MiB layer"
[ "$(jq -r .hits <<<"$UPROW")" -gt 0 ] && [ "$(jq -r .misses <<<"$UPROW")" -gt 0 ] || fail "proxy list: up/ counts nothing: $UPROW"
"$MCRCTL" proxy list >"$WORK/proxies.txt"
grep -q "^up .*http://$UP" "$WORK/proxies.txt" || fail "the proxy table lacks up/: $(cat "$WORK/proxies.txt")"
log "mcrctl proxy list (REST = gRPC): $UPROW"

# --- dropping one repository's cache ------------------------------------------------
# up/big holds the 64 MiB layer. After the drop it is gone from the
# listing and, with the upstream still stopped, no longer served.
"$MCRCTL" proxy drop up/big >"$WORK/drop.txt" || fail "mcrctl proxy drop up/big failed"
"$MCRCTL" --json proxy list | jq -c '.[] | select(.prefix == "up")' >"$WORK/after-drop.json"
[ "$(jq -r .repositories "$WORK/after-drop.json")" = $(( $(jq -r .repositories <<<"$UPROW") - 1 )) ] \
  || fail "after the drop up/ still lists $(jq -r .repositories "$WORK/after-drop.json") repositories (was $(jq -r .repositories <<<"$UPROW"))"
[ $(( $(jq -r .cache_size <<<"$UPROW") - $(jq -r .cache_size "$WORK/after-drop.json") )) -ge $((64 << 20)) ] \
  || fail "the drop of up/big freed less than its 64 MiB layer from up/'s cache size"
BCODE=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://$REG/v2/up/big/blobs/$BIGLAYER")
[ "$BCODE" != 200 ] || fail "the dropped up/big still serves its layer with the upstream stopped"
if "$MCRCTL" proxy drop up/big 2>"$WORK/drop-again.err"; then fail "dropping up/big twice succeeded"; fi
grep -q "up/big" "$WORK/drop-again.err" || fail "a second drop does not name up/big: $(cat "$WORK/drop-again.err")"
if "$MCRCTL" proxy drop elsewhere/x 2>"$WORK/drop-other.err"; then fail "dropping a repository outside every mirror succeeded"; fi
grep -q "elsewhere/x" "$WORK/drop-other.err" || fail "dropping elsewhere/x does not name it: $(cat "$WORK/drop-other.err")"
log "mcrctl proxy drop up/big: gone from the listing and no longer served ($BCODE); a second drop and one outside every mirror are refused by name"

log "all pull-through cache checks passed"
