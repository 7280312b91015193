#!/usr/bin/env bash
# Every ```sh block of docs/RUNBOOK.md, as written, in order, in one shell
# session, against a real install with systemd:
#   - a throwaway copy of this machine: private mount, PID, network, UTS,
#     IPC and cgroup namespaces; /etc, /usr/local, /srv, /var and /root
#     are overlays whose changes land in a temp dir; systemd runs as PID 1
#     with only its own units (no host services, no generators);
#   - deploy/install.sh run there for real (user mcr, /usr/local/bin,
#     /srv/mcr, the units), a TLS CA and certificate in /srv/mcr/tls (and
#     a renewed pair in tls/new/), the fake MCIAS with an admin `ops`
#     (password ops-pw, given on standard input to the block that logs
#     in), and /srv/mcr/mcr.toml = deploy/examples/mcr.toml pointed at it;
#   - before "Backup", an image library/app:1.0 pushed with skopeo.
# Fails on the first command that fails, with the journal.
set -euo pipefail
TEST=runbook
# shellcheck source=deploy/tests/lib.sh
source "$(dirname "$0")/lib.sh"
need curl jq skopeo sqlite3 openssl fuser:psmisc promtool:prometheus systemd-analyze:systemd

[ "$(id -u)" -eq 0 ] || skip "needs root for the mount, PID and network namespaces"
if ! probe=$(unshare --mount --pid --net --uts --ipc --cgroup --fork true 2>&1); then
  skip "this machine refuses new namespaces: $probe"
fi
build_release
if [ -z "${MCR_BIN_DIR:-}" ]; then
  (cd "$REPO" && cargo build --quiet --release -p mcr-adapters --features fake-mcias --example fake_mcias)
fi
FAKE=$BIN_DIR/examples/fake_mcias
[ -x "$FAKE" ] || fail "no $FAKE (cargo build -p mcr-adapters --features fake-mcias --example fake_mcias)"

WORK=$(mktemp -d)
CG=mcr-runbook-$$
SD=""
HIERARCHIES=(/sys/fs/cgroup/systemd /sys/fs/cgroup/unified)
teardown() {
  set +e
  if [ -n "$SD" ] && kill -0 "$SD" 2>/dev/null; then
    kill -s SIGRTMIN+4 "$SD"   # poweroff: systemd in a container exits
    for _ in $(seq 1 100); do kill -0 "$SD" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$SD" 2>/dev/null
  fi
  if [ -n "${UNSHARE_PID:-}" ]; then wait "$UNSHARE_PID" 2>/dev/null; fi
  local h
  for h in "${HIERARCHIES[@]}"; do
    # The last task leaves its cgroup a moment after it is reaped.
    for _ in $(seq 1 50); do
      [ -d "$h/$CG" ] || break
      find "$h/$CG" -depth -type d -exec rmdir {} + 2>/dev/null || sleep 0.1
    done
  done
  rm -rf "$WORK"
}
trap teardown EXIT

# --- the sandbox -------------------------------------------------------------
cat >"$WORK/boot.sh" <<'BOOT'
#!/usr/bin/env bash
# PID 1 of the new namespaces: overlays, a minimal unit set, then systemd.
set -euo pipefail
W=$1
mount --make-rprivate /
for d in etc usr/local srv var root; do
  mkdir -p "$W/up/$d" "$W/wk/$d"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$W/up/$d,workdir=$W/wk/$d" "/$d"
done
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=0755 tmpfs /etc/systemd/system
mkdir -p "$W/units/sockets.target.wants" "$W/units/sysinit.target.wants" "$W/empty"
S=/usr/lib/systemd/system
cp -a "$S"/*.target "$S"/*.slice "$S/systemd-journald.service" "$S/systemd-journald.socket" \
  "$S/systemd-journald-dev-log.socket" "$S/systemd-poweroff.service" "$S/systemd-halt.service" \
  "$S/systemd-exit.service" "$S/systemd-reboot.service" "$W/units/"
ln -sf multi-user.target "$W/units/default.target"
ln -s ../systemd-journald.socket ../systemd-journald-dev-log.socket "$W/units/sockets.target.wants/"
ln -s ../systemd-journald.service "$W/units/sysinit.target.wants/"
mount --bind "$W/units" "$S"
# The host's /etc/init.d scripts would become services through generators.
for g in /usr/lib/systemd/system-generators /etc/systemd/system-generators /usr/local/lib/systemd/system-generators; do
  if [ -d "$g" ]; then mount --bind "$W/empty" "$g"; fi
done
# (systemd sets the hostname from /etc/hostname: the UTS namespace keeps it here.)
ip link set lo up
printf '127.0.0.1 registry.example.internal\n' >>/etc/hosts
exec env container=mcr-runbook /lib/systemd/systemd --log-target=console --log-level=warning
BOOT
chmod +x "$WORK/boot.sh"

# systemd's cgroups go below one of ours, removed at the end.
for h in "${HIERARCHIES[@]}"; do [ -d "$h" ] && mkdir -p "$h/$CG"; done
(
  for h in "${HIERARCHIES[@]}"; do [ -d "$h/$CG" ] && echo "$BASHPID" >"$h/$CG/cgroup.procs"; done
  exec unshare --mount --pid --net --uts --ipc --cgroup --fork --mount-proc "$WORK/boot.sh" "$WORK"
) >"$WORK/boot.log" 2>&1 &
UNSHARE_PID=$!
for _ in $(seq 1 50); do SD=$(pgrep -P "$UNSHARE_PID" | head -n 1 || true); [ -n "$SD" ] && break; sleep 0.1; done
[ -n "$SD" ] || { cat "$WORK/boot.log" >&2; fail "the sandbox did not start"; }
inside() { nsenter -t "$SD" -a "$@"; }
# boot.sh execs systemd; then systemd needs a moment for its bus.
for _ in $(seq 1 100); do
  [ "$(cat "/proc/$SD/comm" 2>/dev/null)" = systemd ] && inside test -S /run/systemd/private && break
  sleep 0.1
done
state=$(timeout 60 nsenter -t "$SD" -a systemctl is-system-running --wait 2>&1 || true)
[ "$state" = running ] || { cat "$WORK/boot.log" >&2; inside systemctl --failed --no-pager >&2 || true; fail "systemd in the sandbox is $state"; }
log "sandbox up: systemd is PID 1 (host pid $SD), overlays under $WORK"

journal() { inside journalctl -u mcr.service -u mcr-backup.service -u fake-mcias.service -n 60 --no-pager >&2 || true; }

# --- the world the runbook assumes ---------------------------------------------
inside env REPO="$REPO" BIN_DIR="$BIN_DIR" FAKE="$FAKE" bash -euo pipefail >"$WORK/setup.log" 2>&1 <<'SETUP' || { cat "$WORK/setup.log" >&2; journal; fail "setting up the sandbox failed"; }
[ "$(findmnt -n -o FSTYPE /usr/local)" = overlay ] || { echo "/usr/local is not the sandbox overlay: refusing to install" >&2; exit 1; }
"$REPO/deploy/install.sh" --bin-dir "$BIN_DIR"
T=/srv/mcr/tls
cert() { # cert NAME: a P-256 key and a certificate for the registry's names
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=registry.example.internal" \
    -keyout "$1.key" -out "$1.csr" 2>/dev/null
  printf 'subjectAltName=DNS:registry.example.internal,DNS:localhost,IP:127.0.0.1\n' >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA $T/ca.crt -CAkey /root/ca.key -CAcreateserial -days "$2" \
    -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=mcr-runbook-ca" \
  -keyout /root/ca.key -out $T/ca.crt 2>/dev/null
cert $T/server 20
mkdir -p $T/new
cert $T/new/server 90
chown -R root:mcr $T; chmod 0640 $T/server.key $T/new/server.key
# The CA, trusted by curl, skopeo and mcrctl as a site's own CA would be.
install -D -m 0644 $T/ca.crt /usr/local/share/ca-certificates/mcr-runbook.crt
update-ca-certificates >/dev/null 2>&1
mkdir -p /run/mcias
systemd-run --quiet --unit=fake-mcias "$FAKE" /run/mcias ops:admin
for _ in $(seq 1 100); do [ -s /run/mcias/mcias.url ] && break; sleep 0.1; done
install -m 0640 -g mcr /run/mcias/mcias-ca.pem $T/mcias-ca.pem
sed -i "s|^server_url = .*|server_url = \"$(cat /run/mcias/mcias.url)\"|" /srv/mcr/mcr.toml
SETUP
log "set up: installed with deploy/install.sh, TLS in /srv/mcr/tls, fake MCIAS with ops:admin"

# --- the runbook's blocks --------------------------------------------------------
# blocks/NNN.sh with blocks/NNN.heading: the nearest heading above it.
mkdir -p "$WORK/blocks"
awk -v dir="$WORK/blocks" '
  /^#+ / { heading = $0; sub(/^#+ /, "", heading) }
  /^```sh$/ { n++; file = sprintf("%s/%03d.sh", dir, n); print heading > (file ".heading"); inblock = 1; next }
  /^```$/ && inblock { inblock = 0; close(file); next }
  inblock { print > file }
' "$REPO/docs/RUNBOOK.md"
COUNT=$(find "$WORK/blocks" -name '*.sh' | wc -l)
[ "$COUNT" -gt 10 ] || fail "only $COUNT sh blocks found in docs/RUNBOOK.md"
printf 'ops-pw\n' >"$WORK/password"

cat >"$WORK/run.sh" <<'RUN'
# Sourced block by block in one bash, so a block's variables reach the next.
set -euo pipefail
cd /root
for block in "$BLOCKS"/*.sh; do
  heading=$(cat "$block.heading")
  if [ "$heading" = Backup ] && [ -z "${PUSHED:-}" ]; then
    # An image for the backup to hold and the restore to bring back.
    skopeo copy --quiet --insecure-policy --dest-registry-token "$MCR_TOKEN" "oci:$IMAGE:t" docker://localhost:8443/library/app:1.0
    PUSHED=1
  fi
  # The blocks are procedures an operator runs minutes or days apart; back to
  # back, their restarts would trip systemd's start rate limit (5 in 10 s).
  systemctl reset-failed mcr.service 2>/dev/null || true
  printf '\n[runbook] --- %s (%s)\n' "$heading" "$(basename "$block")"
  sed 's/^/[runbook] $ /' "$block"
  if grep -q -- '--password-stdin' "$block"; then
    # shellcheck disable=SC1090
    source "$block" <"$PASSWORD_FILE"
  else
    # shellcheck disable=SC1090
    source "$block" </dev/null
  fi
done
RUN

# The image to push: one small layer, made here.
IMG=$WORK/image
mkdir -p "$IMG/blobs/sha256"
head -c 65536 /dev/urandom >"$WORK/payload"
tar -C "$WORK" -cf "$WORK/layer.tar" payload
DIFF=$(sha256sum <"$WORK/layer.tar" | cut -d' ' -f1)
gzip -n <"$WORK/layer.tar" >"$WORK/layer.tgz"
L=$(sha256sum <"$WORK/layer.tgz" | cut -d' ' -f1); LS=$(stat -c %s "$WORK/layer.tgz"); mv "$WORK/layer.tgz" "$IMG/blobs/sha256/$L"
printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$DIFF" >"$WORK/c.json"
C=$(sha256sum <"$WORK/c.json" | cut -d' ' -f1); CS=$(stat -c %s "$WORK/c.json"); mv "$WORK/c.json" "$IMG/blobs/sha256/$C"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
  "$C" "$CS" "$L" "$LS" >"$WORK/m.json"
M=$(sha256sum <"$WORK/m.json" | cut -d' ' -f1); MS=$(stat -c %s "$WORK/m.json"); mv "$WORK/m.json" "$IMG/blobs/sha256/$M"
printf '{"imageLayoutVersion":"1.0.0"}' >"$IMG/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"t"}}]}' "$M" "$MS" >"$IMG/index.json"

log "running $COUNT command blocks of docs/RUNBOOK.md"
if ! inside env BLOCKS="$WORK/blocks" PASSWORD_FILE="$WORK/password" IMAGE="$IMG" HOME=/root \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin bash "$WORK/run.sh" >"$WORK/run.log" 2>&1; then
  tail -n 40 "$WORK/run.log"
  journal
  fail "a runbook command failed (the last block above)"
fi
grep -c '^\[runbook\] \$ ' "$WORK/run.log" | { read -r n; log "$n command lines in $COUNT blocks ran and succeeded:"; }
grep '^\[runbook\] --- ' "$WORK/run.log" | sed 's/^\[runbook\] --- /  /'
log "passed"
