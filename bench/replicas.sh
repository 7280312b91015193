#!/usr/bin/env bash
# One mcrsrv (SQLite + files) against three replicas (PostgreSQL + Garage
# behind nginx round robin), same workload, one run: push throughput
# (skopeo, one image of BENCH_R_LAYERS layers), manifest GET and 1 MiB
# blob GET rates (wrk, bearer token, BENCH_R_WRK_SECONDS each). Prints a
# Markdown table and writes it to bench/results/replicas.md.
#
#   bench/replicas.sh                 the lead's run (quiet machine)
#   BENCH_R_SMOKE=1 bench/replicas.sh a few seconds per row, to check it works
#
# The replicas are scripts/cluster.sh's, as in scripts/replicas.sh;
# BENCH_R_STORAGE=fs puts their blobs in a shared directory instead of
# Garage. Every client call is bounded in time; everything started is
# stopped on exit.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
cd "$HERE/.."

log() { printf '[bench-replicas %s] %s\n' "$(date +%T)" "$*" >&2; }
fail() { printf '[bench-replicas] FAIL: %s\n' "$*" >&2; exit 1; }

ROUNDS=${BENCH_R_ROUNDS:-3}
LAYERS=${BENCH_R_LAYERS:-20}
LAYER_KIB=${BENCH_R_LAYER_KIB:-1024}
WRK_SECONDS=${BENCH_R_WRK_SECONDS:-10}
WRK_CONNS=${BENCH_R_WRK_CONNS:-32}
STORAGE=${BENCH_R_STORAGE:-s3}
OUT=${BENCH_R_OUT:-$HERE/results/replicas.md}
if [ "${BENCH_R_SMOKE:-0}" = 1 ]; then
  ROUNDS=1 LAYERS=3 LAYER_KIB=256 WRK_SECONDS=2 WRK_CONNS=4
  OUT=${BENCH_R_OUT:-/dev/null}
fi
for v in ROUNDS:1:9 LAYERS:1:500 LAYER_KIB:1:65536 WRK_SECONDS:1:120 WRK_CONNS:1:1024; do
  IFS=: read -r name lo hi <<<"$v"
  val=${!name}
  { [[ $val =~ ^[0-9]+$ ]] && [ "$val" -ge "$lo" ] && [ "$val" -le "$hi" ]; } || fail "BENCH_R_$name=$val must be an integer in $lo..$hi"
done

# shellcheck source=scripts/need.sh
source scripts/need.sh
# shellcheck source=scripts/cluster.sh
source scripts/cluster.sh
need wrk skopeo curl jq python3 nginx

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mcr/target}"
if [ -z "${MCRSRV:-}" ]; then
  cargo build --quiet --release -p mcr-cli --bin mcrsrv
  MCRSRV="$CARGO_TARGET_DIR/release/mcrsrv"
fi

WORK=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/mcr-bench-replicas.XXXXXX")
SINGLE_PID=""
cleanup() {
  [ -n "$SINGLE_PID" ] && kill "$SINGLE_PID" 2>/dev/null && wait "$SINGLE_PID" 2>/dev/null
  cluster_down
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- the two setups ----------------------------------------------------------
SINGLE="127.0.0.1:$(cluster_free_port)"
"$MCRSRV" dev --data "$WORK/single" --listen "$SINGLE" >"$WORK/single.log" 2>&1 &
SINGLE_PID=$!
for _ in $(seq 1 300); do
  curl -s -o /dev/null "http://$SINGLE/v2/" && break
  kill -0 "$SINGLE_PID" 2>/dev/null || { cat "$WORK/single.log" >&2; fail "mcrsrv dev exited"; }
  sleep 0.1
done
SINGLE_CREDS="admin:$(cat "$WORK/single/admin.password")"
NGINX_KEEPALIVE=64 cluster_up "$STORAGE" 3 3600

# --- the image ---------------------------------------------------------------
python3 bench/mklayout.py "$WORK/img" t "$LAYERS" $((LAYER_KIB * 1024)) >"$WORK/manifest"
IMAGE_BYTES=$(du -sb "$WORK/img/blobs" | cut -f1)
ONE_MIB="$WORK/one-mib"
head -c 1048576 /dev/urandom >"$ONE_MIB"
ONE_MIB_DIGEST="sha256:$(sha256sum "$ONE_MIB" | cut -d' ' -f1)"

# setup NAME -> "host:port user:password"
endpoint() { case $1 in single) echo "$SINGLE $SINGLE_CREDS" ;; replicas) echo "$LB $CREDS" ;; esac; }

token() { # HOST CREDS REPO
  curl -sf --max-time 30 -u "$2" "http://$1/v2/token?service=mcr&scope=repository:$3:pull,push" | jq -r .token
}

results="$WORK/results"
: >"$results"
record() { echo "$1 $2 $3" >>"$results"; } # SETUP METRIC VALUE

push_round() { # SETUP ROUND
  local host creds start end
  read -r host creds < <(endpoint "$1")
  start=$(date +%s.%N)
  timeout 600 skopeo --insecure-policy copy --quiet --dest-tls-verify=false --dest-creds "$creds" \
    "oci:$WORK/img:t" "docker://$host/bench/push$2:t" || fail "push to $1 failed"
  end=$(date +%s.%N)
  record "$1" push_mibps "$(awk -v b="$IMAGE_BYTES" -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", b / 1048576 / (e - s) }')"
}

# CPU time (user + system, clock ticks) of every process, summed by
# command name: "comm ticks" lines. A difference over a wrk run says where
# a request's CPU went (mcrsrv, garage, nginx, postgres, wrk), which holds
# whatever else the machine is doing, unlike the rates.
cpu_by_comm() {
  python3 - <<'PY'
import os, collections
ticks = collections.Counter()
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        stat = open(f'/proc/{pid}/stat').read()
    except OSError:
        continue
    comm = stat[stat.index('(') + 1:stat.rindex(')')]
    fields = stat[stat.rindex(')') + 2:].split()
    ticks[comm.split('/')[0]] += int(fields[11]) + int(fields[12])
for comm, t in ticks.items():
    print(comm.replace(' ', '_'), t)
PY
}

wrk_rate() { # SETUP METRIC URL_PATH TOKEN ACCEPT
  local host out rate requests before after
  read -r host _ < <(endpoint "$1")
  before=$(cpu_by_comm)
  out=$(timeout $((WRK_SECONDS + 30)) wrk -t2 -c"$WRK_CONNS" -d"${WRK_SECONDS}s" \
    -H "Authorization: Bearer $4" -H "Accept: $5" "http://$host$3") || fail "wrk against $1 failed"
  after=$(cpu_by_comm)
  if grep -q "Non-2xx" <<<"$out"; then fail "$1 answered errors under wrk: $out"; fi
  rate=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' <<<"$out")
  requests=$(awk '/ requests in / { print $1 }' <<<"$out")
  record "$1" "$2" "$rate"
  # CPU ms per request by process, for the processes that used any.
  awk -v setup="$1" -v metric="$2" -v n="$requests" -v hz="$(getconf CLK_TCK)" '
    NR == FNR { before[$1] = $2; next }
    { d = $2 - before[$1]; if (d > 0 && n > 0) printf "%s cpu:%s:%s %.4f\n", setup, metric, $1, d * 1000 / hz / n }
  ' <(echo "$before") <(echo "$after") >>"$results"
}

for setup in single replicas; do
  read -r host creds < <(endpoint "$setup")
  # The 1 MiB blob and the image the GET rows read.
  t=$(token "$host" "$creds" bench/get)
  loc=$(curl -sf --max-time 60 -D - -o /dev/null -X POST -H "Authorization: Bearer $t" \
    "http://$host/v2/bench/get/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:" {print $2}')
  case $loc in /*) loc="http://$host$loc" ;; esac
  case $loc in *\?*) loc="$loc&digest=$ONE_MIB_DIGEST" ;; *) loc="$loc?digest=$ONE_MIB_DIGEST" ;; esac
  code=$(curl -s --max-time 60 -o /dev/null -w '%{http_code}' -X PUT -H "Authorization: Bearer $t" \
    -H 'Content-Type: application/octet-stream' --data-binary @"$ONE_MIB" "$loc")
  [ "$code" = 201 ] || fail "uploading the 1 MiB blob to $setup answered $code"
  timeout 600 skopeo --insecure-policy copy --quiet --dest-tls-verify=false --dest-creds "$creds" \
    "oci:$WORK/img:t" "docker://$host/bench/get:t" || fail "push to $setup failed"
done

for round in $(seq 1 "$ROUNDS"); do
  # Alternate which setup goes first, so neither always gets a warm cache.
  if [ $((round % 2)) -eq 1 ]; then order="single replicas"; else order="replicas single"; fi
  for setup in $order; do
    log "round $round: $setup"
    push_round "$setup" "$round"
    read -r host creds < <(endpoint "$setup")
    t=$(token "$host" "$creds" bench/get)
    wrk_rate "$setup" manifest_get_rps /v2/bench/get/manifests/t "$t" application/vnd.oci.image.manifest.v1+json
    wrk_rate "$setup" blob_1mib_get_rps "/v2/bench/get/blobs/$ONE_MIB_DIGEST" "$t" '*/*'
  done
done

# --- the report ----------------------------------------------------------------
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
value() { awk -v s="$1" -v m="$2" '$1 == s && $2 == m { print $3 }' "$results" | median; }
{
  echo "# One mcrsrv vs three replicas"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); medians of $ROUNDS rounds."
  echo "single: mcrsrv dev (SQLite + files). replicas: 3 × mcrsrv server on PostgreSQL + $STORAGE blobs behind nginx round robin (keepalive 64)."
  echo "Push: skopeo, $LAYERS layers × $LAYER_KIB KiB. GETs: wrk -t2 -c$WRK_CONNS for ${WRK_SECONDS}s with a bearer token."
  echo
  echo "| workload | single | replicas | replicas/single |"
  echo "|---|---|---|---|"
  for m in push_mibps:"push (MiB/s)" manifest_get_rps:"manifest GET (req/s)" blob_1mib_get_rps:"1 MiB blob GET (req/s)"; do
    s=$(value single "${m%%:*}")
    r=$(value replicas "${m%%:*}")
    echo "| ${m#*:} | $s | $r | $(awk -v a="$r" -v b="$s" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }') |"
  done
  echo
  echo "CPU ms per request by process during the GET rows (user + system time from /proc, medians; mcrsrv, garage, nginx and postgres; under 0.005 ms left out):"
  echo
  echo "| workload | setup | process | CPU ms/request |"
  echo "|---|---|---|---|"
  for m in manifest_get_rps:"manifest GET" blob_1mib_get_rps:"1 MiB blob GET"; do
    for setup in single replicas; do
      # The setups' own processes; anything else running (a build) is
      # the machine's noise, not the registry's cost.
      for comm in mcrsrv garage nginx postgres; do
        v=$(value "$setup" "cpu:${m%%:*}:$comm")
        if [ -n "$v" ] && awk -v v="$v" 'BEGIN { exit !(v >= 0.005) }'; then
          echo "| ${m#*:} | $setup | $comm | $v |"
        fi
      done
    done
  done
} >"$WORK/report.md"
cat "$WORK/report.md"
[ "$OUT" = /dev/null ] || { mkdir -p "$(dirname "$OUT")"; cp "$WORK/report.md" "$OUT"; log "written to $OUT"; }
