#!/usr/bin/env bash
# Server-side time of the web UI's repositories page and dashboard on a
# large registry: BENCH_WEB_REPOS repositories (2000) with BENCH_WEB_TAGS
# tags (40000), seeded through the MetaStore port (crates/mcr-cli/examples/
# bench_seed.rs), served by a release mcrsrv and mcr-web on loopback. Each
# page is fetched BENCH_WEB_REQUESTS times (20) after 3 warm-ups; the time
# is mcr-web's own (its request log's duration_ms: the handler, the gRPC
# call to mcrsrv and the store's query, without the client). Prints the
# median and the worst per page. Target: under 100 ms.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
REPOS=${BENCH_WEB_REPOS:-2000}
TAGS=${BENCH_WEB_TAGS:-40000}
REQUESTS=${BENCH_WEB_REQUESTS:-20}
log() { printf '[bench-web %s] %s\n' "$(date +%T)" "$*" >&2; }
fail() { printf '[bench-web] FAIL: %s\n' "$*" >&2; exit 1; }
for v in REPOS TAGS REQUESTS; do [[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -ge 1 ] || fail "$v must be a positive integer"; done
command -v curl >/dev/null || fail "curl is needed (apt-get install curl)"
command -v python3 >/dev/null || fail "python3 is needed"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mcr/target}"
cd "$ROOT"
cargo build --quiet --release -p mcr-cli --bin mcrsrv --bin mcr-web --example bench_seed
BIN="$CARGO_TARGET_DIR/release"

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

log "seeding $REPOS repositories, $TAGS tags"
mkdir -p "$WORK/data"
"$BIN/examples/bench_seed" "$WORK/data/mcr.db" "$REPOS" "$TAGS" >&2
HASH=$(printf 'bench-secret\n' | "$BIN/mcrsrv" hash-password)
REG=$(port); GRPC=$(port); WEB=$(port)
cat >"$WORK/mcr.toml" <<TOML
[server]
listen_addr = "127.0.0.1:$REG"
grpc_addr = "127.0.0.1:$GRPC"
[database]
path = "$WORK/data/mcr.db"
[storage]
layers_path = "$WORK/data/layers"
[[local.users]]
username = "admin"
password_hash = "$HASH"
account_type = "human"
roles = ["admin"]
[web]
listen_addr = "127.0.0.1:$WEB"
grpc_addr = "http://127.0.0.1:$GRPC"
session_key_file = "$WORK/web.key"
TOML
"$BIN/mcrsrv" server --config "$WORK/mcr.toml" >"$WORK/mcrsrv.log" 2>&1 & PIDS+=($!)
"$BIN/mcr-web" server --config "$WORK/mcr.toml" >"$WORK/web.out" 2>"$WORK/web.log" & PIDS+=($!)
# The UI answers before mcrsrv does (its gRPC channel connects lazily):
# wait for both, or the login meets "registry unreachable" (502).
for _ in $(seq 1 300); do curl -sf -o /dev/null "http://127.0.0.1:$REG/v1/health" && break; sleep 0.1; done
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$WEB/login" && break; sleep 0.1; done
J="$WORK/cookies"
CSRF=$(curl -sf -c "$J" "http://127.0.0.1:$WEB/login" | sed -n 's/.*name="csrf" value="\([0-9a-f]*\)".*/\1/p' | head -1)
[ -n "$CSRF" ] || fail "no login form"
CODE=$(curl -s -o /dev/null -w '%{http_code}' -b "$J" -c "$J" --data-urlencode "csrf=$CSRF" \
  --data-urlencode username=admin --data-urlencode password=bench-secret "http://127.0.0.1:$WEB/login")
[ "$CODE" = 303 ] || fail "login answered $CODE"

PAGES=("/" "/repositories" "/repositories?sort=size&order=desc" "/repositories?sort=last_push&order=desc" \
  "/repositories?sort=tags&order=desc&q=repo-01" "/repositories/team-07/repo-0007")
for page in "${PAGES[@]}"; do
  for _ in 1 2 3; do curl -sf -o /dev/null -b "$J" "http://127.0.0.1:$WEB$page" || fail "$page failed"; done
  : >"$WORK/web.log"
  for _ in $(seq 1 "$REQUESTS"); do curl -sf -o /dev/null -b "$J" "http://127.0.0.1:$WEB$page"; done
  sleep 0.2
  python3 - "$page" "$WORK/web.log" <<'PY'
import re, statistics, sys
page, log = sys.argv[1], sys.argv[2]
ms = [float(m) for m in re.findall(r'duration_ms=([0-9.]+)', open(log).read())]
if not ms: sys.exit(f"no timings for {page}")
print(f"{page:48s} median {statistics.median(ms):7.1f} ms   worst {max(ms):7.1f} ms   ({len(ms)} requests)")
PY
done
