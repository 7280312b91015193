# MCR as replicas, for scripts/replicas.sh and bench/replicas.sh: one
# PostgreSQL (scripts/postgres.sh), one blob store (Garage through
# scripts/garage.sh, or a directory the replicas share), N `mcrsrv server`
# replicas on free loopback ports, and nginx round robin in front of them.
#
# Sourced. The caller defines log and fail, sets WORK (a temporary
# directory it removes) and MCRSRV (the binary), sources scripts/need.sh,
# and calls, in order:
#   cluster_up STORAGE N GRACE   STORAGE s3 | fs; N replicas; GC grace
#                                period in seconds. Sets LB (nginx's
#                                host:port), PORTS[i] and PIDS[i] (each
#                                replica's), CREDS (user:password of the
#                                admin), DB_URL.
#   cluster_down                 stops everything cluster_up started (from
#                                the caller's EXIT trap).
# and may use replica_start I / replica_wait I (to restart a replica it
# killed), sql STATEMENT (a psql query on the database, unaligned rows),
# served_by I (requests nginx passed to replica I so far), replica_run I
# URL (replica I in the foreground on database URL), bucket_blobs (the
# digests in Garage's bucket), s3_keys PREFIX and s3_multipart_uploads
# (STORAGE s3 only).
# NGINX_KEEPALIVE=N keeps N idle connections to the replicas (a benchmark
# wants them; a test that kills replicas does not).
# shellcheck shell=bash

PORTS=()
PIDS=()
NGINX_PID=""
GARAGE_DIR=""
CLUSTER_PG_DIR=""

cluster_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# replica_env URL: exports what a replica reads from the environment, as an
# operator keeps secrets out of the file: the bucket's credentials (the
# standard AWS_* variables; where the bucket is comes from the config's
# [storage.s3]) and the database URL (with its password). Call it in a
# subshell.
replica_env() {
  if [ -n "$GARAGE_DIR" ]; then
    export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
    AWS_ACCESS_KEY_ID=$(garage_var AWS_ACCESS_KEY_ID)
    AWS_SECRET_ACCESS_KEY=$(garage_var AWS_SECRET_ACCESS_KEY)
  fi
  export MCR_DATABASE_URL="$1"
}

# garage_var NAME: a value scripts/garage.sh wrote to its env file.
garage_var() { sed -n "s/^$1=//p" "$GARAGE_DIR/env"; }

# s3_get QUERY: GET on Garage's bucket with QUERY, signed by curl (SigV4),
# printing the XML answer: the bucket seen over S3 itself, not through mcrsrv.
s3_get() {
  curl -sf --aws-sigv4 "aws:amz:$(garage_var MCR_STORAGE_S3_REGION):s3" \
    --user "$(garage_var AWS_ACCESS_KEY_ID):$(garage_var AWS_SECRET_ACCESS_KEY)" \
    -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
    "$(garage_var MCR_STORAGE_S3_ENDPOINT)/$(garage_var MCR_STORAGE_S3_BUCKET)?$1" \
    || fail "GET ?$1 on the bucket failed"
}

# s3_keys PREFIX: the keys under PREFIX in Garage's bucket, one a line
# (ListObjectsV2, every page).
s3_keys() {
  local token="" page
  while :; do
    page=$(s3_get "list-type=2&prefix=$(s3_quote "$1")${token:+&continuation-token=$(s3_quote "$token")}")
    s3_xml "$page" "s3:Contents/s3:Key"
    token=$(s3_xml "$page" "s3:NextContinuationToken")
    [ -n "$token" ] || break
  done
}

# s3_multipart_uploads: the keys of multipart uploads in progress in
# Garage's bucket (ListMultipartUploads, first 1000).
s3_multipart_uploads() { s3_xml "$(s3_get "uploads=")" "s3:Upload/s3:Key"; }

s3_quote() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }

# s3_xml XML PATH: the text of each element at PATH of an S3 answer.
s3_xml() {
  python3 -c '
import sys, xml.etree.ElementTree as ET
for e in ET.fromstring(sys.argv[1]).iterfind(sys.argv[2], {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}):
    print(e.text)
' "$1" "$2"
}

# bucket_blobs: the digests under blobs/ in Garage's bucket, sorted.
bucket_blobs() { s3_keys blobs/ | awk -F/ '{print $2 ":" $3}' | sort -u; }

# replica_run I URL: runs replica I in the foreground on database URL.
replica_run() {
  (
    replica_env "$2"
    exec "$MCRSRV" server --config "$WORK/r$1/mcr.toml"
  )
}

# replica_start I: starts replica I in the background; PIDS[I] is mcrsrv's.
replica_start() {
  (
    replica_env "$DB_URL"
    exec "$MCRSRV" server --config "$WORK/r$1/mcr.toml"
  ) >>"$WORK/r$1/log" 2>&1 &
  PIDS[$1]=$!
}

replica_wait() {
  local i=$1
  for _ in $(seq 1 300); do
    curl -s -o /dev/null "http://127.0.0.1:${PORTS[$i]}/v2/" && return 0
    kill -0 "${PIDS[$i]}" 2>/dev/null || { cat "$WORK/r$i/log" >&2; fail "replica $i exited"; }
    sleep 0.1
  done
  cat "$WORK/r$i/log" >&2
  fail "replica $i did not answer within 30 s"
}

sql() { "$PSQL" -qAt "$DB_URL" -c "$1"; }

served_by() { grep -c " 127.0.0.1:${PORTS[$1]} " "$WORK/nginx/access.log" || true; }

cluster_up() {
  local storage=$1 n=$2 grace=$3 i
  need curl nginx python3
  eval "$(scripts/postgres.sh start --watch $$)"
  CLUSTER_PG_DIR=$MCR_TEST_POSTGRES_DIR
  PSQL="$(cat "$CLUSTER_PG_DIR/bindir")/psql"
  [ -x "$PSQL" ] || PSQL=psql
  "$PSQL" -q "$MCR_TEST_POSTGRES_URL" -c 'CREATE DATABASE mcr' >/dev/null
  DB_URL="${MCR_TEST_POSTGRES_URL%/*}/mcr"

  local storage_toml
  case $storage in
    s3)
      GARAGE_DIR="$WORK/garage"
      mkdir -p "$GARAGE_DIR"
      scripts/garage.sh start "$GARAGE_DIR" $$ >/dev/null
      storage_toml="[storage]
backend = \"s3\"
[storage.s3]
endpoint = \"$(garage_var MCR_STORAGE_S3_ENDPOINT)\"
bucket = \"$(garage_var MCR_STORAGE_S3_BUCKET)\"
region = \"$(garage_var MCR_STORAGE_S3_REGION)\""
      log "blobs on Garage ($(grep ENDPOINT "$GARAGE_DIR/env"))"
      ;;
    fs)
      storage_toml="[storage]
layers_path = \"$WORK/shared/layers\"
uploads_path = \"$WORK/shared/uploads\""
      log "blobs in one directory the replicas share ($WORK/shared)"
      ;;
    *) fail "the blob store must be s3 or fs, not $storage" ;;
  esac

  local password hash
  password=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
  hash=$(printf '%s\n' "$password" | "$MCRSRV" hash-password)
  # shellcheck disable=SC2034 # the caller's
  CREDS="admin:$password"
  LB="127.0.0.1:$(cluster_free_port)"
  for ((i = 0; i < n; i++)); do
    PORTS[i]=$(cluster_free_port)
    mkdir -p "$WORK/r$i"
    cat >"$WORK/r$i/mcr.toml" <<TOML
[server]
listen_addr = "127.0.0.1:${PORTS[$i]}"
external_url = "http://$LB"
# One admin drives every request here (the benchmark's wrk thousands a
# second): no per-principal rate limit, as in mcrsrv dev. The limit has
# its own tests (mcr-http tests/limits.rs).
rate_limit = 0
$storage_toml
[gc]
grace_period = "${grace}s"
[local]
key_path = "$WORK/token.key"
[[local.users]]
username = "admin"
password_hash = "$hash"
account_type = "human"
roles = ["admin"]
TOML
  done
  # All at once: they race to migrate the schema and to make the key.
  for ((i = 0; i < n; i++)); do replica_start "$i"; done
  for ((i = 0; i < n; i++)); do replica_wait "$i"; done
  log "$n replicas on ports ${PORTS[*]}, one PostgreSQL database"

  # The load balancer docs/replicas.md gives for production, on loopback
  # and with its files under WORK. Blobs stream both ways: no size limit
  # and no buffering to disk in nginx, but relayed in 256 KiB pieces (the
  # default 4 KiB proxy buffer cost nginx 1.16 instead of 0.35 ms of CPU
  # per 1 MiB GET, bench/README.md "Where the time goes"). A replica that
  # refuses connections is skipped for 2 s. The finishing PUT of a large
  # upload on S3 answers only after the multipart upload completed and the
  # object was copied into blobs/, hence the long read timeout.
  mkdir -p "$WORK/nginx/tmp"
  chmod 777 "$WORK/nginx/tmp"
  local upstreams="" p
  for p in "${PORTS[@]}"; do upstreams+="    server 127.0.0.1:$p max_fails=1 fail_timeout=2s;"$'\n'; done
  cat >"$WORK/nginx/nginx.conf" <<NGINX
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
  log_format upstream "\$request_method \$uri \$upstream_addr \$status";
  access_log $WORK/nginx/access.log upstream;
  client_body_temp_path $WORK/nginx/tmp;
  proxy_temp_path $WORK/nginx/tmp;
  fastcgi_temp_path $WORK/nginx/tmp;
  uwsgi_temp_path $WORK/nginx/tmp;
  scgi_temp_path $WORK/nginx/tmp;
  upstream mcr {
$upstreams    ${NGINX_KEEPALIVE:+keepalive $NGINX_KEEPALIVE;}
  }
  server {
    listen $LB;
    client_max_body_size 0;
    client_body_timeout 60s;
    send_timeout 60s;
    proxy_request_buffering off;
    proxy_buffering off;
    proxy_buffer_size 256k;
    proxy_buffers 4 256k;
    proxy_busy_buffers_size 256k;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host \$http_host;
    proxy_connect_timeout 5s;
    proxy_send_timeout 60s;
    proxy_read_timeout 600s;
    location / { proxy_pass http://mcr; }
  }
}
NGINX
  nginx -t -q -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" || fail "nginx refuses the generated config"
  nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" -g 'daemon off;' 2>>"$WORK/nginx/error.log" &
  NGINX_PID=$!
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://$LB/v2/" && break
    kill -0 "$NGINX_PID" 2>/dev/null || { cat "$WORK/nginx/error.log" >&2; fail "nginx exited"; }
    sleep 0.1
  done
  log "nginx round robin on $LB"
}

cluster_down() {
  local pid
  for pid in "${PIDS[@]}" "$NGINX_PID"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  [ -n "$GARAGE_DIR" ] && scripts/garage.sh stop "$GARAGE_DIR"
  [ -n "$CLUSTER_PG_DIR" ] && scripts/postgres.sh stop "$CLUSTER_PG_DIR"
  return 0
}
