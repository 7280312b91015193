#!/usr/bin/env python3
"""The GC workload: seed unreferenced blobs fast, then run GC while small
pushes go on, and report how long GC took and how long the pushes waited.

Usage:
  gcbench.py seed DATA_DIR N           (mcrsrv stopped)
  gcbench.py run BASE_URL TOKEN REPO PUSHERS BASELINE_S TIMEOUT_S [SERVER_PID]

seed: writes N blob files of 64 random-looking bytes each into the
`mcrsrv dev` layout under DATA_DIR (layers/sha256/<2>/<64>, named by
their real sha256) and, in one SQLite transaction on DATA_DIR/mcr.db, a
`blobs` row for each (created two days ago) and a link to the repository
`bench/gcseed` (linked two days ago). No manifest references them, so
every seeded blob is older than any grace period and unreferenced: GC
sweeps them all. Writing files and rows directly is what makes seeding a
million blobs take a minute instead of hours of uploads; the database
must not be in use (mcrsrv stopped), and the schema must be the one
mcrsrv created (run it once first).

run: starts PUSHERS threads, each pushing small images in a loop over
one keep-alive connection — upload a 1 KiB layer (POST, then PUT
?digest= with the body), then PUT a manifest naming a shared config blob
and that layer — and times each push. After BASELINE_S seconds of pushes
without GC it starts GC (POST /v1/gc), polls GET /v1/gc/status every
20 ms until that run is done (failing after TIMEOUT_S), stops the
pushers and prints one JSON object: gc_seconds (the run's own
started_at..completed_at), blobs_removed, and for the pushes before and
during GC their count, p50, p99 and max in milliseconds. With
SERVER_PID (mcrsrv's, on this machine) it also prints server_cpu_seconds:
the CPU time (user + system, all threads) the server used from the start
of GC to its end, read from /proc/SERVER_PID/stat; unlike gc_seconds it
does not stretch when other processes take the cores.

Python standard library only.
"""

import hashlib
import http.client
import json
import os
import sqlite3
import statistics
import sys
import threading
import time
import urllib.parse
from datetime import datetime

SEED_REPO = "bench/gcseed"
DAY_MS = 86_400_000


def seed(data_dir: str, n: int) -> None:
    layers = os.path.join(data_dir, "layers", "sha256")
    db = os.path.join(data_dir, "mcr.db")
    if not os.path.exists(db):
        sys.exit(f"{db} does not exist: start mcrsrv dev once on {data_dir} first")
    old = int(time.time() * 1000) - 2 * DAY_MS
    salt = os.urandom(16).hex()
    made = set()
    rows = []
    for i in range(n):
        data = f"mcr-bench gc seed {salt} {i:09d}\n".encode().ljust(64, b".")
        hexd = hashlib.sha256(data).hexdigest()
        prefix = os.path.join(layers, hexd[:2])
        if hexd[:2] not in made:
            os.makedirs(prefix, mode=0o750, exist_ok=True)
            made.add(hexd[:2])
        fd = os.open(os.path.join(prefix, hexd), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        rows.append(("sha256:" + hexd, len(data)))
    con = sqlite3.connect(db)
    try:
        with con:
            con.execute("INSERT OR IGNORE INTO repositories (name, created) VALUES (?, ?)", (SEED_REPO, old))
            (repo_id,) = con.execute("SELECT id FROM repositories WHERE name = ?", (SEED_REPO,)).fetchone()
            con.executemany("INSERT INTO blobs (digest, size, created) VALUES (?, ?, ?)",
                            ((d, s, old) for d, s in rows))
            con.executemany("INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES (?, ?, ?)",
                            ((repo_id, d, old) for d, _ in rows))
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    # The files' directory entries reach the disk before GC deletes them,
    # so GC pays for real deletions, not for undoing unwritten ones.
    os.sync()


class Client:
    """One keep-alive HTTP/1.1 connection to the registry."""

    def __init__(self, base: str, token: str):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.auth = f"Bearer {token}"
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)

    def call(self, method: str, path: str, body: bytes = b"", headers=None, want=(200,)):
        h = {"Authorization": self.auth, "Content-Length": str(len(body))}
        h.update(headers or {})
        try:
            self.conn.request(method, path, body=body, headers=h)
            resp = self.conn.getresponse()
            data = resp.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            raise
        if resp.status not in want:
            raise RuntimeError(f"{method} {path} answered {resp.status}: {data[:300]!r}")
        return resp, data

    def upload(self, repo: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        resp, _ = self.call("POST", f"/v2/{repo}/blobs/uploads/", want=(202,))
        loc = resp.getheader("Location")
        u = urllib.parse.urlsplit(loc)
        sep = "&" if u.query else "?"
        path = f"{u.path}{'?' + u.query if u.query else ''}{sep}digest={digest}"
        self.call("PUT", path, body=data, headers={"Content-Type": "application/octet-stream"}, want=(201,))
        return digest


def manifest(config: tuple, layer: tuple) -> bytes:
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config[0], "size": config[1]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer[0], "size": layer[1]}],
    }, separators=(",", ":")).encode()


def pusher(base, token, repo, config, stop, out, errors, who):
    c = Client(base, token)
    i = 0
    while not stop.is_set():
        layer = f"mcr-bench push {who} {i} {os.urandom(8).hex()}\n".encode().ljust(1024, b"-")
        t0 = time.perf_counter()
        try:
            d = c.upload(repo, layer)
            c.call("PUT", f"/v2/{repo}/manifests/p{who}-{i}", body=manifest(config, (d, len(layer))),
                   headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, want=(201,))
        except Exception as e:  # noqa: BLE001 - reported, and the run fails
            errors.append(f"pusher {who}: {e}")
            return
        out.append((time.monotonic(), (time.perf_counter() - t0) * 1000))
        i += 1


def summary(lat):
    if not lat:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    lat = sorted(lat)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return {"count": len(lat), "p50_ms": round(statistics.median(lat), 2), "p99_ms": round(p99, 2),
            "max_ms": round(lat[-1], 2)}


def cpu_seconds(pid):
    """utime + stime of the process, all threads, in seconds (None without a pid)."""
    if pid is None:
        return None
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces: the fields after it start
        # past its closing parenthesis (utime and stime are fields 14, 15).
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(base, token, repo, pushers, baseline_s, timeout_s, pid=None) -> int:
    admin = Client(base, token)
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    cfg = (admin.upload(repo, config), len(config))
    stop, out, errors = threading.Event(), [], []
    threads = [threading.Thread(target=pusher, args=(base, token, repo, cfg, stop, out, errors, w), daemon=True)
               for w in range(pushers)]
    for t in threads:
        t.start()
    time.sleep(baseline_s)
    resp, body = admin.call("POST", "/v1/gc", want=(202,))
    gc_id = json.loads(body)["id"]
    gc_start = time.monotonic()
    cpu_start = cpu_seconds(pid)
    report = None
    while time.monotonic() - gc_start < timeout_s and not errors:
        _, body = admin.call("GET", "/v1/gc/status")
        status = json.loads(body)
        last = status.get("last_run") or {}
        if not status.get("running") and last.get("id") == gc_id:
            report = last
            break
        time.sleep(0.02)
    gc_end = time.monotonic()
    cpu_end = cpu_seconds(pid)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    if errors:
        print("; ".join(errors), file=sys.stderr)
        return 1
    if report is None:
        print(f"GC {gc_id} did not finish within {timeout_s} s", file=sys.stderr)
        return 1
    # A push counts as during GC if it ended inside the GC window or
    # overlapped its start.
    before = [ms for end, ms in out if end < gc_start]
    during = [ms for end, ms in out if gc_start <= end <= gc_end + 0.001]

    def millis(ts: str) -> float:
        # RFC 3339 with milliseconds, as the API prints it.
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000

    gc_seconds = None
    try:
        gc_seconds = (millis(report["completed_at"]) - millis(report["started_at"])) / 1000
    except (KeyError, ValueError, TypeError):
        pass
    if gc_seconds is None:
        gc_seconds = gc_end - gc_start
    print(json.dumps({
        "gc_seconds": round(gc_seconds, 3),
        "gc_wall_seconds": round(gc_end - gc_start, 3),
        "blobs_removed": report.get("blobs_removed"),
        "server_cpu_seconds": None if pid is None else round(cpu_end - cpu_start, 2),
        "before": summary(before),
        "during": summary(during),
    }))
    return 0


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "seed":
        n = int(sys.argv[3])
        if not 0 < n <= 10_000_000:
            print("N must be 1..10000000", file=sys.stderr)
            return 2
        seed(sys.argv[2], n)
        return 0
    if len(sys.argv) in (8, 9) and sys.argv[1] == "run":
        base, token, repo, pushers, baseline, timeout = sys.argv[2:8]
        pid = int(sys.argv[8]) if len(sys.argv) == 9 else None
        return run(base, token, repo, int(pushers), float(baseline), float(timeout), pid)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
