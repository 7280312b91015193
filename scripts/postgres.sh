#!/usr/bin/env bash
# A throwaway PostgreSQL server for tests: initdb + pg_ctl in a temporary
# directory, as an unprivileged user, listening on 127.0.0.1 only, on a free
# port, with a random password.
#
#   scripts/postgres.sh start [--watch PID]
#       Starts a server and prints, on stdout, shell assignments:
#         MCR_TEST_POSTGRES_URL='postgres://mcr:<password>@127.0.0.1:<port>/postgres'
#         MCR_TEST_POSTGRES_DIR='/tmp/mcr-postgres.XXXXXX'
#       so `eval "$(scripts/postgres.sh start)"` sets them. The user `mcr`
#       is the cluster's superuser (it may create databases). With
#       `--watch PID`, a detached watcher stops the server and removes its
#       directory once process PID has exited (the Rust tests pass their
#       own pid, so a test run never leaves a server behind, even when it
#       is killed).
#   scripts/postgres.sh stop DIR
#       Stops the server started in DIR and removes DIR.
#
# Installs the Debian package `postgresql` when no initdb is found. Run as
# root, it creates (once) the system user `mcrtest` and runs the server as
# that user, since PostgreSQL refuses to run as root. The cluster is for
# tests: fsync is off, so a crash of the machine may lose it; nothing else
# is relaxed. max_connections is 300 and shared_buffers 32MB (many test
# databases side by side, little memory each); start checks with SHOW that
# the server runs with them. The server log is DIR/server.log. Progress
# and errors go to stderr.
set -euo pipefail

# The settings the server runs with (checked after start).
MAX_CONNECTIONS=300
SHARED_BUFFERS=32MB

log() { printf '[postgres] %s\n' "$*" >&2; }
fail() { printf '[postgres] FAIL: %s\n' "$*" >&2; exit 1; }

# The directory holding initdb and pg_ctl: the PATH's, else the newest
# Debian install, else one installed now.
find_bindir() {
  local initdb
  if initdb=$(command -v initdb 2>/dev/null); then
    dirname "$(readlink -f "$initdb")"
    return
  fi
  local newest
  newest=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$newest" ]; then
    log "installing the Debian package postgresql"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq >/dev/null
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    newest=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  fi
  [ -n "$newest" ] && [ -x "$newest/initdb" ] || fail "no initdb after installing postgresql"
  echo "$newest"
}

# The user the server runs as: ourselves, or `mcrtest` when we are root.
RUN_AS=""
as_server_user() {
  if [ -n "$RUN_AS" ]; then
    runuser -u "$RUN_AS" -- "$@"
  else
    "$@"
  fi
}

server_user() {
  [ "$(id -u)" -eq 0 ] || return 0
  if ! id mcrtest >/dev/null 2>&1; then
    log "creating the system user mcrtest"
    # Several test processes may race to create it; one wins.
    useradd --system --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin mcrtest 2>/dev/null || id mcrtest >/dev/null 2>&1 \
      || fail "could not create the system user mcrtest"
  fi
  RUN_AS=mcrtest
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo $(( 20000 + RANDOM % 40000 ))
}

stop() {
  local dir=$1
  [ -f "$dir/data/PG_VERSION" ] || fail "$dir holds no cluster"
  local bindir; bindir=$(cat "$dir/bindir")
  server_user
  as_server_user "$bindir/pg_ctl" stop -D "$dir/data" -m fast -w >/dev/null 2>&1 || true
  rm -rf "$dir"
}

start() {
  local watch=""
  while [ $# -gt 0 ]; do
    case $1 in
      --watch) watch=${2:?--watch needs a pid}; shift 2 ;;
      *) fail "unknown argument $1" ;;
    esac
  done
  local bindir; bindir=$(find_bindir)
  server_user
  local dir; dir=$(mktemp -d "${TMPDIR:-/tmp}/mcr-postgres.XXXXXX")
  echo "$bindir" >"$dir/bindir"
  local password; password=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  printf '%s\n' "$password" >"$dir/password"
  chmod 700 "$dir"
  chmod 600 "$dir/password"
  [ -z "$RUN_AS" ] || chown -R "$RUN_AS" "$dir"

  as_server_user "$bindir/initdb" -D "$dir/data" -U mcr --pwfile="$dir/password" \
    --auth=scram-sha-256 -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; rm -rf "$dir"; fail "initdb failed"; }
  rm -f "$dir/password"

  # The settings go into postgresql.auto.conf, not pg_ctl's -o: pg_ctl
  # runs `exec postgres <-o> >> log` through /bin/sh, so a newline in -o
  # ends the command and silently drops the options after it and the log
  # redirection. Only the port, which may change between tries, stays in -o.
  as_server_user tee -a "$dir/data/postgresql.auto.conf" >/dev/null <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = off
max_connections = $MAX_CONNECTIONS
shared_buffers = '$SHARED_BUFFERS'
CONF

  # A port another process takes between our probe and the server's bind
  # makes the start fail: try a few.
  local port started=""
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    if as_server_user "$bindir/pg_ctl" start -D "$dir/data" -w -t 60 -l "$dir/server.log" \
      -o "-p $port" >/dev/null 2>&1; then
      started=1
      break
    fi
    grep -q "could not bind\|Address already in use" "$dir/server.log" 2>/dev/null \
      || { cat "$dir/server.log" >&2; rm -rf "$dir"; fail "pg_ctl start failed"; }
  done
  [ -n "$started" ] || { rm -rf "$dir"; fail "no free port after 5 tries"; }

  # What the server runs with, asked of the server itself: a setting that
  # did not take (or a server log that is missing) fails the start.
  local got
  got=$(PGPASSWORD=$password "$bindir/psql" -qAt -h 127.0.0.1 -p "$port" -U mcr -d postgres \
    -c 'SHOW fsync' -c 'SHOW max_connections' -c 'SHOW shared_buffers' -c 'SHOW listen_addresses' 2>&1 \
    | tr '\n' ' ') || true
  if [ "$got" != "off $MAX_CONNECTIONS $SHARED_BUFFERS 127.0.0.1 " ] || [ ! -s "$dir/server.log" ]; then
    as_server_user "$bindir/pg_ctl" stop -D "$dir/data" -m fast -w >/dev/null 2>&1 || true
    rm -rf "$dir"
    fail "the server runs with fsync, max_connections, shared_buffers, listen_addresses = $got (want off $MAX_CONNECTIONS $SHARED_BUFFERS 127.0.0.1) or wrote no log"
  fi
  log "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, data in $dir (as ${RUN_AS:-$(id -un)}; fsync off, max_connections $MAX_CONNECTIONS, shared_buffers $SHARED_BUFFERS; log $dir/server.log)"

  if [ -n "$watch" ]; then
    # Detached, and holding none of our stdio: whoever reads our stdout
    # sees it end as soon as we exit.
    setsid bash -c '
      while kill -0 "$1" 2>/dev/null; do sleep 1; done
      exec "$2" stop "$3"
    ' watcher "$watch" "$(readlink -f "$0")" "$dir" </dev/null >/dev/null 2>&1 &
  fi

  printf "MCR_TEST_POSTGRES_URL='postgres://mcr:%s@127.0.0.1:%s/postgres'\n" "$password" "$port"
  printf "MCR_TEST_POSTGRES_DIR='%s'\n" "$dir"
}

case ${1:-} in
  start) shift; start "$@" ;;
  stop) [ $# -eq 2 ] || fail "usage: $0 stop DIR"; stop "$2" ;;
  *) fail "usage: $0 start [--watch PID] | stop DIR" ;;
esac
