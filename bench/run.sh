#!/usr/bin/env bash
# MCR against CNCF Distribution 2.8 and against the machine's limit on the
# same machine, same workload, one run: see bench/README.md. Installs what
# is missing (apt-get), builds mcrsrv in release, starts both registries on
# 127.0.0.1 with auth on and nginx serving MCR's blob files, runs each
# workload for BENCH_ROUNDS rounds (servers alternating in order every
# round, the limit measured in the same round), then the GC workload, and
# writes the tables of medians to bench/results/latest.md.
#
# Every loop is bounded in count, every client call in time, and the whole
# run by BENCH_MAX_SECONDS; both servers are stopped on exit.
#
# mcrsrv runs with its metrics listener off. BENCH_METRICS=1 adds a third
# server to the manifest-GET and blob-GET rows, `mcr-metrics`: the same
# mcrsrv on a copy of the same data with metrics on and a scraper polling
# GET /metrics every second, so the report shows what metrics cost.
set -euo pipefail
shopt -s inherit_errexit

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")

ROUNDS=${BENCH_ROUNDS:-3}
BIG_MIB=${BENCH_BIG_MIB:-1024}
CHUNKED_MIB=${BENCH_CHUNKED_MIB:-256}
CHUNK_MIB=${BENCH_CHUNK_MIB:-8}
LAYERS=${BENCH_LAYERS:-200}
LAYER_KIB=${BENCH_LAYER_KIB:-256}
WRK_SECONDS=${BENCH_WRK_SECONDS:-10}
WRK_CONNS=${BENCH_WRK_CONNS:-32}
DIST_NOAUTH=${BENCH_DIST_NOAUTH:-1}
MAX_SECONDS=${BENCH_MAX_SECONDS:-1800}
# Unreferenced blobs seeded for each GC run, smallest first ("" skips the
# GC workload); pushers running during GC; seconds of pushes before it.
GC_SIZES=${BENCH_GC_SIZES-10000 100000}
GC_PUSHERS=${BENCH_GC_PUSHERS:-2}
GC_BASELINE_SECONDS=${BENCH_GC_BASELINE_SECONDS:-3}
WITH_METRICS=${BENCH_METRICS:-0}
# "all" runs every workload; "gc" only the GC workload (with BENCH_GC_SIZES).
ONLY=${BENCH_ONLY:-all}
OUT=${BENCH_OUT:-$HERE/results/latest.md}
TMPBASE=${BENCH_TMPDIR:-/var/tmp}

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
fail() { printf '[bench] FAIL: %s\n' "$*" >&2; exit 1; }

int_in() { # NAME VALUE MIN MAX
  [[ $2 =~ ^[0-9]+$ ]] && [ "$2" -ge "$3" ] && [ "$2" -le "$4" ] || fail "$1=$2 must be an integer in $3..$4"
}
int_in BENCH_ROUNDS "$ROUNDS" 1 9
int_in BENCH_BIG_MIB "$BIG_MIB" 1 8192
int_in BENCH_CHUNKED_MIB "$CHUNKED_MIB" 1 4096
int_in BENCH_CHUNK_MIB "$CHUNK_MIB" 1 512
int_in BENCH_LAYERS "$LAYERS" 1 2000
int_in BENCH_LAYER_KIB "$LAYER_KIB" 1 65536
int_in BENCH_WRK_SECONDS "$WRK_SECONDS" 1 120
int_in BENCH_WRK_CONNS "$WRK_CONNS" 1 1024
int_in BENCH_MAX_SECONDS "$MAX_SECONDS" 60 14400
int_in BENCH_GC_PUSHERS "$GC_PUSHERS" 1 32
int_in BENCH_GC_BASELINE_SECONDS "$GC_BASELINE_SECONDS" 1 60
for n in $GC_SIZES; do int_in "a BENCH_GC_SIZES entry" "$n" 1 10000000; done
int_in BENCH_METRICS "$WITH_METRICS" 0 1
case $ONLY in all) ;; gc) [ -n "$GC_SIZES" ] || fail "BENCH_ONLY=gc needs BENCH_GC_SIZES" ;; *) fail "BENCH_ONLY=$ONLY must be all or gc" ;; esac
[ $((CHUNKED_MIB % CHUNK_MIB)) -eq 0 ] || fail "BENCH_CHUNKED_MIB must be a multiple of BENCH_CHUNK_MIB"
NCHUNKS=$((CHUNKED_MIB / CHUNK_MIB))

STARTED=$(date +%s)
# Aborts the run once it has taken longer than BENCH_MAX_SECONDS.
deadline() {
  local spent=$(($(date +%s) - STARTED))
  [ "$spent" -le "$MAX_SECONDS" ] || fail "the run took over ${MAX_SECONDS}s (BENCH_MAX_SECONDS); stopping"
}

# --- tools -------------------------------------------------------------------
# shellcheck source=scripts/need.sh
source "$HERE/../scripts/need.sh"
need docker-registry:docker-registry wrk:wrk skopeo:skopeo curl:curl jq:jq \
  htpasswd:apache2-utils python3:python3 timeout:coreutils dd:coreutils sha256sum:coreutils
# nginx lives in /usr/sbin, which an unprivileged PATH may lack.
NGINX=$(PATH="$PATH:/usr/sbin" command -v nginx || true)
if [ -z "$NGINX" ]; then need nginx:nginx-light; NGINX=$(PATH="$PATH:/usr/sbin" command -v nginx); fi
command -v cargo >/dev/null || fail "cargo is needed to build mcrsrv (install the Rust toolchain)"

# What is built: the commit, and any uncommitted changes to the crates
# (other work may be going on in the same tree).
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain --untracked-files=no -- crates Cargo.toml Cargo.lock 2>/dev/null \
  | awk '{ print $2 }' | paste -sd' ' || true)

BUILD_T0=$(date +%s)
if [ -n "${BENCH_MCRSRV:-}" ]; then
  # A prebuilt mcrsrv (another commit's, for a before/after in one
  # sitting): the report names it instead of this tree's commit.
  MCRSRV=$(realpath "$BENCH_MCRSRV")
  [ -x "$MCRSRV" ] || fail "BENCH_MCRSRV=$BENCH_MCRSRV is not an executable"
  COMMIT="prebuilt $MCRSRV" DIRTY=""
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mcr/target}"
  log "building mcrsrv (release) into $CARGO_TARGET_DIR"
  (cd "$ROOT" && cargo build --release -p mcr-cli --bin mcrsrv) >&2
  MCRSRV="$CARGO_TARGET_DIR/release/mcrsrv"
  [ -x "$MCRSRV" ] || fail "no $MCRSRV after the build"
fi
BUILD_SECONDS=$(($(date +%s) - BUILD_T0))

# --- scratch space and servers ---------------------------------------------
WORK=$(mktemp -d "$TMPBASE/mcr-bench.XXXXXX")
FSTYPE=$(stat -f -c %T "$WORK")
[ "$FSTYPE" = tmpfs ] && log "WARNING: $WORK is on tmpfs: fsync costs nothing there (set BENCH_TMPDIR)"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"

MCR_PID="" DIST_PID="" NOAUTH_PID="" NGINX_PID="" MCRM_PID="" SCRAPER_PID=""
stop_pid() { # PID: TERM, up to 5 s, then KILL
  local pid=$1 i
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop_pid "$SCRAPER_PID"
  stop_pid "$MCR_PID"; stop_pid "$DIST_PID"; stop_pid "$NOAUTH_PID"; stop_pid "$MCRM_PID"; stop_pid "$NGINX_PID"
  MCR_PID="" DIST_PID="" NOAUTH_PID="" MCRM_PID="" SCRAPER_PID="" NGINX_PID=""
  if [ "${BENCH_KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# Distinct free ports: the APIs, the metrics variant's gRPC and metrics
# listeners, and nginx (the limit).
PORTS=()
while [ ${#PORTS[@]} -lt 7 ]; do
  p=$(free_port)
  case " ${PORTS[*]} " in *" $p "*) ;; *) PORTS+=("$p") ;; esac
done
MCR_PORT=${PORTS[0]} DIST_PORT=${PORTS[1]} NOAUTH_PORT=${PORTS[2]}
MCRM_PORT=${PORTS[3]} MCRM_GRPC_PORT=${PORTS[4]} MCRM_METRICS_PORT=${PORTS[5]}
NGINX_PORT=${PORTS[6]}

# Distribution: filesystem storage in the scratch dir, loopback only,
# htpasswd (bcrypt) basic auth. A second config without auth on the same
# storage serves the reference wrk rows.
DIST_PASSWORD=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
mkdir -p "$WORK/dist"
htpasswd -nbB bench "$DIST_PASSWORD" >"$WORK/dist/htpasswd" 2>/dev/null
dist_config() { # PORT WITH_AUTH
  cat <<YAML
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $WORK/dist/data
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$1
  secret: $DIST_PASSWORD-secret
  headers:
    X-Content-Type-Options: [nosniff]
YAML
  if [ "$2" = 1 ]; then
    cat <<YAML
auth:
  htpasswd:
    realm: mcr-bench
    path: $WORK/dist/htpasswd
YAML
  fi
}
dist_config "$DIST_PORT" 1 >"$WORK/dist/config.yml"
dist_config "$NOAUTH_PORT" 0 >"$WORK/dist/config-noauth.yml"

# The limit for the GET rows: nginx serving MCR's own blob files
# (<layers>/sha256/<2>/<64>) as static files, and the manifest's bytes
# from a file, with sendfile, one worker per core, keep-alive without a
# request cap (like the registries), and an access log (like MCR's one
# line per request). Plain HTTP, no auth: what the machine does to move
# those bytes to the same client.
mkdir -p "$WORK/nginx/static"
{
  [ "$(id -u)" -eq 0 ] && echo "user root root;"  # the blob files are 0640 root
  cat <<NGINX
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log $WORK/nginx/access.log;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 10000000;
  default_type application/octet-stream;
  client_body_temp_path $WORK/nginx/tmp;
  proxy_temp_path $WORK/nginx/tmp;
  fastcgi_temp_path $WORK/nginx/tmp;
  uwsgi_temp_path $WORK/nginx/tmp;
  scgi_temp_path $WORK/nginx/tmp;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $WORK/mcr/layers;
    location /static/ { root $WORK/nginx; }
  }
}
NGINX
} >"$WORK/nginx/nginx.conf"
mkdir -p "$WORK/nginx/tmp"

wait_ready() { # PID URL LOG
  local i
  for i in $(seq 1 300); do
    curl -s -o /dev/null --max-time 1 "$2" && return 0
    kill -0 "$1" 2>/dev/null || { tail -20 "$3" >&2; fail "server for $2 exited"; }
    sleep 0.05
  done
  fail "server for $2 not ready after 15 s"
}

start_servers() { # WITH_NOAUTH [WITH_METRICS_VARIANT]
  # BENCH_MCR_ENV (e.g. MALLOC_MMAP_THRESHOLD_=1048576) tries a setting on
  # mcrsrv alone; word-split on purpose. Metrics off (an empty address).
  # shellcheck disable=SC2086
  env ${BENCH_MCR_ENV:-} MCR_SERVER_METRICS_ADDR= "$MCRSRV" dev --data "$WORK/mcr" --listen "127.0.0.1:$MCR_PORT" >>"$WORK/mcr.log" 2>&1 &
  MCR_PID=$!
  docker-registry serve "$WORK/dist/config.yml" >>"$WORK/dist.log" 2>&1 &
  DIST_PID=$!
  wait_ready "$MCR_PID" "http://127.0.0.1:$MCR_PORT/v2/" "$WORK/mcr.log"
  wait_ready "$DIST_PID" "http://127.0.0.1:$DIST_PORT/v2/" "$WORK/dist.log"
  if [ "${1:-0}" = 1 ]; then
    docker-registry serve "$WORK/dist/config-noauth.yml" >>"$WORK/dist-noauth.log" 2>&1 &
    NOAUTH_PID=$!
    wait_ready "$NOAUTH_PID" "http://127.0.0.1:$NOAUTH_PORT/v2/" "$WORK/dist-noauth.log"
  fi
  if [ "${2:-0}" = 1 ]; then
    # shellcheck disable=SC2086
    env ${BENCH_MCR_ENV:-} MCR_SERVER_METRICS_ADDR="127.0.0.1:$MCRM_METRICS_PORT" \
      MCR_SERVER_GRPC_ADDR="127.0.0.1:$MCRM_GRPC_PORT" \
      "$MCRSRV" dev --data "$WORK/mcr-metrics" --listen "127.0.0.1:$MCRM_PORT" >>"$WORK/mcr-metrics.log" 2>&1 &
    MCRM_PID=$!
    wait_ready "$MCRM_PID" "http://127.0.0.1:$MCRM_PORT/v2/" "$WORK/mcr-metrics.log"
    wait_ready "$MCRM_PID" "http://127.0.0.1:$MCRM_METRICS_PORT/metrics" "$WORK/mcr-metrics.log"
    # A scraper as Prometheus would be, every second; each scrape bounded.
    ( while kill -0 "$MCRM_PID" 2>/dev/null; do
        curl -s -o /dev/null --max-time 5 "http://127.0.0.1:$MCRM_METRICS_PORT/metrics" || true
        sleep 1
      done ) &
    SCRAPER_PID=$!
  fi
  MCR_PASSWORD=$(cat "$WORK/mcr/admin.password")
}

stop_servers() {
  stop_pid "$SCRAPER_PID"
  stop_pid "$MCR_PID"; stop_pid "$DIST_PID"; stop_pid "$NOAUTH_PID"; stop_pid "$MCRM_PID"
  MCR_PID="" DIST_PID="" NOAUTH_PID="" MCRM_PID="" SCRAPER_PID=""
}

# nginx runs through the whole run (its memory and CPU are not reported).
start_nginx() {
  "$NGINX" -e "$WORK/nginx/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' \
    >>"$WORK/nginx/stderr.log" 2>&1 &
  NGINX_PID=$!
  wait_ready "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT/static/" "$WORK/nginx/error.log"
}

# nginx's URL of the blob file MCR stores for DIGEST.
limit_blob_url() { local hex=${1#sha256:}; echo "http://127.0.0.1:$NGINX_PORT/sha256/${hex:0:2}/$hex"; }

record() { # WORKLOAD SERVER ROUND METRIC VALUE
  printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"
}

kib_field() { # PID FIELD -> MiB
  awk -v f="$2:" '$1 == f { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

# CPU seconds (user + system) a process has used since it started.
cpu_seconds() { # PID
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"
}

# Records each server's VmHWM (peak RSS since its start) and CPU time for
# WORKLOAD: servers restart per workload, so both belong to it (plus the
# start-up, measured on its own in the "startup" phase).
record_rss() { # WORKLOAD
  record "$1" mcr 0 "peak RSS MiB" "$(kib_field "$MCR_PID" VmHWM)"
  record "$1" dist 0 "peak RSS MiB" "$(kib_field "$DIST_PID" VmHWM)"
  record "$1" mcr 0 "server CPU s" "$(cpu_seconds "$MCR_PID")"
  record "$1" dist 0 "server CPU s" "$(cpu_seconds "$DIST_PID")"
  if [ -n "$MCRM_PID" ]; then
    record "$1" mcr-metrics 0 "peak RSS MiB" "$(kib_field "$MCRM_PID" VmHWM)"
    record "$1" mcr-metrics 0 "server CPU s" "$(cpu_seconds "$MCRM_PID")"
  fi
}

port_of() { case $1 in mcr) echo "$MCR_PORT" ;; mcr-metrics) echo "$MCRM_PORT" ;; dist) echo "$DIST_PORT" ;; dist-noauth) echo "$NOAUTH_PORT" ;; limit) echo "$NGINX_PORT" ;; esac; }
base_of() { echo "http://127.0.0.1:$(port_of "$1")"; }
creds_of() { case $1 in mcr | mcr-metrics) echo "admin:$MCR_PASSWORD" ;; *) echo "bench:$DIST_PASSWORD" ;; esac; }

# The Authorization header a client would send: a bearer token from
# /v2/token for MCR (fetched once, outside the timing, as clients cache
# it); HTTP Basic on every request for Distribution's htpasswd.
auth_of() { # SERVER REPO
  case $1 in
    mcr | mcr-metrics)
      local token
      token=$(curl -sSf --max-time 30 -u "$(creds_of "$1")" \
        "$(base_of "$1")/v2/token?service=mcr&scope=repository:$2:pull,push" | jq -r .token) \
        || fail "no token from $1"
      [ -n "$token" ] && [ "$token" != null ] || fail "MCR gave an empty token"
      echo "Authorization: Bearer $token" ;;
    dist) echo "Authorization: Basic $(printf '%s' "$(creds_of dist)" | base64 -w0)" ;;
    dist-noauth | limit) echo "X-No-Auth: 1" ;;
  esac
}

# Sums curl's own time_total over several requests (seconds); client
# process start-up is left out so that it does not count against either.
add_time() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", a + b }'; }

# POST a new upload session; prints its absolute Location, then its time.
start_upload() { # SERVER AUTH REPO
  local hdr="$WORK/hdr.$$" t loc
  t=$(curl -sS -f --max-time 30 -X POST -H "$2" -H 'Content-Length: 0' -D "$hdr" -o /dev/null \
    -w '%{time_total}' "$(base_of "$1")/v2/$3/blobs/uploads/") || fail "$1: POST upload on $3 failed"
  loc=$(tr -d '\r' <"$hdr" | awk 'tolower($1) == "location:" { print $2 }' | tail -1)
  [ -n "$loc" ] || fail "$1: no Location after POST"
  case $loc in /*) loc="$(base_of "$1")$loc" ;; esac
  echo "$loc $t"
}

with_digest() { # LOCATION DIGEST
  case $1 in *\?*) echo "$1&digest=$2" ;; *) echo "$1?digest=$2" ;; esac
}

# Two-step monolithic upload: POST, then PUT ?digest= with the whole body.
# Prints seconds.
upload_mono() { # SERVER AUTH REPO FILE DIGEST
  local loc t0 t1 code
  read -r loc t0 < <(start_upload "$1" "$2" "$3")
  read -r code t1 < <(curl -sS --max-time 600 -X PUT -H "$2" -H 'Expect:' \
    -H 'Content-Type: application/octet-stream' -T "$4" -o "$WORK/body.$$" \
    -w '%{http_code} %{time_total}\n' "$(with_digest "$loc" "$5")") || fail "$1: PUT of $4 failed"
  [ "$code" = 201 ] || fail "$1: PUT of $4 answered $code: $(head -c 300 "$WORK/body.$$")"
  add_time "$t0" "$t1"
}

# Chunked upload: POST, PATCH each chunk file with Content-Range, PUT.
upload_chunked() { # SERVER AUTH REPO DIGEST CHUNK_FILES...
  local server=$1 auth=$2 repo=$3 digest=$4; shift 4
  local loc total t code start=0 size hdr="$WORK/hdr.$$" chunk
  read -r loc total < <(start_upload "$server" "$auth" "$repo")
  for chunk in "$@"; do
    size=$(stat -c %s "$chunk")
    read -r code t < <(curl -sS --max-time 120 -X PATCH -H "$auth" -H 'Expect:' \
      -H 'Content-Type: application/octet-stream' -H "Content-Range: $start-$((start + size - 1))" \
      -T "$chunk" -D "$hdr" -o /dev/null -w '%{http_code} %{time_total}\n' "$loc") \
      || fail "$server: PATCH failed"
    [ "$code" = 202 ] || fail "$server: PATCH at $start answered $code"
    loc=$(tr -d '\r' <"$hdr" | awk 'tolower($1) == "location:" { print $2 }' | tail -1)
    case $loc in /*) loc="$(base_of "$server")$loc" ;; esac
    total=$(add_time "$total" "$t")
    start=$((start + size))
  done
  read -r code t < <(curl -sS --max-time 120 -X PUT -H "$auth" -H 'Content-Length: 0' \
    -o "$WORK/body.$$" -w '%{http_code} %{time_total}\n' "$(with_digest "$loc" "$digest")") \
    || fail "$server: final PUT failed"
  [ "$code" = 201 ] || fail "$server: final PUT answered $code: $(head -c 300 "$WORK/body.$$")"
  add_time "$total" "$t"
}

mibps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / 1048576 / s }'; }

# Seconds a command takes, by the wall clock.
timed() {
  local t0 t1
  t0=$(date +%s%N)
  "$@" >/dev/null
  t1=$(date +%s%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", (b - a) / 1e9 }'
}

# The limit for an upload of FILE: a plain tool writing the same bytes
# to a new file on the same disk and fdatasync-ing them (dd), then
# hashing them (sha256sum) — the work an upload must do, one after the
# other as a plain tool does it. Records all three, as MiB/s.
upload_limit() { # WORKLOAD ROUND FILE
  local bytes w h
  bytes=$(stat -c %s "$3")
  w=$(timed dd if="$3" of="$WORK/limit.out" bs=1M conv=fdatasync status=none)
  rm -f "$WORK/limit.out"
  h=$(timed sha256sum "$3")
  record "$1" limit "$2" MiB/s "$(mibps "$bytes" "$(add_time "$w" "$h")")"
  record "$1" limit-write "$2" MiB/s "$(mibps "$bytes" "$w")"
  record "$1" limit-sha256 "$2" MiB/s "$(mibps "$bytes" "$h")"
  log "  round $2 limit: write+fdatasync ${w}s, sha256 ${h}s"
}

# Server order of round R: alternates so neither always goes first.
order() { if [ $(($1 % 2)) -eq 1 ]; then echo "mcr dist"; else echo "dist mcr"; fi; }

# Gives FILE a round-specific first 32 bytes, so every round uploads a
# blob neither server has seen; prints its digest.
mark() { # FILE ROUND
  printf 'mcr-bench %s round %02d %08d' "$(basename "$1")" "$2" "$RANDOM" | head -c 32 \
    | dd of="$1" bs=32 count=1 conv=notrunc status=none
  echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
LOADS=()
phase() { deadline; LOADS+=("$1: $(loadavg)"); log "$1 (load $(loadavg))"; }

# --- the workloads -------------------------------------------------------
log "scratch $WORK ($FSTYPE); MCR on :$MCR_PORT, Distribution on :$DIST_PORT (no-auth :$NOAUTH_PORT)"
# Every workload but GC, unless BENCH_ONLY=gc (left unindented: it is
# most of the script).
if [ "$ONLY" = all ]; then
log "generating ${BIG_MIB} MiB and ${CHUNKED_MIB} MiB of random data"
head -c $((BIG_MIB << 20)) /dev/urandom >"$WORK/big.bin"
head -c $((CHUNKED_MIB << 20)) /dev/urandom >"$WORK/chunked.bin"
LOAD_START=$(loadavg)

phase "startup"
start_servers 0
record startup mcr 0 "RSS MiB" "$(kib_field "$MCR_PID" VmRSS)"
record startup dist 0 "RSS MiB" "$(kib_field "$DIST_PID" VmRSS)"
record_rss startup
stop_servers

phase "monolithic upload of ${BIG_MIB} MiB"
start_servers 0
BIG_DIGESTS=()
for r in $(seq 1 "$ROUNDS"); do
  deadline
  digest=$(mark "$WORK/big.bin" "$r")
  BIG_DIGESTS+=("$digest")
  for s in $(order "$r"); do
    secs=$(upload_mono "$s" "$(auth_of "$s" bench/big)" bench/big "$WORK/big.bin" "$digest")
    record mono_upload "$s" "$r" MiB/s "$(mibps $((BIG_MIB << 20)) "$secs")"
    log "  round $r $s: ${secs}s"
  done
  upload_limit mono_upload "$r" "$WORK/big.bin"
done
record_rss mono_upload
stop_servers

phase "download of ${BIG_MIB} MiB"
start_servers 0
start_nginx
for r in $(seq 1 "$ROUNDS"); do
  deadline
  for s in $(order "$r") limit; do
    url="$(base_of "$s")/v2/bench/big/blobs/${BIG_DIGESTS[$((r - 1))]}"
    if [ "$s" = limit ]; then url=$(limit_blob_url "${BIG_DIGESTS[$((r - 1))]}"); fi
    read -r code bytes secs < <(curl -sS --max-time 600 -H "$(auth_of "$s" bench/big)" -o /dev/null \
      -w '%{http_code} %{size_download} %{time_total}\n' "$url") \
      || fail "$s: download failed"
    [ "$code" = 200 ] && [ "$bytes" = $((BIG_MIB << 20)) ] || fail "$s: download answered $code with $bytes bytes"
    record download "$s" "$r" MiB/s "$(mibps "$bytes" "$secs")"
    log "  round $r $s: ${secs}s"
  done
done
record_rss download
stop_servers

phase "chunked upload of ${CHUNKED_MIB} MiB in ${CHUNK_MIB} MiB chunks"
start_servers 0
for r in $(seq 1 "$ROUNDS"); do
  deadline
  digest=$(mark "$WORK/chunked.bin" "$r")
  rm -rf "$WORK/chunks"; mkdir "$WORK/chunks"
  split -b "${CHUNK_MIB}M" -d -a 4 "$WORK/chunked.bin" "$WORK/chunks/c"
  chunks=("$WORK"/chunks/c*)
  [ ${#chunks[@]} -eq "$NCHUNKS" ] || fail "split gave ${#chunks[@]} chunks, want $NCHUNKS"
  for s in $(order "$r"); do
    secs=$(upload_chunked "$s" "$(auth_of "$s" bench/chunked)" bench/chunked "$digest" "${chunks[@]}")
    record chunked_upload "$s" "$r" MiB/s "$(mibps $((CHUNKED_MIB << 20)) "$secs")"
    log "  round $r $s: ${secs}s"
  done
  upload_limit chunked_upload "$r" "$WORK/chunked.bin"
done
rm -rf "$WORK/chunks"
record_rss chunked_upload
stop_servers

phase "skopeo push of $LAYERS layers of $LAYER_KIB KiB"
start_servers 0
SK=(skopeo --insecure-policy)
for r in $(seq 1 "$ROUNDS"); do
  deadline
  rm -rf "$WORK/layout"
  read -r MANIFEST_DIGEST _ < <(python3 "$HERE/mklayout.py" "$WORK/layout" "r$r" "$LAYERS" $((LAYER_KIB * 1024)))
  [ "$r" = 1 ] && FIRST_MANIFEST=$MANIFEST_DIGEST
  for s in $(order "$r"); do
    t0=$(date +%s%N)
    timeout 300 "${SK[@]}" copy --quiet --preserve-digests --dest-tls-verify=false \
      --dest-creds "$(creds_of "$s")" "oci:$WORK/layout:r$r" "docker://127.0.0.1:$(port_of "$s")/bench/img:r$r" \
      >"$WORK/skopeo.log" 2>&1 || { cat "$WORK/skopeo.log" >&2; fail "$s: skopeo push failed"; }
    secs=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    record skopeo_push "$s" "$r" s "$secs"
    log "  round $r $s: ${secs}s"
  done
done
rm -rf "$WORK/layout"
record_rss skopeo_push
stop_servers

# A 1 MiB blob for the wrk blob GET, put in place with servers that are
# then restarted, so the wrk phases' peaks are their own.
head -c $((1 << 20)) /dev/urandom >"$WORK/small.bin"
SMALL_DIGEST="sha256:$(sha256sum "$WORK/small.bin" | cut -d' ' -f1)"
start_servers 0
for s in mcr dist; do upload_mono "$s" "$(auth_of "$s" bench/small)" bench/small "$WORK/small.bin" "$SMALL_DIGEST" >/dev/null; done
stop_servers
# The metrics variant serves the very same data, from a copy.
[ "$WITH_METRICS" = 1 ] && cp -a "$WORK/mcr" "$WORK/mcr-metrics"

MANIFEST_ACCEPT="Accept: application/vnd.oci.image.manifest.v1+json"
# wrk_run WORKLOAD SERVER ROUND URL HEADERS...
wrk_run() {
  local w=$1 s=$2 r=$3 url=$4; shift 4
  local out="$WORK/wrk.out" hdrs=() h
  for h in "$@"; do hdrs+=(-H "$h"); done
  timeout $((WRK_SECONDS + 60)) wrk -t2 -c"$WRK_CONNS" -d"${WRK_SECONDS}s" --latency "${hdrs[@]}" "$url" >"$out" 2>&1 \
    || { cat "$out" >&2; fail "wrk on $s failed"; }
  local rps p50 p99 bad
  rps=$(awk '$1 == "Requests/sec:" { print $2 }' "$out")
  # wrk prints latencies as 812.00us, 3.21ms or 1.02s: all to ms.
  p50=$(awk '$1 == "50%" { v = $2 + 0; if ($2 ~ /us$/) v /= 1000; else if ($2 ~ /[0-9]s$/) v *= 1000; print v }' "$out")
  p99=$(awk '$1 == "99%" { v = $2 + 0; if ($2 ~ /us$/) v /= 1000; else if ($2 ~ /[0-9]s$/) v *= 1000; print v }' "$out")
  bad=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
  [ -n "$rps" ] && [ -n "$p50" ] && [ -n "$p99" ] || { cat "$out" >&2; fail "could not read wrk's output"; }
  if [ -n "$bad" ] && [ "$bad" != 0 ]; then
    cat "$out" >&2; fail "$s answered $bad non-2xx responses under wrk: the figures would be meaningless"
  fi
  grep -q 'Socket errors' "$out" && log "  $s: $(grep 'Socket errors' "$out")"
  record "$w" "$s" "$r" req/s "$rps"
  record "$w" "$s" "$r" "p50 ms" "$p50"
  record "$w" "$s" "$r" "p99 ms" "$p99"
  log "  round $r $s: $rps req/s, p50 ${p50} ms, p99 ${p99} ms"
}

# check_get SERVER URL EXPECT_BYTES HEADERS... : one GET must answer 200.
check_get() {
  local s=$1 url=$2 want=$3; shift 3
  local hdrs=() h code bytes
  for h in "$@"; do hdrs+=(-H "$h"); done
  read -r code bytes < <(curl -sS --max-time 30 "${hdrs[@]}" -o /dev/null -w '%{http_code} %{size_download}\n' "$url")
  [ "$code" = 200 ] || fail "$s: GET $url answered $code"
  [ -z "$want" ] || [ "$bytes" = "$want" ] || fail "$s: GET $url gave $bytes bytes, want $want"
  echo "$bytes"
}

# The registries in this round's order (with the metrics variant if
# asked), Distribution without auth if asked, and the limit (nginx) last.
wrk_servers() { # ROUND
  local list
  list=$(order "$1")
  if [ "$WITH_METRICS" = 1 ]; then
    # Alternate the variant's place too: before or after plain mcr.
    if [ $(($1 % 2)) -eq 1 ]; then list="mcr-metrics $list"; else list="$list mcr-metrics"; fi
  fi
  [ "$DIST_NOAUTH" = 1 ] && list="$list dist-noauth"
  echo "$list limit"
}

phase "manifest GET, wrk -c$WRK_CONNS -d${WRK_SECONDS}s"
start_servers "$DIST_NOAUTH" "$WITH_METRICS"
MANIFEST_BYTES=""
for r in $(seq 1 "$ROUNDS"); do
  deadline
  for s in $(wrk_servers "$r"); do
    auth=$(auth_of "$s" bench/img)
    url="$(base_of "$s")/v2/bench/img/manifests/r1"
    if [ "$s" = limit ]; then
      url="http://127.0.0.1:$NGINX_PORT/static/manifest.json"
      [ -s "$WORK/nginx/static/manifest.json" ] || curl -sSf --max-time 30 -H "$(auth_of mcr bench/img)" \
        -H "$MANIFEST_ACCEPT" -o "$WORK/nginx/static/manifest.json" "$(base_of mcr)/v2/bench/img/manifests/r1" \
        || fail "could not fetch the manifest for nginx"
    fi
    MANIFEST_BYTES=$(check_get "$s" "$url" "$MANIFEST_BYTES" "$auth" "$MANIFEST_ACCEPT")
    wrk_run manifest_get "$s" "$r" "$url" "$auth" "$MANIFEST_ACCEPT"
  done
done
record_rss manifest_get
stop_servers

phase "1 MiB blob GET, wrk -c$WRK_CONNS -d${WRK_SECONDS}s"
start_servers "$DIST_NOAUTH" "$WITH_METRICS"
for r in $(seq 1 "$ROUNDS"); do
  deadline
  for s in $(wrk_servers "$r"); do
    auth=$(auth_of "$s" bench/small)
    url="$(base_of "$s")/v2/bench/small/blobs/$SMALL_DIGEST"
    if [ "$s" = limit ]; then url=$(limit_blob_url "$SMALL_DIGEST"); fi
    check_get "$s" "$url" $((1 << 20)) "$auth" >/dev/null
    wrk_run blob_get "$s" "$r" "$url" "$auth"
  done
done
record_rss blob_get
stop_servers
stop_pid "$NGINX_PID"; NGINX_PID=""
else
  LOAD_START=$(loadavg)
  # Seeding needs the schema mcrsrv creates on its first start.
  start_servers 0
  stop_servers
fi

# GC while small pushes go on: for each N, seed N unreferenced blobs into
# MCR's files and database while it is stopped (gcbench.py seed), start
# it, and let gcbench.py run time GC and the pushes before and during it.
# MCR alone: Distribution collects garbage offline only.
GC_JSON="$WORK/gc.jsonl"
: >"$GC_JSON"
for n in $GC_SIZES; do
  phase "GC of $n unreferenced blobs with $GC_PUSHERS pushers"
  t0=$(date +%s)
  python3 "$HERE/gcbench.py" seed "$WORK/mcr" "$n" || fail "seeding $n blobs failed"
  log "  seeded $n blobs in $(($(date +%s) - t0))s"
  start_servers 0
  token=$(auth_of mcr bench/gcpush)
  out=$(timeout $((600 + n / 100)) python3 "$HERE/gcbench.py" run "$(base_of mcr)" "${token#Authorization: Bearer }" \
    bench/gcpush "$GC_PUSHERS" "$GC_BASELINE_SECONDS" $((540 + n / 100)) "$MCR_PID") || fail "the GC workload of $n blobs failed"
  printf '{"n": %s, "result": %s, "peak_rss_mib": %s}\n' "$n" "$out" "$(kib_field "$MCR_PID" VmHWM)" >>"$GC_JSON"
  log "  $out"
  stop_servers
done
LOAD_END=$(loadavg)
TOTAL_SECONDS=$(($(date +%s) - STARTED))

# --- the report ------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
{
  echo "# MCR vs Distribution: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $COMMIT$([ -n "$DIRTY" ] && echo " + uncommitted changes to $DIRTY")"
  echo
  echo "- Machine: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(free -h | awk '/^Mem:/ { print $2 }') memory;" \
    "scratch disk: $(df -h "$WORK" | awk 'NR == 2 { print $1 ", " $2 " size, " $4 " free" }') ($FSTYPE)."
  echo "- Load average (1, 5, 15 min): $LOAD_START at the start, $LOAD_END at the end; per phase: $(printf '%s; ' "${LOADS[@]}" | sed 's/; $//')."
  echo "- Distribution: $(docker-registry --version 2>/dev/null | awk '{ print $NF }'), filesystem storage, htpasswd (bcrypt) basic auth on every request;" \
    "MCR: \`mcrsrv dev\` (local identity, bearer token from /v2/token fetched once per workload and round, not timed). Both on 127.0.0.1, plain HTTP, log level info."
  [ -z "${BENCH_MCR_ENV:-}" ] || echo "- mcrsrv ran with the environment \`$BENCH_MCR_ENV\` (BENCH_MCR_ENV)."
  [ "$WITH_METRICS" = 1 ] && echo "- BENCH_METRICS=1: on the wrk rows, \`mcr-metrics\` is mcrsrv on a copy of the same data with its metrics listener on and a scraper polling GET /metrics every second; \`mcr\` runs with metrics off."
  echo "- $ROUNDS rounds, medians; servers restarted per workload (peak RSS = VmHWM of that workload); order alternates per round." \
    "Client and servers share the $(nproc) cores. Run took ${TOTAL_SECONDS}s, of which ${BUILD_SECONDS}s building mcrsrv."
  echo
  BENCH_BIG_MIB=$BIG_MIB BENCH_CHUNKED_MIB=$CHUNKED_MIB BENCH_CHUNK_MIB=$CHUNK_MIB BENCH_LAYERS=$LAYERS \
    BENCH_LAYER_KIB=$LAYER_KIB BENCH_WRK_CONNS=$WRK_CONNS BENCH_WRK_SECONDS=$WRK_SECONDS BENCH_GC_PUSHERS=$GC_PUSHERS \
    python3 "$HERE/report.py" "$RESULTS" "$GC_JSON"
} >"$OUT"
cat "$OUT"
log "wrote $OUT"
