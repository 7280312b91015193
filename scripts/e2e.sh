#!/usr/bin/env bash
# End-to-end check with real clients: skopeo pushes OCI image layouts with
# random layers to a running `mcrsrv dev`, pulls them back and compares
# every blob byte for byte; a multi-platform index, a copy between two
# repositories, a mount, containerd's ctr pulling through the bearer-token
# flow, buildah building from scratch and pushing, an artifact with a
# referrer through PyPI's oras, and deletes through curl. Fails on any
# mismatch.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[e2e] %s\n' "$*"; }
fail() { printf '[e2e] FAIL: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/need.sh
source "scripts/need.sh"
need skopeo curl jq openssl

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mcr/target}"
cargo build --quiet --release -p mcr-cli --bin mcrsrv
cargo build --quiet --release -p mcr-adapters --features fake-mcias --example fake_mcias
MCRSRV="$CARGO_TARGET_DIR/release/mcrsrv"
FAKE_MCIAS="$CARGO_TARGET_DIR/release/examples/fake_mcias"

WORK=$(mktemp -d)
SERVER_PID=""
MCIAS_PID=""
MSRV_PID=""
CONTAINERD_PID=""
cleanup() {
  for pid in "$SERVER_PID" "$MCIAS_PID" "$MSRV_PID" "$CONTAINERD_PID"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 5055)
REG="127.0.0.1:$PORT"
"$MCRSRV" dev --data "$WORK/data" --listen "$REG" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://$REG/v2/" && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log"; fail "mcrsrv exited"; }
  sleep 0.1
done
PASSWORD=$(cat "$WORK/data/admin.password")
CREDS="admin:$PASSWORD"
SK=(skopeo --insecure-policy)
TLS=(--src-tls-verify=false --dest-tls-verify=false)
log "mcrsrv dev on $REG"

# shellcheck source=scripts/oci_layout.sh
source "scripts/oci_layout.sh"

token() {
  curl -sf -u "$CREDS" "http://$REG/v2/token?service=mcr&scope=repository:$1:pull,push,delete" | jq -r .token
}

# --- single image: push, inspect, list tags, pull, compare -------------------
SRC="$WORK/src"
read -r MHEX MSIZE < <(make_image "$SRC" amd64 3)
write_index "$SRC" v1 application/vnd.oci.image.manifest.v1+json "$MHEX" "$MSIZE"
log "push e2e/app:v1 (sha256:$MHEX)"
"${SK[@]}" copy --quiet --preserve-digests "${TLS[@]}" --dest-creds "$CREDS" "oci:$SRC:v1" "docker://$REG/e2e/app:v1"
"${SK[@]}" copy --quiet --preserve-digests "${TLS[@]}" --dest-creds "$CREDS" "oci:$SRC:v1" "docker://$REG/e2e/app:latest"

RAW_DIGEST=$("${SK[@]}" inspect --raw --tls-verify=false --creds "$CREDS" "docker://$REG/e2e/app:v1" | sha256sum | cut -d' ' -f1)
[ "$RAW_DIGEST" = "$MHEX" ] || fail "inspect --raw digest $RAW_DIGEST != pushed $MHEX"
TAGS=$("${SK[@]}" list-tags --tls-verify=false --creds "$CREDS" "docker://$REG/e2e/app" | jq -c '.Tags | sort')
[ "$TAGS" = '["latest","v1"]' ] || fail "list-tags gave $TAGS"

DST="$WORK/dst"
"${SK[@]}" copy --quiet --preserve-digests "${TLS[@]}" --src-creds "$CREDS" "docker://$REG/e2e/app:v1" "oci:$DST:v1"
compare_layouts "$SRC" "$DST"
log "pulled e2e/app:v1 back: every blob identical"

# --- multi-platform index: push all, pull one platform -----------------------
MULTI="$WORK/multi"
read -r AHEX ASIZE < <(make_image "$MULTI" amd64 2)
read -r RHEX RSIZE < <(make_image "$MULTI" arm64 2)
IDX="$WORK/index.$$"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"}},{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"arm64","os":"linux"}}]}' \
  "$AHEX" "$ASIZE" "$RHEX" "$RSIZE" >"$IDX"
ISIZE=$(size "$IDX"); IHEX=$(put_blob "$MULTI" "$IDX")
write_index "$MULTI" multi application/vnd.oci.image.index.v1+json "$IHEX" "$ISIZE"
log "push e2e/multi:1 (index sha256:$IHEX)"
"${SK[@]}" copy --quiet --all --preserve-digests "${TLS[@]}" --dest-creds "$CREDS" "oci:$MULTI:multi" "docker://$REG/e2e/multi:1"
GOT=$("${SK[@]}" inspect --raw --tls-verify=false --creds "$CREDS" "docker://$REG/e2e/multi:1" | sha256sum | cut -d' ' -f1)
[ "$GOT" = "$IHEX" ] || fail "index digest $GOT != $IHEX"
ONE="$WORK/one"
"${SK[@]}" --override-arch arm64 --override-os linux copy --quiet --preserve-digests "${TLS[@]}" --src-creds "$CREDS" "docker://$REG/e2e/multi:1" "oci:$ONE:arm"
PULLED=$(jq -r '.manifests[0].digest' "$ONE/index.json")
[ "$PULLED" = "sha256:$RHEX" ] || fail "arm64 pull gave $PULLED, want sha256:$RHEX"
compare_layouts "$ONE" "$MULTI"
log "pulled the arm64 image of the index: right manifest, identical blobs"

# --- copy between two repositories of the registry ---------------------------
"${SK[@]}" copy --quiet --preserve-digests "${TLS[@]}" --src-creds "$CREDS" --dest-creds "$CREDS" \
  "docker://$REG/e2e/app:v1" "docker://$REG/e2e/copy:v1"
GOT=$("${SK[@]}" inspect --raw --tls-verify=false --creds "$CREDS" "docker://$REG/e2e/copy:v1" | sha256sum | cut -d' ' -f1)
[ "$GOT" = "$MHEX" ] || fail "copied manifest digest $GOT != $MHEX"
log "copied e2e/app:v1 to e2e/copy:v1"

# An explicit cross-repository mount of the first layer into a third repo.
LAYER=$(jq -r '.layers[0].digest' "$SRC/blobs/sha256/$MHEX")
TOKEN=$(token e2e/mounted)
CODE=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
  "http://$REG/v2/e2e/mounted/blobs/uploads/?mount=$LAYER&from=e2e/app")
[ "$CODE" = 201 ] || fail "mount answered $CODE, want 201"
CODE=$(curl -s -o /dev/null -w '%{http_code}' -I -H "Authorization: Bearer $TOKEN" "http://$REG/v2/e2e/mounted/blobs/$LAYER")
[ "$CODE" = 200 ] || fail "mounted blob HEAD answered $CODE"
log "mounted $LAYER from e2e/app into e2e/mounted"

# --- containerd's ctr pulls through the bearer-token flow --------------------
if [ "$(id -u)" -ne 0 ]; then
  log "SKIP ctr: containerd's daemon needs root (CI runs as root)"
else
  need ctr:containerd
  CD="$WORK/containerd"; mkdir -p "$CD"
  cat >"$CD/config.toml" <<TOML
version = 2
root = "$CD/root"
state = "$CD/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CD/containerd.sock"
[ttrpc]
  address = "$CD/containerd.sock.ttrpc"
[debug]
  address = "$CD/debug.sock"
TOML
  containerd --config "$CD/config.toml" >"$WORK/containerd.log" 2>&1 &
  CONTAINERD_PID=$!
  CTR=(ctr --address "$CD/containerd.sock" --namespace mcr-e2e)
  for _ in $(seq 1 100); do
    "${CTR[@]}" version >/dev/null 2>&1 && break
    kill -0 "$CONTAINERD_PID" 2>/dev/null || { cat "$WORK/containerd.log"; fail "containerd exited"; }
    sleep 0.1
  done
  # Without credentials the registry's 401 challenge stops it.
  if "${CTR[@]}" images pull --plain-http --snapshotter native "$REG/e2e/app:v1" >"$WORK/ctr.out" 2>&1; then
    fail "ctr pulled e2e/app:v1 without credentials"
  fi
  "${CTR[@]}" images pull --plain-http --snapshotter native --user "$CREDS" "$REG/e2e/app:v1" >"$WORK/ctr.out" 2>&1 \
    || { cat "$WORK/ctr.out"; fail "ctr could not pull e2e/app:v1"; }
  GOT=$("${CTR[@]}" images ls -q | grep -c "e2e/app:v1" || true)
  [ "$GOT" = 1 ] || fail "ctr lists no e2e/app:v1 after the pull"
  "${CTR[@]}" images export "$WORK/ctr.tar" "$REG/e2e/app:v1"
  mkdir -p "$WORK/ctr-out" && tar -C "$WORK/ctr-out" -xf "$WORK/ctr.tar"
  compare_layouts "$SRC" "$WORK/ctr-out"
  kill "$CONTAINERD_PID"; wait "$CONTAINERD_PID" 2>/dev/null || true; CONTAINERD_PID=""
  log "ctr pulled e2e/app:v1 through the bearer-token flow (refused without credentials): every blob identical"
fi

# --- buildah builds an image from scratch and pushes it ----------------------
need buildah
BLD=(buildah --root "$WORK/buildah/root" --runroot "$WORK/buildah/run" --storage-driver vfs)
head -c 200000 /dev/urandom >"$WORK/payload.bin"
BCTR=$("${BLD[@]}" from scratch)
"${BLD[@]}" copy --quiet "$BCTR" "$WORK/payload.bin" /payload.bin
"${BLD[@]}" config --label org.opencontainers.image.title=mcr-e2e --cmd /payload.bin "$BCTR"
"${BLD[@]}" commit --quiet --format oci "$BCTR" mcr-e2e-built >/dev/null
"${BLD[@]}" push --quiet --tls-verify=false --creds "$CREDS" --digestfile "$WORK/buildah.digest" \
  mcr-e2e-built "docker://$REG/e2e/built:v1"
GOT=$("${SK[@]}" inspect --raw --tls-verify=false --creds "$CREDS" "docker://$REG/e2e/built:v1" | sha256sum | cut -d' ' -f1)
[ "sha256:$GOT" = "$(cat "$WORK/buildah.digest")" ] || fail "buildah pushed $(cat "$WORK/buildah.digest"), the registry serves sha256:$GOT"
"${SK[@]}" copy --quiet --preserve-digests "${TLS[@]}" --src-creds "$CREDS" "docker://$REG/e2e/built:v1" "oci:$WORK/built:v1"
BLAYER=$(jq -r '.layers[0].digest' "$WORK/built/blobs/sha256/$GOT")
mkdir -p "$WORK/built-fs" && tar -C "$WORK/built-fs" -xf "$WORK/built/blobs/sha256/${BLAYER#sha256:}"
cmp -s "$WORK/payload.bin" "$WORK/built-fs/payload.bin" || fail "the file buildah built in came back different"
"${BLD[@]}" rm "$BCTR" >/dev/null
log "buildah built from scratch and pushed e2e/built:v1: same digest served, the built-in file identical"

# --- an OCI artifact with a referrer, through PyPI's oras --------------------
ORAS_VENV="$HOME/.cache/mcr/tools/oras-venv"
if [ ! -x "$ORAS_VENV/bin/python" ] || ! "$ORAS_VENV/bin/python" -c 'import oras' 2>/dev/null; then
  need python3 python3-venv:python3-venv
  log "installing oras (PyPI) into $ORAS_VENV"
  python3 -m venv "$ORAS_VENV"
  "$ORAS_VENV/bin/pip" install --quiet "oras==0.2.43"
fi
printf 'an SBOM for e2e/app:v1 %s\n' "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$WORK/sbom.json"
(cd "$WORK" && "$ORAS_VENV/bin/python" - "$REG" "$PASSWORD" "sha256:$MHEX" "$MSIZE" <<'PY') || fail "oras: push, discover or pull of the referrer failed"
import json, os, sys
import oras.client, oras.oci
reg, password, digest, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = oras.client.OrasClient(hostname=reg, insecure=True)
c.login(username="admin", password=password, hostname=reg)
subject = oras.oci.Subject(mediaType="application/vnd.oci.image.manifest.v1+json", digest=digest, size=size)
r = c.push(target=f"{reg}/e2e/app:sbom", files=["sbom.json:application/spdx+json"],
           subject=subject, manifest_annotations={"org.opencontainers.image.title": "sbom"}, quiet=True)
assert r.status_code == 201, f"push answered {r.status_code}"
r = c.do_request(f"http://{reg}/v2/e2e/app/referrers/{digest}", "GET")
assert r.status_code == 200, f"referrers answered {r.status_code}"
found = r.json()["manifests"]
assert len(found) == 1, f"referrers of the image: {found}"
got = c.get_manifest(f"{reg}/e2e/app@{found[0]['digest']}")
assert got["subject"]["digest"] == digest, got
os.mkdir("sbom-pulled")
files = c.pull(target=f"{reg}/e2e/app@{found[0]['digest']}", outdir="sbom-pulled")
assert [os.path.basename(f) for f in files] == ["sbom.json"], files
PY
cmp -s "$WORK/sbom.json" "$WORK/sbom-pulled/sbom.json" || fail "the artifact oras pulled back differs"
log "oras (PyPI) pushed an artifact referring to e2e/app:v1, discovered it through the referrers API and pulled it identical"

# --- deletes ---------------------------------------------------------------
TOKEN=$(token e2e/app)
AUTH=(-H "Authorization: Bearer $TOKEN")
CODE=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "${AUTH[@]}" "http://$REG/v2/e2e/app/manifests/latest")
[ "$CODE" = 202 ] || fail "delete tag answered $CODE"
CODE=$(curl -s -o /dev/null -w '%{http_code}' "${AUTH[@]}" "http://$REG/v2/e2e/app/manifests/latest")
[ "$CODE" = 404 ] || fail "deleted tag still answers $CODE"
CODE=$(curl -s -o /dev/null -w '%{http_code}' "${AUTH[@]}" "http://$REG/v2/e2e/app/manifests/v1")
[ "$CODE" = 200 ] || fail "the manifest went with its tag ($CODE)"
CODE=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "${AUTH[@]}" "http://$REG/v2/e2e/app/manifests/sha256:$MHEX")
[ "$CODE" = 202 ] || fail "delete manifest answered $CODE"
for ref in "sha256:$MHEX" v1; do
  CODE=$(curl -s -o /dev/null -w '%{http_code}' "${AUTH[@]}" "http://$REG/v2/e2e/app/manifests/$ref")
  [ "$CODE" = 404 ] || fail "deleted manifest still answers $CODE for $ref"
done
log "deleted a tag (manifest kept) and a manifest (its tags gone)"

# --- immutable tags: a deny rule on tag_overwrite / tag_delete (issue 15) --
curl -sf -u "$CREDS" -H 'Content-Type: application/json' \
  -d '{"priority":10,"description":"e2e releases are frozen","effect":"deny","actions":["registry:tag_overwrite","registry:tag_delete"],"repositories":["e2e/frozen"],"tags":["v1.*"]}' \
  "http://$REG/v1/policy/rules" >"$WORK/rule.json" || fail "creating the tag rule failed"
RULE=$(jq -r .id "$WORK/rule.json")
FROZEN="$WORK/frozen"
read -r FHEX FSIZE < <(make_image "$FROZEN" amd64 2)
write_index "$FROZEN" v1 application/vnd.oci.image.manifest.v1+json "$FHEX" "$FSIZE"
OTHER="$WORK/other"
read -r OHEX OSIZE < <(make_image "$OTHER" amd64 1)
write_index "$OTHER" v1 application/vnd.oci.image.manifest.v1+json "$OHEX" "$OSIZE"
"${SK[@]}" copy --quiet --preserve-digests "${TLS[@]}" --dest-creds "$CREDS" "oci:$FROZEN:v1" "docker://$REG/e2e/frozen:v1.0.0"
if "${SK[@]}" copy --quiet --preserve-digests "${TLS[@]}" --dest-creds "$CREDS" "oci:$OTHER:v1" "docker://$REG/e2e/frozen:v1.0.0" 2>"$WORK/overwrite.err"; then
  fail "an immutable tag was moved to another image"
fi
grep -q "e2e releases are frozen" "$WORK/overwrite.err" || fail "the refusal does not name the rule: $(cat "$WORK/overwrite.err")"
"${SK[@]}" copy --quiet --preserve-digests "${TLS[@]}" --src-creds "$CREDS" "docker://$REG/e2e/frozen:v1.0.0" "oci:$WORK/frozen-back:v1"
compare_layouts "$FROZEN" "$WORK/frozen-back"
"${SK[@]}" copy --quiet --preserve-digests "${TLS[@]}" --dest-creds "$CREDS" "oci:$FROZEN:v1" "docker://$REG/e2e/frozen:v1.0.0" ||
  fail "re-pushing the same image under an immutable tag was refused"
"${SK[@]}" copy --quiet --preserve-digests "${TLS[@]}" --dest-creds "$CREDS" "oci:$OTHER:v1" "docker://$REG/e2e/frozen:v2.0.0" ||
  fail "a new tag beside an immutable one was refused"
CODE=$(curl -s -o /dev/null -w '%{http_code}' -u "$CREDS" -X DELETE "http://$REG/v2/e2e/frozen/manifests/v1.0.0")
[ "$CODE" = 403 ] || fail "deleting an immutable tag answered $CODE"
curl -sf -o /dev/null -u "$CREDS" -X DELETE "http://$REG/v1/policy/rules/$RULE" || fail "deleting the tag rule failed"
log "immutable tags: skopeo's overwrite refused naming the rule, the original pulled back identical, the same image re-pushed and a new tag pushed; the tag's delete refused"

# --- mcrsrv server over TLS 1.3 with a config file -------------------------
TLSD="$WORK/tls"; mkdir -p "$TLSD/certs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=mcr-e2e-ca" \
  -keyout "$TLSD/ca.key" -out "$TLSD/certs/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$TLSD/server.key" -out "$TLSD/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$TLSD/ext.cnf"
openssl x509 -req -in "$TLSD/server.csr" -CA "$TLSD/certs/ca.crt" -CAkey "$TLSD/ca.key" -CAcreateserial \
  -days 2 -extfile "$TLSD/ext.cnf" -out "$TLSD/server.crt" 2>/dev/null
HASH=$(printf 'tls-secret\n' | "$MCRSRV" hash-password)
TPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 5056)
cat >"$TLSD/mcr.toml" <<TOML
[server]
listen_addr = "127.0.0.1:$TPORT"
tls_cert = "$TLSD/server.crt"
tls_key = "$TLSD/server.key"
[database]
path = "$TLSD/data/mcr.db"
[storage]
layers_path = "$TLSD/data/layers"
[[local.users]]
username = "ops"
password_hash = "$HASH"
account_type = "human"
roles = ["user"]
TOML
"$MCRSRV" server --config "$TLSD/mcr.toml" >"$WORK/tls.log" 2>&1 &
TLS_PID=$!
for _ in $(seq 1 100); do
  curl -s -o /dev/null --cacert "$TLSD/certs/ca.crt" "https://127.0.0.1:$TPORT/v2/" && break
  kill -0 "$TLS_PID" 2>/dev/null || { cat "$WORK/tls.log"; fail "mcrsrv server exited"; }
  sleep 0.1
done
CODE=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$TLSD/certs/ca.crt" -u ops:tls-secret "https://127.0.0.1:$TPORT/v2/")
[ "$CODE" = 200 ] || fail "TLS version check answered $CODE"
if curl -s -o /dev/null --cacert "$TLSD/certs/ca.crt" --tls-max 1.2 "https://127.0.0.1:$TPORT/v2/"; then
  fail "a TLS 1.2 client was accepted"
fi
"${SK[@]}" copy --quiet --preserve-digests --dest-cert-dir "$TLSD/certs" --dest-creds ops:tls-secret \
  "oci:$SRC:v1" "docker://127.0.0.1:$TPORT/tls/app:v1"
GOT=$("${SK[@]}" inspect --raw --cert-dir "$TLSD/certs" --creds ops:tls-secret "docker://127.0.0.1:$TPORT/tls/app:v1" | sha256sum | cut -d' ' -f1)
[ "$GOT" = "$MHEX" ] || fail "TLS push gave digest $GOT"
kill "$TLS_PID"; wait "$TLS_PID" 2>/dev/null || true
log "mcrsrv server over TLS 1.3: skopeo pushed and inspected with a custom CA; TLS 1.2 refused"

# --- mcrsrv server over TLS against MCIAS (a fake one, over TLS, custom CA) --
MD="$WORK/mcias"; mkdir -p "$MD"
"$FAKE_MCIAS" "$MD" >"$WORK/fake_mcias.log" 2>&1 &
MCIAS_PID=$!
for _ in $(seq 1 100); do [ -s "$MD/mcias.url" ] && break; sleep 0.1; done
[ -s "$MD/mcias.url" ] || { cat "$WORK/fake_mcias.log"; fail "the fake MCIAS did not start"; }
MPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 5057)
cat >"$MD/mcr.toml" <<TOML
[server]
listen_addr = "127.0.0.1:$MPORT"
tls_cert = "$TLSD/server.crt"
tls_key = "$TLSD/server.key"
[database]
path = "$MD/data/mcr.db"
[storage]
layers_path = "$MD/data/layers"
[mcias]
server_url = "$(cat "$MD/mcias.url")"
ca_cert = "$MD/mcias-ca.pem"
service_name = "mcr-e2e"
tags = ["env:test"]
TOML
"$MCRSRV" server --config "$MD/mcr.toml" >"$WORK/mcias-mcrsrv.log" 2>&1 &
MSRV_PID=$!
M="https://127.0.0.1:$MPORT"
for _ in $(seq 1 100); do
  curl -s -o /dev/null --cacert "$TLSD/certs/ca.crt" "$M/v2/" && break
  kill -0 "$MSRV_PID" 2>/dev/null || { cat "$WORK/mcias-mcrsrv.log"; fail "mcrsrv (MCIAS) exited"; }
  sleep 0.1
done
mc() { curl -s --cacert "$TLSD/certs/ca.crt" "$@"; }
code() { mc -o /dev/null -w '%{http_code}' "$@"; }
mtoken() { mc -u "$1" "$M/v2/token?service=mcr-e2e" | jq -r .token; }

# A user account pushes and pulls with skopeo.
"${SK[@]}" copy --quiet --preserve-digests --dest-cert-dir "$TLSD/certs" --dest-creds alice:alice-pw \
  "oci:$SRC:v1" "docker://127.0.0.1:$MPORT/ci/app:v1"
MOUT="$WORK/mcias-pull"
"${SK[@]}" copy --quiet --preserve-digests --src-cert-dir "$TLSD/certs" --src-creds alice:alice-pw \
  "docker://127.0.0.1:$MPORT/ci/app:v1" "oci:$MOUT:v1"
compare_layouts "$SRC" "$MOUT"
# A wrong password gets 401.
[ "$(code -u alice:wrong "$M/v2/")" = 401 ] || fail "a wrong password was not refused with 401"
# A system account with no stored rule may not push (403 DENIED) nor pull.
CI=$(mtoken ci:ci-pw)
[ -n "$CI" ] && [ "$CI" != null ] || fail "the system account got no token"
R=$(mc -X POST -H "Authorization: Bearer $CI" -w ' %{http_code}' "$M/v2/ci/app/blobs/uploads/")
[ "${R##* }" = 403 ] && echo "$R" | grep -q '"DENIED"' || fail "system push answered: $R"
[ "$(code -H "Authorization: Bearer $CI" "$M/v2/ci/app/manifests/v1")" = 403 ] || fail "system pulled without a rule"
# An admin stores a rule: system accounts may pull ci/*.
ROOT=$(mtoken root:root-pw)
RULE='{"priority":10,"description":"ci pulls","effect":"allow","actions":["registry:pull"],"account_types":["system"],"repositories":["ci/*"]}'
[ "$(code -X POST -H "Authorization: Bearer $ROOT" -H 'Content-Type: application/json' -d "$RULE" "$M/v1/policy/rules")" = 201 ] \
  || fail "the admin could not store the rule"
[ "$(code -H "Authorization: Bearer $CI" "$M/v2/ci/app/manifests/v1")" = 200 ] || fail "system cannot pull ci/app after the rule"
[ "$(code -X POST -H "Authorization: Bearer $CI" "$M/v2/ci/app/blobs/uploads/")" = 403 ] || fail "the rule let system push"
# A guest can do nothing but the version check.
G=$(mtoken visitor:visitor-pw)
[ "$(code -H "Authorization: Bearer $G" "$M/v2/")" = 200 ] || fail "the guest failed the version check"
for path in ci/app/manifests/v1 ci/app/tags/list _catalog; do
  [ "$(code -H "Authorization: Bearer $G" "$M/v2/$path")" = 403 ] || fail "the guest read /v2/$path"
done
[ "$(code -X POST -H "Authorization: Bearer $G" "$M/v2/ci/app/blobs/uploads/")" = 403 ] || fail "the guest pushed"
kill "$MSRV_PID" "$MCIAS_PID"; wait "$MSRV_PID" "$MCIAS_PID" 2>/dev/null || true; MSRV_PID=""; MCIAS_PID=""
log "MCIAS over TLS: user pushed and pulled with skopeo; system refused, then allowed pull by a rule; guest only the version check"

log "11 passed, 0 failed"
