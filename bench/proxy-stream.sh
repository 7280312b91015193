#!/usr/bin/env bash
# Whether the pull-through cache streams a cold blob (issue 13, review D1):
# the time to first byte of a BENCH_STREAM_MIB MiB blob (default 4) from an
# upstream throttled to BENCH_STREAM_RATE (nginx `limit_rate`, default 1m)
# straight from it and through a cold MCR mirror; then the mirror's
# resident memory while a client that never reads holds a cold GET of a
# BENCH_STREAM_BIG_MIB MiB blob (default 256) from the unthrottled upstream
# until the mirror has stored it. Upstream: CNCF Distribution without auth.
# BENCH_MCRSRV names the binary (default: a release build). Not a test:
# bench/README.md "Pull-through cache" has the figures.
#
# Every loop is bounded in count and every client call in time; the
# servers are stopped on exit.
set -euo pipefail
shopt -s inherit_errexit

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
cd "$ROOT"

MIB=${BENCH_STREAM_MIB:-4}
BIG_MIB=${BENCH_STREAM_BIG_MIB:-256}
RATE=${BENCH_STREAM_RATE:-1m}
CALL_SECONDS=600

log() { printf '[bench-stream %s] %s\n' "$(date +%T)" "$*" >&2; }
fail() { printf '[bench-stream] FAIL: %s\n' "$*" >&2; exit 1; }
[[ $MIB =~ ^[0-9]+$ ]] && [ "$MIB" -ge 1 ] && [ "$MIB" -le 1024 ] || fail "BENCH_STREAM_MIB=$MIB must be 1..1024"
[[ $BIG_MIB =~ ^[0-9]+$ ]] && [ "$BIG_MIB" -ge 1 ] && [ "$BIG_MIB" -le 4096 ] || fail "BENCH_STREAM_BIG_MIB=$BIG_MIB must be 1..4096"
[[ $RATE =~ ^[0-9]+[km]?$ ]] || fail "BENCH_STREAM_RATE=$RATE must be an nginx rate (512k, 1m)"

# shellcheck source=scripts/need.sh
source "scripts/need.sh"
need curl jq python3 docker-registry nginx

WORK=$(mktemp -d)
# shellcheck source=scripts/servers.sh
source "scripts/servers.sh"
trap cleanup EXIT

# shellcheck source=bench/proxy-common.sh
source "bench/proxy-common.sh"
mcrsrv_binary
start_distribution

# The same upstream, every answer sent at RATE.
SLOW="127.0.0.1:$(free_port)"
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<CONF
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  server {
    listen $SLOW;
    location / {
      proxy_pass http://$UP;
      proxy_set_header Host \$http_host;
      limit_rate $RATE;
      # Workers may not write to the scratch directory: no temp files, so
      # nginx reads the upstream only as fast as it sends.
      proxy_max_temp_file_size 0;
    }
  }
}
CONF
nginx -c "$WORK/nginx/nginx.conf" >"$WORK/nginx.log" 2>&1 &
PIDS+=("$!")
wait_for "http://$SLOW/v2/" "$!" "$WORK/nginx.log" 100

# push_blob MIB: a random blob of MIB MiB into the upstream's bench/blob;
# prints its digest.
push_blob() {
  local file="$WORK/blob-$1" digest location
  head -c "$(($1 << 20))" /dev/urandom >"$file"
  digest="sha256:$(sha256sum "$file" | cut -d' ' -f1)"
  location=$(curl -sf -X POST -D - -o /dev/null "http://$UP/v2/bench/blob/blobs/uploads/" |
    tr -d '\r' | awk 'tolower($1) == "location:" { print $2 }')
  [[ $location == http* ]] || location="http://$UP$location"
  curl -sf -X PUT --data-binary "@$file" -H 'Content-Type: application/octet-stream' \
    "$location&digest=$digest" -o /dev/null || fail "pushing the $1 MiB blob"
  log "pushed $digest ($(stat -c %s "$file") bytes)"
  rm -f "$file"
  echo "$digest"
}
SMALL=$(push_blob "$MIB")
BIG=$(push_blob "$BIG_MIB")

get_token() {
  TOKEN=$(curl -sf -u "$CREDS" "http://$REG/v2/token?service=mcr&scope=repository:up/bench/blob:pull" | jq -r .token)
}
ttfb() { # BYTES URL [curl args]: first byte and last, in ms, of a whole answer
  local bytes=$1 url=$2 out
  shift 2
  out=$(curl -sf --max-time "$CALL_SECONDS" -o /dev/null "$@" \
    -w '%{time_starttransfer} %{time_total} %{size_download}\n' "$url") || fail "GET $url failed"
  [ "$(awk '{ print $3 }' <<<"$out")" = "$bytes" ] || fail "GET $url: $out, not $bytes bytes"
  awk '{ printf "%d %d\n", $1 * 1000, $2 * 1000 }' <<<"$out"
}

read -r D_FIRST D_LAST < <(ttfb $((MIB << 20)) "http://$SLOW/v2/bench/blob/blobs/$SMALL")
start_mirror "$WORK/mcr-slow" "$SLOW"
get_token
read -r M_FIRST M_LAST < <(ttfb $((MIB << 20)) "http://$REG/v2/up/bench/blob/blobs/$SMALL" -H "Authorization: Bearer $TOKEN")
stop_mirror
log "$MIB MiB at $RATE: straight first byte $D_FIRST ms, last $D_LAST ms; through a cold mirror first byte $M_FIRST ms, last $M_LAST ms"

rss_kb() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
start_mirror "$WORK/mcr-big" "$UP"
get_token
BEFORE=$(rss_kb "$MCR_PID" VmRSS)
# A client that sends the GET and never reads a byte, until told to go.
python3 - "$REG" "/v2/up/bench/blob/blobs/$BIG" "$TOKEN" "$WORK/go" <<'PY' &
import os, socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)))
s.sendall(f"GET {sys.argv[2]} HTTP/1.1\r\nHost: {sys.argv[1]}\r\nAuthorization: Bearer {sys.argv[3]}\r\n\r\n".encode())
for _ in range(6000):
    if os.path.exists(sys.argv[4]):
        break
    time.sleep(0.1)
s.close()
PY
CLIENT=$!
PIDS+=("$CLIENT")
HEX=${BIG#sha256:}
for _ in $(seq 1 3000); do
  [ -n "$(find "$WORK/mcr-big" -name "$HEX" -type f 2>/dev/null)" ] && break
  sleep 0.1
done
[ -n "$(find "$WORK/mcr-big" -name "$HEX" -type f)" ] || fail "the mirror never stored the $BIG_MIB MiB blob"
AFTER=$(rss_kb "$MCR_PID" VmRSS)
PEAK=$(rss_kb "$MCR_PID" VmHWM)
touch "$WORK/go"
wait "$CLIENT" || true
stop_mirror
log "unread cold GET of $BIG_MIB MiB: mirror RSS $((BEFORE / 1024)) MiB before, $((AFTER / 1024)) MiB once stored (peak $((PEAK / 1024)) MiB)"
echo "first_byte_ms direct=$D_FIRST mirror=$M_FIRST last_byte_ms direct=$D_LAST mirror=$M_LAST rss_mib before=$((BEFORE / 1024)) stored=$((AFTER / 1024)) peak=$((PEAK / 1024))"
