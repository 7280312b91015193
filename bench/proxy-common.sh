# What bench/proxy.sh and bench/proxy-stream.sh share: the mcrsrv binary
# (BENCH_MCRSRV, or a release build), CNCF Distribution without auth as
# the upstream, and a fresh `mcrsrv dev` mirror. Sourced after
# scripts/servers.sh (free_port, wait_for, PIDS, $WORK).
# shellcheck shell=bash

# mcrsrv_binary: sets MCRSRV.
mcrsrv_binary() {
  if [ -n "${BENCH_MCRSRV:-}" ]; then
    MCRSRV=$BENCH_MCRSRV
    return
  fi
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mcr/target}"
  cargo build --quiet --release -p mcr-cli --bin mcrsrv
  MCRSRV="$CARGO_TARGET_DIR/release/mcrsrv"
}

# start_distribution: Distribution (Debian `docker-registry`) on a free
# loopback port, storing under $WORK/upstream; sets UP to its host:port.
start_distribution() {
  UP="127.0.0.1:$(free_port)"
  cat >"$WORK/upstream.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $WORK/upstream
http:
  addr: $UP
YAML
  docker-registry serve "$WORK/upstream.yml" >"$WORK/upstream.log" 2>&1 &
  PIDS+=("$!")
  wait_for "http://$UP/v2/" "$!" "$WORK/upstream.log" 300
}

# start_mirror DATA UPSTREAM: `mcrsrv dev` in DATA mirroring UPSTREAM
# (host:port) under the prefix `up`, after stopping the last one; sets
# REG, MCR_PID and CREDS (admin:password).
MCR_PID=""
start_mirror() {
  stop_mirror
  REG="127.0.0.1:$(free_port)"
  "$MCRSRV" dev --data "$1" --listen "$REG" --proxy "up=http://$2" >"$1.log" 2>&1 &
  MCR_PID=$!
  PIDS+=("$MCR_PID")
  wait_for "http://$REG/v2/" "$MCR_PID" "$1.log" 300
  CREDS="admin:$(cat "$1/admin.password")"
}
stop_mirror() {
  if [ -n "$MCR_PID" ]; then
    kill "$MCR_PID" 2>/dev/null && wait "$MCR_PID" 2>/dev/null || true
    MCR_PID=""
  fi
}
