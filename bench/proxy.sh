#!/usr/bin/env bash
# The pull-through cache's cost: an image pulled with skopeo straight from
# the upstream (CNCF Distribution, no auth), through a cold MCR mirror
# (nothing cached: every manifest and blob fetched and stored on the way)
# and through the warm mirror (everything answered locally), and the time
# to first byte and to the last of a cold layer GET (the fill streams the
# layer to the client while it stores it). One image of BENCH_PROXY_LAYERS
# layers of BENCH_PROXY_LAYER_MIB MiB each; BENCH_PROXY_ROUNDS rounds, each
# with a fresh mirror (a new data directory) so "cold" is cold; the
# medians go to BENCH_OUT (bench/results/proxy.md). Not a test: numbers
# mean something only on a quiet machine (bench/README.md). BENCH_MCRSRV
# names the mcrsrv binary (default: a release build).
#
# Every loop is bounded in count and every client call in time; the
# servers are stopped on exit.
set -euo pipefail
shopt -s inherit_errexit

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
cd "$ROOT"

ROUNDS=${BENCH_PROXY_ROUNDS:-3}
LAYERS=${BENCH_PROXY_LAYERS:-2}
LAYER_MIB=${BENCH_PROXY_LAYER_MIB:-256}
OUT=${BENCH_OUT:-$HERE/results/proxy.md}
CALL_SECONDS=600

log() { printf '[bench-proxy %s] %s\n' "$(date +%T)" "$*" >&2; }
fail() { printf '[bench-proxy] FAIL: %s\n' "$*" >&2; exit 1; }
int_in() { # NAME VALUE MIN MAX
  [[ $2 =~ ^[0-9]+$ ]] && [ "$2" -ge "$3" ] && [ "$2" -le "$4" ] || fail "$1=$2 must be an integer in $3..$4"
}
int_in BENCH_PROXY_ROUNDS "$ROUNDS" 1 9
int_in BENCH_PROXY_LAYERS "$LAYERS" 1 64
int_in BENCH_PROXY_LAYER_MIB "$LAYER_MIB" 1 4096

# shellcheck source=scripts/need.sh
source "scripts/need.sh"
need skopeo curl jq python3 docker-registry


WORK=$(mktemp -d)
# shellcheck source=scripts/servers.sh
source "scripts/servers.sh"
trap cleanup EXIT
# shellcheck source=scripts/oci_layout.sh
source "scripts/oci_layout.sh"
now_ms() { date +%s%3N; }
SK=(timeout "$CALL_SECONDS" skopeo --insecure-policy)

# --- the upstream: CNCF Distribution, no auth ---------------------------------
# shellcheck source=bench/proxy-common.sh
source "bench/proxy-common.sh"
mcrsrv_binary
start_distribution

IMG="$WORK/img"
read -r MHEX MSIZE < <(make_image "$IMG" amd64 "$LAYERS" $((LAYER_MIB * 1024)))
write_index "$IMG" v1 application/vnd.oci.image.manifest.v1+json "$MHEX" "$MSIZE"
"${SK[@]}" copy --quiet --preserve-digests --dest-tls-verify=false "oci:$IMG:v1" "docker://$UP/bench/img:v1"
LAYER=$(jq -r '.layers[0].digest' "$IMG/blobs/sha256/$MHEX")
log "upstream $UP holds bench/img:v1 ($LAYERS x $LAYER_MIB MiB)"

# pull_ms SOURCE [skopeo source flags...]: milliseconds to copy the image
# into a fresh OCI layout
pull_ms() {
  local src=$1 dest t0
  shift
  dest="$WORK/pulled"
  rm -rf "$dest"
  t0=$(now_ms)
  "${SK[@]}" copy --quiet "$@" "$src" "oci:$dest:v1" || fail "pulling $src failed"
  echo $(( $(now_ms) - t0 ))
}

declare -A RESULTS
for round in $(seq 1 "$ROUNDS"); do
  RESULTS[direct]+=" $(pull_ms "docker://$UP/bench/img:v1" --src-tls-verify=false)"
  start_mirror "$WORK/mcr-$round-pull" "$UP"
  SRC=(--src-tls-verify=false --src-creds "$CREDS")
  RESULTS[cold]+=" $(pull_ms "docker://$REG/up/bench/img:v1" "${SRC[@]}")"
  RESULTS[warm]+=" $(pull_ms "docker://$REG/up/bench/img:v1" "${SRC[@]}")"
  start_mirror "$WORK/mcr-$round-blob" "$UP"
  TOKEN=$(curl -sf -u "$CREDS" "http://$REG/v2/token?service=mcr&scope=repository:up/bench/img:pull" | jq -r .token)
  read -r TTFB TOTAL < <(curl -sf --max-time "$CALL_SECONDS" -o /dev/null -H "Authorization: Bearer $TOKEN" \
    -w '%{time_starttransfer} %{time_total}\n' "http://$REG/v2/up/bench/img/blobs/$LAYER") || fail "the cold layer GET failed"
  RESULTS[ttfb]+=" $(python3 -c "print(round($TTFB * 1000))")"
  RESULTS[layer]+=" $(python3 -c "print(round($TOTAL * 1000))")"
  stop_mirror
  rm -rf "$WORK/mcr-$round-pull" "$WORK/mcr-$round-blob"
  log "round $round: direct${RESULTS[direct]##* } cold${RESULTS[cold]##* } warm${RESULTS[warm]##* } ms; cold layer first byte${RESULTS[ttfb]##* } ms, all${RESULTS[layer]##* } ms"
done

median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
MIB=$((LAYERS * LAYER_MIB))
{
  echo "# Pull-through cache ($(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
  echo
  echo "One image of $LAYERS layers of $LAYER_MIB MiB ($MIB MiB), skopeo into an OCI layout, medians of $ROUNDS rounds (ms)."
  echo "Upstream: CNCF Distribution $(docker-registry --version 2>/dev/null | awk '{print $NF}'), no auth, on loopback."
  echo
  echo "| pull | median ms | vs direct |"
  echo "|---|---|---|"
  D=$(median "${RESULTS[direct]}")
  for k in direct cold warm; do
    M=$(median "${RESULTS[$k]}")
    echo "| $k | $M | $(python3 -c "print(f'{$M / max($D, 1):.2f}x')") |"
  done
  echo
  echo "Cold $LAYER_MIB MiB layer GET through the mirror: first byte $(median "${RESULTS[ttfb]}") ms, last byte $(median "${RESULTS[layer]}") ms."
} >"$OUT"
log "wrote $OUT"
cat "$OUT"
