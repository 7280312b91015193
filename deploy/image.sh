#!/usr/bin/env bash
# Builds the MCR container image from release binaries with buildah, no
# Docker engine and no base image: `buildah from scratch`, the binaries,
# exactly the shared libraries they load (from ldd, the dynamic loader
# included), /etc/passwd and /etc/group naming uid/gid 10001, and the
# same config as deploy/Dockerfile (user, entrypoint, command, ports,
# volume, working directory, labels).
#
#   deploy/image.sh [--bin-dir DIR] [--tag NAME] [mcr|mcr-web]
#
#   mcr      mcrsrv and mcrctl; ports 8443 (OCI + REST) and 9443 (gRPC)
#   mcr-web  mcr-web; port 8080
#   --bin-dir  built binaries (default ${CARGO_TARGET_DIR:-target}/release)
#   --tag      image name (default localhost/mcr:VERSION or localhost/mcr-web:VERSION)
#
# Prints the image name on the last line. Uses buildah's configured
# storage (CONTAINERS_STORAGE_CONF selects another); as a non-root user
# it re-runs itself under `buildah unshare`.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
BIN_DIR=${CARGO_TARGET_DIR:-$REPO/target}/release
TAG=
IMAGE=mcr

fail() { printf 'image: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case $1 in
    --bin-dir) BIN_DIR=${2:?--bin-dir needs a directory}; shift 2 ;;
    --tag) TAG=${2:?--tag needs a name}; shift 2 ;;
    mcr|mcr-web) IMAGE=$1; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) fail "unknown argument $1 (see --help)" ;;
  esac
done

# The layout: keep in step with deploy/Dockerfile and deploy/Dockerfile.web
# (deploy/tests/image.sh compares them).
case $IMAGE in
  mcr)
    BINARIES=(mcrsrv mcrctl)
    PORTS=(8443/tcp 9443/tcp)
    CMD='["server", "--config", "/srv/mcr/mcr.toml"]'
    DESCRIPTION="MCR, an OCI container registry" ;;
  mcr-web)
    BINARIES=(mcr-web)
    PORTS=(8080/tcp)
    CMD='["server", "--config", "/srv/mcr/mcr-web.toml"]'
    DESCRIPTION="The web UI of MCR" ;;
esac
UID_GID=10001
DATA=/srv/mcr
ENTRYPOINT="[\"/usr/local/bin/${BINARIES[0]}\"]"

for bin in "${BINARIES[@]}"; do
  [ -x "$BIN_DIR/$bin" ] || fail "no $BIN_DIR/$bin: build it with \`cargo build --release\` or name the directory with --bin-dir"
done
command -v buildah >/dev/null || fail "buildah is not installed (apt-get install buildah)"
if [ "$(id -u)" -ne 0 ] && [ -z "${BUILDAH_ISOLATION_UNSHARED:-}" ]; then
  BUILDAH_ISOLATION_UNSHARED=1 exec buildah unshare "$0" --bin-dir "$BIN_DIR" ${TAG:+--tag "$TAG"} "$IMAGE"
fi

# `mcrsrv 0.1.0 (commit 0123456789ab)` -> version and commit labels.
read -r _ VERSION _ COMMIT < <("$BIN_DIR/${BINARIES[0]}" --version)
COMMIT=${COMMIT%)}
TAG=${TAG:-localhost/$IMAGE:$VERSION}

CTR=$(buildah from scratch)
trap 'buildah rm "$CTR" >/dev/null 2>&1 || true' EXIT
ROOTFS=$(buildah mount "$CTR")

# Every library a binary loads, by the path the loader finds it at.
libs=()
for bin in "${BINARIES[@]}"; do
  install -D -m 0755 "$BIN_DIR/$bin" "$ROOTFS/usr/local/bin/$bin"
  out=$(ldd "$BIN_DIR/$bin" 2>&1) || { [[ $out == *"not a dynamic executable"* ]] && continue; fail "ldd $bin: $out"; }
  [[ $out != *"not found"* ]] || fail "ldd $bin: a library is missing on this machine: $out"
  while read -r path; do libs+=("$path"); done < <(awk '/=> \// { print $3; next } /^\t\// { print $1 }' <<<"$out")
done
for lib in $(printf '%s\n' "${libs[@]}" | sort -u); do
  install -D -m 0755 "$(readlink -f "$lib")" "$ROOTFS$lib"
done

install -d -m 0755 "$ROOTFS/etc" "$ROOTFS/tmp"
chmod 1777 "$ROOTFS/tmp"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nmcr:x:%s:%s:MCR:%s:/usr/sbin/nologin\n' \
  "$UID_GID" "$UID_GID" "$DATA" >"$ROOTFS/etc/passwd"
printf 'root:x:0:\nmcr:x:%s:\n' "$UID_GID" >"$ROOTFS/etc/group"
install -d -m 0750 -o "$UID_GID" -g "$UID_GID" "$ROOTFS$DATA"

port_args=()
for p in "${PORTS[@]}"; do port_args+=(--port "$p"); done
buildah config \
  --os linux --arch "$(buildah info --format '{{.host.arch}}')" \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --user "$UID_GID:$UID_GID" \
  --workingdir "$DATA" \
  --volume "$DATA" \
  "${port_args[@]}" \
  --entrypoint "$ENTRYPOINT" \
  --cmd "$CMD" \
  --label org.opencontainers.image.title="$IMAGE" \
  --label org.opencontainers.image.description="$DESCRIPTION" \
  --label org.opencontainers.image.licenses=MIT \
  --label org.opencontainers.image.version="$VERSION" \
  --label org.opencontainers.image.revision="$COMMIT" \
  "$CTR"
buildah unmount "$CTR" >/dev/null
buildah commit --quiet --format oci --rm "$CTR" "$TAG" >/dev/null
trap - EXIT
printf 'image: %s built with %d libraries: %s\n' "$TAG" "$(printf '%s\n' "${libs[@]}" | sort -u | wc -l)" \
  "$(printf '%s\n' "${libs[@]}" | sort -u | tr '\n' ' ')"
echo "$TAG"
