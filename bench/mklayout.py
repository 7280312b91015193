#!/usr/bin/env python3
"""Writes an OCI image layout with N random tar+gzip layers for skopeo.

Usage: mklayout.py DIR TAG LAYERS LAYER_BYTES

Each layer is a tar holding one file of LAYER_BYTES random bytes, gzipped
(random data does not shrink, so a layer is LAYER_BYTES plus a few hundred
bytes of headers). Prints the manifest digest ("sha256:...") and its size.
Python standard library only.
"""

import gzip
import hashlib
import io
import json
import os
import sys
import tarfile


def put_blob(blobs: str, data: bytes) -> str:
    hexd = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, hexd), "wb") as f:
        f.write(data)
    return hexd


def layer(raw: bytes, name: str) -> tuple[bytes, str]:
    """Returns (gzipped tar, sha256 of the uncompressed tar = diff_id)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(raw)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(raw))
    tar_bytes = buf.getvalue()
    # mtime=0 keeps the gzip header deterministic for the same content.
    return gzip.compress(tar_bytes, compresslevel=1, mtime=0), hashlib.sha256(tar_bytes).hexdigest()


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    out, tag, n, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if not (0 < n <= 10_000 and 0 < size <= 64 << 20):
        print("LAYERS must be 1..10000 and LAYER_BYTES 1..64 MiB", file=sys.stderr)
        return 2
    blobs = os.path.join(out, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    layers, diff_ids = [], []
    for i in range(n):
        gz, diff_id = layer(os.urandom(size), f"layer-{i:05d}.bin")
        layers.append({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": "sha256:" + put_blob(blobs, gz),
            "size": len(gz),
        })
        diff_ids.append("sha256:" + diff_id)
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }, separators=(",", ":")).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + put_blob(blobs, config),
            "size": len(config),
        },
        "layers": layers,
    }, separators=(",", ":")).encode()
    mhex = put_blob(blobs, manifest)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:" + mhex,
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }],
        }, f)
    print(f"sha256:{mhex} {len(manifest)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
