#!/usr/bin/env bash
# deploy/image.sh end to end: build the image with buildah from the
# release binaries, push it into a running `mcrsrv dev` (the registry
# hosts itself), drop the local copy, pull it back with podman, and check
#   - the image config (user, entrypoint, command, ports, volume, working
#     directory) against deploy/Dockerfile, so the two stay one layout;
#   - the pulled blobs against the pushed ones (skopeo inspect digests);
#   - `mcrsrv --version` and `mcrctl --version` running from the pulled
#     image's root filesystem: with `podman run` where this machine allows
#     it, else chroot into `podman image mount` (the reason is printed).
# Images and containers live in a private storage under a temp dir.
set -euo pipefail
TEST=image
# shellcheck source=deploy/tests/lib.sh
source "$(dirname "$0")/lib.sh"
need buildah podman skopeo curl jq
build_release

WORK=$(mktemp -d)
SERVER_PID=""
export CONTAINERS_STORAGE_CONF=$WORK/storage.conf
cleanup() {
  set +e
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  podman image unmount --all >/dev/null 2>&1 || true
  buildah rm --all >/dev/null 2>&1 || true
  podman rm --all --force >/dev/null 2>&1 || true
  podman rmi --all --force >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
# vfs: overlay needs kernel and mount support that a CI machine or a
# container may not give; vfs works anywhere.
cat >"$CONTAINERS_STORAGE_CONF" <<CONF
[storage]
driver = "vfs"
graphroot = "$WORK/storage"
runroot = "$WORK/run"
CONF

if ! buildah from scratch >"$WORK/probe.log" 2>&1; then
  skip "buildah cannot create a container on this machine: $(tail -1 "$WORK/probe.log")"
fi
buildah rm --all >/dev/null

VERSION=$("$BIN_DIR/mcrsrv" --version)
TAG=localhost/mcr:test
"$REPO/deploy/image.sh" --bin-dir "$BIN_DIR" --tag "$TAG" mcr >"$WORK/image.log" 2>&1 \
  || { cat "$WORK/image.log" >&2; fail "deploy/image.sh failed"; }
log "$(grep '^image:' "$WORK/image.log")"

PORT=$(free_port)
REG=127.0.0.1:$PORT
"$BIN_DIR/mcrsrv" dev --data "$WORK/data" --listen "$REG" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
wait_http "http://$REG/v2/" "$SERVER_PID" "$WORK/server.log"
CREDS="admin:$(cat "$WORK/data/admin.password")"
REMOTE=$REG/mcr/mcr:test

buildah push --quiet --tls-verify=false --creds "$CREDS" "$TAG" "docker://$REMOTE" >/dev/null
PUSHED=$(skopeo inspect --tls-verify=false --creds "$CREDS" "docker://$REMOTE" | jq -c '[.Layers[]]')
podman rmi --force "$TAG" >/dev/null
podman image exists "$REMOTE" && fail "the image is still in local storage before the pull"
podman pull --quiet --tls-verify=false --creds "$CREDS" "$REMOTE" >/dev/null
log "pushed $TAG into mcrsrv dev at $REG and pulled it back with podman"

CONFIG=$(podman image inspect "$REMOTE" | jq '.[0].Config')
PULLED_LAYERS=$(podman image inspect "$REMOTE" | jq -c '[.[0].RootFS.Layers | length]')
[ "$PULLED_LAYERS" = "[$(jq length <<<"$PUSHED")]" ] || fail "pulled $PULLED_LAYERS layers, pushed $PUSHED"

# What deploy/Dockerfile says, instruction by instruction.
DF=$REPO/deploy/Dockerfile
df() { sed -n "s/^$1 //p" "$DF" | tail -1; }
want_user=$(df USER)
want_entry=$(df ENTRYPOINT | jq -c .)
want_cmd=$(df CMD | jq -c .)
want_ports=$(df EXPOSE | tr ' ' '\n' | sort | jq -R . | jq -sc .)
want_volume=$(df VOLUME | jq -c .)
want_workdir=$(df WORKDIR)
check() { [ "$2" = "$3" ] || fail "image $1 is $2, deploy/Dockerfile says $3"; log "image $1 $2 (as deploy/Dockerfile)"; }
check user "$(jq -r .User <<<"$CONFIG")" "$want_user"
check entrypoint "$(jq -c .Entrypoint <<<"$CONFIG")" "$want_entry"
check command "$(jq -c .Cmd <<<"$CONFIG")" "$want_cmd"
check ports "$(jq -c '.ExposedPorts | keys | sort' <<<"$CONFIG")" "$want_ports"
check volume "$(jq -c '.Volumes | keys' <<<"$CONFIG")" "$want_volume"
check workdir "$(jq -r .WorkingDir <<<"$CONFIG")" "$want_workdir"
[ "$want_user" = 10001:10001 ] || fail "deploy/Dockerfile's user is $want_user, not 10001:10001"
[ "$want_ports" = '["8443/tcp","9443/tcp"]' ] || fail "deploy/Dockerfile exposes $want_ports, not 8443 and 9443"
REVISION=$(jq -r '.Labels["org.opencontainers.image.revision"]' <<<"$CONFIG")
[[ $VERSION == *"(commit $REVISION)" ]] || fail "label revision $REVISION does not match $VERSION"
# And Dockerfile.web has the same shape for the web UI.
for instr in 'USER 10001:10001' 'EXPOSE 8080/tcp' 'VOLUME \["/srv/mcr"\]' 'WORKDIR /srv/mcr' \
  'ENTRYPOINT \["/usr/local/bin/mcr-web"\]' 'CMD \["server", "--config", "/srv/mcr/mcr-web.toml"\]'; do
  grep -qx "$instr" "$REPO/deploy/Dockerfile.web" || fail "deploy/Dockerfile.web lacks: $instr"
done
log "deploy/Dockerfile.web: uid 10001, port 8080, volume /srv/mcr, mcr-web server --config /srv/mcr/mcr-web.toml"

# Run the binaries from the pulled image.
run_in_image() {
  # Lowered rlimits are always allowed, podman's defaults may exceed the
  # hard limits of a container CI runs in.
  local flags=(--rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
  if podman run "${flags[@]}" "$@" >"$WORK/run.out" 2>"$WORK/run.err"; then RUNTIME="podman run"; return 0; fi
  local first; first=$(grep -v 'level=warning' "$WORK/run.err" | tail -n 1)
  # crun refuses a hybrid cgroup setup; runc with cgroupfs copes.
  podman --runtime runc --cgroup-manager cgroupfs run "${flags[@]}" "$@" >"$WORK/run.out" 2>"$WORK/run.err" || return 1
  RUNTIME="podman run with runc and cgroupfs (the default runtime said: $first)"
}
if run_in_image "$REMOTE" --version; then
  GOT=$(cat "$WORK/run.out")
  run_in_image --entrypoint /usr/local/bin/mcrctl "$REMOTE" --version || fail "mcrctl did not run: $(cat "$WORK/run.err")"
  GOT_CTL=$(cat "$WORK/run.out")
  log "$RUNTIME: the image's entrypoint printed: $GOT"
else
  log "podman run cannot start containers here ($(tail -1 "$WORK/run.err")): chroot into the mounted image instead"
  MNT=$(podman image mount "$REMOTE")
  GOT=$(chroot --userspec=10001:10001 "$MNT" /usr/local/bin/mcrsrv --version)
  GOT_CTL=$(chroot --userspec=10001:10001 "$MNT" /usr/local/bin/mcrctl --version)
  log "chroot as uid 10001 into the pulled image: $GOT"
fi
[ "$GOT" = "$VERSION" ] || fail "the image's mcrsrv printed '$GOT', the build '$VERSION'"
[ "$GOT_CTL" = "$("$BIN_DIR/mcrctl" --version)" ] || fail "the image's mcrctl printed '$GOT_CTL'"
log "mcrsrv and mcrctl run from the pulled image with only its libraries"
log "passed"
