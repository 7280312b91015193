#!/usr/bin/env python3
"""Turns the runner's raw measurements into the Markdown results table.

Usage: report.py RESULTS.tsv [GC.jsonl]

RESULTS.tsv has one measurement a line: workload, server, round, metric,
value (tab-separated; round 0 for once-per-workload values such as peak
RSS). Servers: mcr, dist (Distribution with htpasswd auth), dist-noauth
(Distribution without auth, for reference on the wrk rows), limit (what
the machine does with the same bytes: nginx serving the blob files for
the GET rows, dd write + fdatasync then sha256sum for the uploads),
limit-write / limit-sha256 (the two parts of an upload's limit), and with
BENCH_METRICS=1 mcr-metrics (mcrsrv with metrics on and scraped every
second, on the wrk rows). GC.jsonl has one GC run a line, as run.sh
writes it from gcbench.py.

Prints the summary table (medians over rounds) with MCR / limit, the
limits on their own, the cost of metrics when mcr-metrics ran, the GC
table, and then every round's raw values.
Sizes in the labels come from the BENCH_* variables run.sh exports.
Python standard library only.
"""

import json
import os
import statistics
import sys
from collections import defaultdict


def env(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def size(mib: int) -> str:
    return f"{mib // 1024} GiB" if mib % 1024 == 0 else f"{mib} MiB"


BIG, CHUNKED, CHUNK = env("BENCH_BIG_MIB", 1024), env("BENCH_CHUNKED_MIB", 256), env("BENCH_CHUNK_MIB", 8)
LAYERS, LAYER_KIB, CONNS = env("BENCH_LAYERS", 200), env("BENCH_LAYER_KIB", 256), env("BENCH_WRK_CONNS", 32)
WRK_SECONDS = env("BENCH_WRK_SECONDS", 10)
GC_PUSHERS = env("BENCH_GC_PUSHERS", 2)

# (workload, metric, better, label) in table order; better is "higher" or "lower".
ROWS = [
    ("mono_upload", "MiB/s", "higher", f"monolithic upload {size(BIG)}, POST + PUT with body"),
    ("download", "MiB/s", "higher", f"download of the {size(BIG)} blob"),
    ("chunked_upload", "MiB/s", "higher", f"chunked upload {size(CHUNKED)}, {CHUNK} MiB PATCHes + PUT"),
    ("skopeo_push", "s", "lower", f"skopeo push, {LAYERS} layers x {LAYER_KIB} KiB"),
    ("manifest_get", "req/s", "higher", f"manifest GET, wrk {CONNS} conns"),
    ("manifest_get", "p50 ms", "lower", "manifest GET latency p50"),
    ("manifest_get", "p99 ms", "lower", "manifest GET latency p99"),
    ("blob_get", "req/s", "higher", f"1 MiB blob GET, wrk {CONNS} conns"),
    ("blob_get", "p50 ms", "lower", "1 MiB blob GET latency p50"),
    ("blob_get", "p99 ms", "lower", "1 MiB blob GET latency p99"),
]
WRK_WORKLOADS = ["manifest_get", "blob_get"]
RSS_WORKLOADS = ["startup", "mono_upload", "download", "chunked_upload", "skopeo_push", "manifest_get", "blob_get"]


def fmt(v):
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    data = defaultdict(list)  # (workload, server, metric) -> [(round, value)]
    with open(sys.argv[1]) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 5:
                continue
            w, s, r, m, v = parts
            try:
                data[(w, s, m)].append((int(r), float(v)))
            except ValueError:
                continue

    # The wrk phases serve very different numbers of requests: their CPU
    # time is shown per request (all rounds' CPU over all rounds' requests).
    for w in WRK_WORKLOADS:
        for srv in ("mcr", "dist", "mcr-metrics"):
            cpu = data.get((w, srv, "server CPU s"))
            rps = [v for _, v in data.get((w, srv, "req/s"), [])]
            if cpu and sum(rps) > 0:
                data[(w, srv, "CPU ms/req")] = [(0, cpu[0][1] * 1000 / (sum(rps) * WRK_SECONDS))]

    def med(w, s, m):
        vals = [v for _, v in data.get((w, s, m), [])]
        return statistics.median(vals) if vals else None

    rows = [(w, m, b, label) for (w, m, b, label) in ROWS]
    for w in RSS_WORKLOADS:
        rows.append((w, "peak RSS MiB", "lower", f"peak RSS during {w.replace('_', ' ')}"))
    rows.append(("startup", "RSS MiB", "lower", "RSS when idle after start"))
    for w in RSS_WORKLOADS:
        if w in WRK_WORKLOADS:
            rows.append((w, "CPU ms/req", "lower", f"server CPU per request, {w.replace('_', ' ')}"))
        else:
            rows.append((w, "server CPU s", "lower", f"server CPU time, {w.replace('_', ' ')} (all rounds)"))

    out = []
    table = []
    for w, m, better, label in rows:
        a, b, c = med(w, "mcr", m), med(w, "dist", m), med(w, "dist-noauth", m)
        lim = med(w, "limit", m) if m in ("MiB/s", "req/s") else None
        lratio = f"{a / lim:.2f}" if a is not None and lim else "–"
        if a is None and b is None:
            continue
        ratio = a / b if a is not None and b not in (None, 0) else None
        if ratio is None:
            winner = "–"
        elif abs(ratio - 1) < 0.05:
            winner = "tie (±5%)"
        elif (ratio > 1) == (better == "higher"):
            winner = "MCR"
        else:
            winner = "Distribution"
        when = "ratio > 1" if better == "higher" else "ratio < 1"
        rtxt = f"{ratio:.2f}" if ratio is not None else "–"
        table.append(f"| {label} | {m} | {fmt(a)} | {fmt(b)} | {rtxt} | {when} | {winner} | {fmt(c)} | {fmt(lim)} | {lratio} |")
    # Empty when only the GC workload ran (BENCH_ONLY=gc).
    if table:
        out.append("| workload | unit | MCR | Distribution | MCR/Dist | MCR better when | winner | Distribution, no auth"
                   " | limit | MCR/limit |")
        out.append("|---|---|--:|--:|--:|---|---|--:|--:|--:|")
        out.extend(table)

    # What metrics cost: mcrsrv with metrics on and scraped every second
    # against mcrsrv with them off, same data, same rounds.
    if any(s == "mcr-metrics" for (_, s, _) in data):
        out.append("\nMetrics cost (BENCH_METRICS=1): `mcr` with metrics off, `mcr-metrics` with them on and scraped every second.\n")
        out.append("| workload | unit | MCR | MCR + metrics | change | better when |")
        out.append("|---|---|--:|--:|--:|---|")
        for w in WRK_WORKLOADS:
            for m, better in (("req/s", "higher"), ("p50 ms", "lower"), ("p99 ms", "lower"),
                              ("CPU ms/req", "lower"), ("peak RSS MiB", "lower")):
                a, b = med(w, "mcr", m), med(w, "mcr-metrics", m)
                if a is None or b is None:
                    continue
                change = f"{(b / a - 1) * 100:+.1f}%" if a else "–"
                out.append(f"| {w.replace('_', ' ')} | {m} | {fmt(a)} | {fmt(b)} | {change} | {better} |")
            # The two ran back to back in each round, so a round's ratio
            # cancels what drifts between rounds (other load, the host);
            # the median of the rounds' ratios is the steadier figure.
            off = dict(data.get((w, "mcr", "req/s"), []))
            on = dict(data.get((w, "mcr-metrics", "req/s"), []))
            pairs = sorted(on[r] / off[r] - 1 for r in off if r in on and off[r] > 0)
            if pairs:
                each = ", ".join(f"{p * 100:+.1f}%" for p in pairs)
                out.append(f"| {w.replace('_', ' ')} | req/s, median of the rounds' pairs ({each}) | | | "
                           f"{statistics.median(pairs) * 100:+.1f}% | higher |")

    # Peak over the whole run: servers restart per workload, so it is the
    # largest per-workload peak.
    for s, name in (("mcr", "MCR"), ("dist", "Distribution")):
        peaks = [v for (w, srv, m), vals in data.items() if srv == s and m == "peak RSS MiB" for _, v in vals]
        if peaks:
            out.append(f"\nPeak RSS over the whole run, {name}: {fmt(max(peaks))} MiB.")

    limits = [
        ("mono_upload", "limit-write", f"write + fdatasync of the {size(BIG)} file (dd bs=1M conv=fdatasync)"),
        ("mono_upload", "limit-sha256", f"sha256sum of the {size(BIG)} file (page cache)"),
        ("mono_upload", "limit", f"both, one after the other: the {size(BIG)} upload's limit"),
        ("chunked_upload", "limit-write", f"write + fdatasync of the {size(CHUNKED)} file"),
        ("chunked_upload", "limit-sha256", f"sha256sum of the {size(CHUNKED)} file"),
        ("chunked_upload", "limit", f"both: the {size(CHUNKED)} chunked upload's limit"),
        ("download", "limit", f"nginx (sendfile), curl GET of MCR's {size(BIG)} blob file"),
    ]
    lrows = [(label, med(w, s, "MiB/s")) for w, s, label in limits if med(w, s, "MiB/s") is not None]
    for w, what in (("manifest_get", "the manifest's bytes"), ("blob_get", "MCR's 1 MiB blob file")):
        v = med(w, "limit", "req/s")
        if v is not None:
            lrows.append((f"nginx serving {what}, wrk {CONNS} conns (req/s)", v))
    if lrows:
        out.append("\nThe limits, measured in the same rounds on the same files (MiB/s unless said):\n")
        out.append("| limit | value |")
        out.append("|---|--:|")
        out.extend(f"| {label} | {fmt(v)} |" for label, v in lrows)

    if len(sys.argv) == 3 and os.path.exists(sys.argv[2]):
        runs = []
        with open(sys.argv[2]) as f:
            for line in f:
                try:
                    runs.append(json.loads(line))
                except ValueError:
                    continue
        if runs:
            out.append(f"\nGC of N unreferenced blobs while {GC_PUSHERS} clients push small images"
                       " (1 KiB layer + manifest each); latencies in ms:\n")
            out.append("| N | GC s | GC µs per blob | server CPU µs per blob | removed | pushes during GC"
                       " | p50 | p99 | max | p99 before GC | max before GC | peak RSS MiB |")
            out.append("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
            for g in runs:
                r, d, b = g["result"], g["result"]["during"], g["result"]["before"]
                per = r["gc_seconds"] * 1e6 / g["n"] if g["n"] else None
                cpu = r.get("server_cpu_seconds")
                cpu = cpu * 1e6 / g["n"] if cpu is not None and g["n"] else None
                out.append(f"| {g['n']} | {fmt(r['gc_seconds'])} | {fmt(per)} | {fmt(cpu)} | {r['blobs_removed']}"
                           f" | {d['count']}"
                           f" | {fmt(d['p50_ms'])} | {fmt(d['p99_ms'])} | {fmt(d['max_ms'])}"
                           f" | {fmt(b['p99_ms'])} | {fmt(b['max_ms'])} | {fmt(g.get('peak_rss_mib'))} |")

    if data:
        out.append("\n<details><summary>Every round</summary>\n")
        out.append("| workload | unit | server | rounds |")
        out.append("|---|---|---|---|")
        for (w, s, m), vals in sorted(data.items()):
            vals = ", ".join(fmt(v) for _, v in sorted(vals))
            out.append(f"| {w} | {m} | {s} | {vals} |")
        out.append("\n</details>")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
