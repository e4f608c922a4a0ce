"""Requests per second and latency of `torchwork serve` under a bounded load, on loopback only.

    python benchmarks/serve_load.py [--requests 2000] [--threads 8] [--rows 1,100]

Trains a small table model (four numeric columns and a text column, a binary label) in a
temporary folder, starts the server in its own process on a free 127.0.0.1 port, and for each
request size sends --requests POST /predict requests from --threads client threads, each
with its own keep-alive connection, after a short warm-up. Prints requests/s, rows/s and
p50/p99 latency as a markdown table, then stops the server.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table

HOST = "127.0.0.1"  # the load goes to this machine only
WARMUP = 50


def train_model(folder: Path) -> tuple[Path, list[dict]]:
    """A small classification model and its feature rows."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from torchwork.cli import main

    rng = np.random.default_rng(0)
    n = 1000
    columns = {f"x{i}": rng.normal(size=n) for i in range(4)}
    columns["color"] = rng.choice(["blue", "green", "red"], n)
    columns["label"] = np.where(columns["x0"] + (columns["color"] == "red") > 0.3, "yes", "no")
    pcsv.write_csv(pa.table(columns), folder / "data.csv")
    args = ["run", "--data", str(folder / "data.csv"), "--out", str(folder / "run")]
    with contextlib.redirect_stdout(io.StringIO()):
        code = main([*args, "--epochs", "20", "--no-plots"])
    if code != 0:
        sys.exit(f"training the benchmark model failed (exit code {code})")
    rows = pa.table(columns).drop_columns(["label"]).to_pylist()
    return folder / "run" / "model.safetensors", rows


def start_server(model: Path, log: Path) -> tuple[subprocess.Popen, int]:
    """`serve(model, port=0)` in its own process, so the clients do not share its GIL."""
    code = "import sys; from torchwork.serve.server import serve; serve(sys.argv[1], host=sys.argv[2], port=0)"
    process = subprocess.Popen(
        [sys.executable, "-u", "-c", code, str(model), HOST],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )
    watchdog = threading.Timer(60, process.kill)  # a server that never starts
    watchdog.start()
    line = process.stdout.readline()
    watchdog.cancel()
    marker = f" at http://{HOST}:"
    if marker not in line:
        process.kill()
        sys.exit(f"the server did not start: {line}{log.read_text()}")
    return process, int(line.split(marker)[1].split(":")[0])


def load(port: int, bodies: list[bytes], requests: int, threads: int) -> tuple[float, list, int]:
    """Send `requests` requests from `threads` threads: (seconds, latencies, errors)."""
    share = [requests // threads + (1 if i < requests % threads else 0) for i in range(threads)]

    def client(worker: int) -> tuple[list[float], int]:
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        latencies, errors = [], 0
        headers = {"Content-Type": "application/json"}
        try:
            for i in range(share[worker]):
                started = time.perf_counter()
                try:
                    conn.request("POST", "/predict", bodies[(worker + i) % len(bodies)], headers)
                    response = conn.getresponse()
                    response.read()
                    errors += response.status != 200
                except (OSError, http.client.HTTPException):
                    errors += 1
                    conn.close()
                    conn = http.client.HTTPConnection(HOST, port, timeout=30)
                latencies.append(time.perf_counter() - started)
        finally:
            conn.close()
        return latencies, errors

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(client, range(threads)))
    seconds = time.perf_counter() - started
    return seconds, [t for r in results for t in r[0]], sum(r[1] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per request size")
    parser.add_argument("--threads", type=int, default=8, help="client threads")
    parser.add_argument("--rows", default="1,100", help="rows per request, comma-separated")
    args = parser.parse_args()
    if not 1 <= args.requests <= 100_000 or not 1 <= args.threads <= 64:
        sys.exit("--requests must be 1 to 100000 and --threads 1 to 64: the load stays bounded")
    sizes = [int(s) for s in args.rows.split(",")]

    with tempfile.TemporaryDirectory() as folder:
        model, rows = train_model(Path(folder))
        process, port = start_server(model, Path(folder) / "server.log")
        table = []
        try:
            for size in sizes:
                bodies = [
                    json.dumps({"rows": rows[i : i + size]}).encode()
                    for i in range(0, len(rows) - size + 1, max(1, size))[:50]
                ]
                load(port, bodies, WARMUP, min(args.threads, WARMUP))
                seconds, latencies, errors = load(port, bodies, args.requests, args.threads)
                ms = np.array(latencies) * 1000
                table.append(
                    [
                        str(size),
                        str(args.requests),
                        str(args.threads),
                        f"{args.requests / seconds:,.0f}",
                        f"{args.requests * size / seconds:,.0f}",
                        f"{statistics.median(ms):.1f}",
                        f"{np.percentile(ms, 99):.1f}",
                        str(errors),
                    ]
                )
        finally:
            process.terminate()  # SIGTERM: serve stops cleanly
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()

    from torchwork.serve.server import THREADS

    print(f"torchwork serve (waitress, {THREADS} server threads) on {HOST}, {machine()}")
    print()
    print(
        markdown_table(
            [
                "rows/request",
                "requests",
                "client threads",
                "requests/s",
                "rows/s",
                "p50 ms",
                "p99 ms",
                "errors",
            ],
            table,
        )
    )


if __name__ == "__main__":
    main()
