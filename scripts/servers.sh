# Servers an end-to-end or bench script starts on 127.0.0.1: free ports,
# waiting for one to answer, and stopping them all on exit. Sourced; needs
# $WORK (a scratch directory, removed by cleanup) and fail(). The script
# adds each server's pid to PIDS and sets `trap cleanup EXIT`.
# shellcheck shell=bash

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    # wait answers 143 for a process the TERM ended: not a failure here.
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_for URL PID LOGFILE [TRIES]: until URL answers at all, trying every
# 0.1 s, TRIES times (200 unless given); fails showing LOGFILE if the
# server exits first.
wait_for() {
  for _ in $(seq 1 "${4:-200}"); do
    curl -s -o /dev/null "$1" && return 0
    kill -0 "$2" 2>/dev/null || { cat "$3" >&2; fail "the server for $1 exited"; }
    sleep 0.1
  done
  fail "$1 never answered"
}
