# OCI image layouts of random content for the end-to-end scripts: blobs,
# image manifests, index.json. Sourced; needs $WORK (a scratch directory).
# shellcheck shell=bash

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# put_blob LAYOUT FILE -> prints the digest hex, moving FILE into the layout
put_blob() {
  local h; h=$(sha "$2"); mv "$2" "$1/blobs/sha256/$h"; echo "$h"
}

# make_image LAYOUT ARCH LAYERS [LAYER_KIB] -> prints "hex size" of the
# image manifest; layers of random content, LAYER_KIB each or 1..512 KiB
make_image() {
  local dir=$1 arch=$2 n=$3 kib=${4:-} layers="" diffs="" i
  mkdir -p "$dir/blobs/sha256"
  for i in $(seq 1 "$n"); do
    local raw="$WORK/raw.$$" tgz="$WORK/layer.$$"
    head -c $(( ${kib:-$((RANDOM % 512 + 1))} * 1024 )) /dev/urandom >"$raw"
    tar -C "$WORK" -cf - "$(basename "$raw")" | gzip -n >"$tgz"
    diffs+="${diffs:+,}\"sha256:$(tar -C "$WORK" -cf - "$(basename "$raw")" | sha256sum | cut -d' ' -f1)\""
    local lsize; lsize=$(size "$tgz")
    local lhex; lhex=$(put_blob "$dir" "$tgz")
    layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$lhex\",\"size\":$lsize}"
    rm -f "$raw"
  done
  local cfg="$WORK/config.$$"
  printf '{"architecture":"%s","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[%s]}}' "$arch" "$diffs" >"$cfg"
  local csize; csize=$(size "$cfg")
  local chex; chex=$(put_blob "$dir" "$cfg")
  local man="$WORK/manifest.$$"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' "$chex" "$csize" "$layers" >"$man"
  local msize; msize=$(size "$man")
  local mhex; mhex=$(put_blob "$dir" "$man")
  echo "$mhex $msize"
}

# write_index LAYOUT TAG MEDIATYPE HEX SIZE
write_index() {
  printf '{"imageLayoutVersion":"1.0.0"}' >"$1/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"%s","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
    "$3" "$4" "$5" "$2" >"$1/index.json"
}

# compare_layouts A B: every blob of A is in B, byte for byte (the
# caller's `fail` reports a difference)
compare_layouts() {
  local a=$1 b=$2 f
  for f in "$a"/blobs/sha256/*; do
    cmp -s "$f" "$b/blobs/sha256/$(basename "$f")" || fail "blob $(basename "$f") differs or is missing after the round trip"
  done
}
