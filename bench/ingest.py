"""Ingestion load against a real `tunelens serve` on loopback (issue 4).

N client processes post batches of 500 prediction records (JSON, the documented body)
as fast as the server acknowledges them, for a fixed time after a warm-up. Reports
records/s, request latency p50/p99, and the server's RSS after the warm-up and at the
end; for a DuckDB store and, when ``--postgres URL`` is given, a PostgreSQL store.

    .venv/bin/python bench/ingest.py                      # 4 clients, 60 s, DuckDB
    .venv/bin/python bench/ingest.py --seconds 20 --clients 4 \\
        --postgres postgresql://root@127.0.0.1:5432/test

Goal (this 2-core machine, DuckDB): at least 50,000 records/s sustained for 60 s from 4
clients, with the server's RSS at the end within 20% of its value after the warm-up.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_server(store: str, port: int, extra: list[str]) -> subprocess.Popen[bytes]:
    import httpx

    env = {**os.environ, "TUNELENS_TOKEN": ""}
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "tunelens.cli", "serve"),
            *("--store", store, "--port", str(port), *extra),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start")


def _bodies(client: int, n_batches: int, batch: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed + client)
    out = []
    for b in range(n_batches):
        p = rng.random(batch)
        records = [
            {
                "id": f"c{client}-b{b}-{i}",
                "prediction": int(p[i] >= 0.5),
                "score": float(p[i]),
                "latency_ms": float(rng.gamma(2.0, 2.0)),
                "features": {"x": float(rng.normal()), "plan": "abc"[i % 3]},
            }
            for i in range(batch)
        ]
        out.append(json.dumps({"records": records}).encode())
    return out


def _client(
    client: int, url: str, start_at: float, warm_until: float, stop_at: float, queue: Any
) -> None:
    import httpx

    bodies = _bodies(client, 64, 500, 7)
    latencies: list[float] = []
    records = 0
    errors = 0
    i = 0
    with httpx.Client(base_url=url, timeout=30, headers={"content-type": "application/json"}) as c:
        while time.time() < start_at:
            time.sleep(0.01)
        while True:
            now = time.time()
            if now >= stop_at:
                break
            body = bodies[i % len(bodies)]
            # unique ids per request: the batch template plus a round number
            if i >= len(bodies):
                body = body.replace(b'"id": "c', f'"id": "r{i // len(bodies)}c'.encode())
            t = time.perf_counter()
            r = c.post("/api/v1/models/bench/predictions", content=body)
            dt = time.perf_counter() - t
            i += 1
            if now >= warm_until:
                if r.status_code == 202:
                    records += 500
                    latencies.append(dt)
                else:
                    errors += 1
    queue.put({"client": client, "records": records, "latencies": latencies, "errors": errors})


def run(
    store: str, clients: int, seconds: float, warmup: float, extra: list[str]
) -> dict[str, Any]:
    import psutil

    port = _free_port()
    server = _start_server(store, port, extra)
    proc = psutil.Process(server.pid)
    url = f"http://127.0.0.1:{port}"
    start_at = time.time() + 2.0
    warm_until = start_at + warmup
    stop_at = warm_until + seconds
    queue: Any = mp.Queue()
    workers = [
        mp.Process(target=_client, args=(k, url, start_at, warm_until, stop_at, queue))
        for k in range(clients)
    ]
    for w in workers:
        w.start()
    rss_start = 0
    samples = []
    while time.time() < stop_at:
        now = time.time()
        rss = proc.memory_info().rss
        if now >= warm_until and not rss_start:
            rss_start = rss
        samples.append(rss)
        time.sleep(0.5)
    results = [queue.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    rss_end = proc.memory_info().rss
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
    lat = np.concatenate([np.asarray(r["latencies"]) for r in results]) * 1000.0
    records = sum(r["records"] for r in results)
    return {
        "store": store.split("://")[0] if "://" in store else "duckdb",
        "clients": clients,
        "seconds": seconds,
        "records": records,
        "records_per_s": records / seconds,
        "requests": int(lat.size),
        "errors": sum(r["errors"] for r in results),
        "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "latency_p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "rss_after_warmup_mib": rss_start / 2**20,
        "rss_end_mib": rss_end / 2**20,
        "rss_peak_mib": max(samples) / 2**20 if samples else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--postgres", help="also run against this PostgreSQL URL")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--duckdb-memory", help="passed to `tunelens serve --duckdb-memory`")
    args = ap.parse_args(argv)
    print(f"# tunelens ingest bench, {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}"
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        stores = [str(Path(tmp) / "ingest.duckdb")]
        schema = f"tunelens_bench_{os.getpid()}"
        if args.postgres:
            import psycopg

            with psycopg.connect(args.postgres, autocommit=True) as con:
                con.execute(f"CREATE SCHEMA {schema}")
            sep = "&" if "?" in args.postgres else "?"
            stores.append(f"{args.postgres}{sep}options=-csearch_path%3D{schema}")
        for store in stores:
            extra = ["--duckdb-memory", args.duckdb_memory] if args.duckdb_memory else []
            r = run(store, args.clients, args.seconds, args.warmup, extra)
            results.append(r)
            growth = (r["rss_end_mib"] / r["rss_after_warmup_mib"] - 1) * 100
            print(
                f"{r['store']:>10}: {r['records_per_s']:,.0f} records/s from {r['clients']} "
                f"clients over {r['seconds']:.0f} s ({r['requests']} requests, {r['errors']} "
                f"errors); latency p50 {r['latency_p50_ms']:.1f} ms, p99 "
                f"{r['latency_p99_ms']:.1f} ms; server RSS {r['rss_after_warmup_mib']:.0f} -> "
                f"{r['rss_end_mib']:.0f} MiB ({growth:+.1f}%)"
            )
        if args.postgres:
            with psycopg.connect(args.postgres, autocommit=True) as con:
                con.execute(f"DROP SCHEMA {schema} CASCADE")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
