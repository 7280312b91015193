#!/usr/bin/env bash
# Garage, the S3-protocol object store the S3 blob store is tested on: a
# single-node cluster on 127.0.0.1, in a directory of the caller's.
#
#   scripts/garage.sh start DIR [PARENT_PID]
#       Builds Garage into $HOME/.cache/mcr/garage once (about 20 minutes on
#       2 cores; later runs reuse it), writes DIR/garage.toml (free loopback
#       ports, db_engine = "sqlite"), starts the server, applies a layout,
#       imports a key and creates the bucket `mcr`. Prints the environment
#       for tests and mcrsrv as KEY=VALUE lines (also in DIR/env). With
#       PARENT_PID, the server is stopped when that process ends.
#   scripts/garage.sh bucket DIR NAME
#       Creates one more bucket the key may read, write and own.
#   scripts/garage.sh read-key DIR
#       Imports a second key that may only read bucket `mcr`; prints its
#       id and secret on one line (for the test that mcrsrv refuses it).
#   scripts/garage.sh stop DIR
#       Stops the server and waits for it to exit. DIR stays: the caller
#       removes it.
#
# docs/s3.md walks through the same steps by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[garage] %s\n' "$*" >&2; }
fail() { printf '[garage] FAIL: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/need.sh
source "scripts/need.sh"

GARAGE_VERSION=2.5.0
CACHE="$HOME/.cache/mcr"
GARAGE="$CACHE/garage/bin/garage"
KEY_NAME=mcr-test

# Builds Garage into the cache unless it is there. Under a lock, so two
# test runs never build it twice; cargo's own lock on the target directory
# also makes a build started by hand wait for this one (and vice versa).
install_garage() {
  [ -x "$GARAGE" ] && return 0
  mkdir -p "$CACHE"
  exec 9>"$CACHE/garage.lock"
  flock 9
  if [ ! -x "$GARAGE" ]; then
    command -v cargo >/dev/null || fail "cargo is needed to build Garage"
    need cc:build-essential
    log "building Garage $GARAGE_VERSION into $CACHE/garage (once; about 20 minutes on 2 cores)"
    cargo install garage --version "$GARAGE_VERSION" --locked \
      --no-default-features --features bundled-libs,sqlite \
      --root "$CACHE/garage" --target-dir "$CACHE/garage-build" >&2
  fi
  flock -u 9
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

cli() { "$GARAGE" -c "$DIR/garage.toml" "$@"; }

start() {
  need python3 openssl curl
  install_garage
  mkdir -p "$DIR/meta" "$DIR/data"
  local s3_port rpc_port
  s3_port=$(free_port)
  rpc_port=$(free_port)
  # The RPC secret and the key are fresh for every cluster: nothing here
  # outlives the test.
  cat >"$DIR/garage.toml" <<EOF
metadata_dir = "$DIR/meta"
data_dir = "$DIR/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(openssl rand -hex 32)"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
EOF
  chmod 600 "$DIR/garage.toml"
  RUST_LOG=warn "$GARAGE" -c "$DIR/garage.toml" server >"$DIR/garage.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$DIR/garage.pid"
  if [ -n "${PARENT:-}" ]; then
    # Stops the server when the test that started it is gone, even if it
    # was killed before it could say so.
    (
      while kill -0 "$PARENT" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done
      kill "$pid" 2>/dev/null || true
    ) </dev/null >/dev/null 2>&1 &
  fi
  # `node id` reads the key on disk; `status` needs the RPC listener up.
  local up=""
  for _ in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || { cat "$DIR/garage.log" >&2; fail "garage exited"; }
    cli status >/dev/null 2>&1 && { up=1; break; }
    sleep 0.1
  done
  [ -n "$up" ] || { cat "$DIR/garage.log" >&2; fail "garage did not answer on RPC within 20 s"; }
  local node
  node=$(cli node id -q)
  cli layout assign -z dc1 -c 1G "${node%%@*}" >/dev/null
  cli layout apply --version 1 >/dev/null
  local key key_id secret
  key=$(new_key "$KEY_NAME")
  read -r key_id secret <<<"$key"
  bucket mcr
  # The S3 API answers once the layout is in place.
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$s3_port/" && break
    sleep 0.1
  done
  cat >"$DIR/env" <<EOF
MCR_STORAGE_BACKEND=s3
MCR_STORAGE_S3_ENDPOINT=http://127.0.0.1:$s3_port
MCR_STORAGE_S3_BUCKET=mcr
MCR_STORAGE_S3_REGION=garage
AWS_ACCESS_KEY_ID=$key_id
AWS_SECRET_ACCESS_KEY=$secret
EOF
  chmod 600 "$DIR/env"
  cat "$DIR/env"
}

bucket() {
  cli bucket create "$1" >/dev/null
  cli bucket allow --read --write --owner "$1" --key "$KEY_NAME" >/dev/null
}

# new_key NAME: imports a fresh key named NAME; prints "ID SECRET".
new_key() {
  local key_id secret
  key_id="GK$(openssl rand -hex 12)"
  secret=$(openssl rand -hex 32)
  cli key import --yes -n "$1" "$key_id" "$secret" >/dev/null
  echo "$key_id $secret"
}

read_key() {
  new_key mcr-read
  cli bucket allow --read mcr --key mcr-read >/dev/null
}

stop() {
  [ -f "$DIR/garage.pid" ] || return 0
  local pid
  pid=$(cat "$DIR/garage.pid")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/garage.pid"
}

usage() { fail "usage: $0 start DIR [PARENT_PID] | bucket DIR NAME | read-key DIR | stop DIR"; }

[ $# -ge 2 ] || usage
DIR=$(cd "$2" && pwd)
case "$1" in
  start) PARENT="${3:-}"; start ;;
  bucket) [ $# -eq 3 ] || usage; bucket "$3" ;;
  read-key) read_key ;;
  stop) stop ;;
  *) usage ;;
esac
