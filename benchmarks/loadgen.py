"""Load generator for ``python -m benchmarks``: similar-by-id requests from its own process.

    python -m benchmarks.loadgen --url http://127.0.0.1:8000 --items 100000 --threads 8

Prints one JSON object: requests, errors, seconds, requests/s, latency percentiles.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import threading
import time
from urllib.parse import urlsplit


def run(url: str, items: int, threads: int, seconds: float, prefix: str) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    deadline = time.perf_counter() + seconds
    start = threading.Barrier(threads + 1)

    def client(slot: int) -> None:
        rng = random.Random(slot)
        conn = http.client.HTTPConnection(host, port, timeout=30)
        start.wait()
        while time.perf_counter() < deadline:
            path = f"/v1/items/{prefix}{rng.randrange(items)}/similar?limit=10"
            began = time.perf_counter()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
            latencies[slot].append(time.perf_counter() - began)
            if not ok:
                errors[slot] += 1
        conn.close()

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    began = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - began
    done = sorted(x for per in latencies for x in per)

    def pct(q: float) -> float:
        return done[min(len(done) - 1, int(q * len(done)))] * 1000 if done else float("nan")

    return {
        "requests": len(done),
        "errors": sum(errors),
        "seconds": elapsed,
        "rps": len(done) / elapsed,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "threads": threads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--items", type=int, required=True, help="ids are PREFIX0..PREFIXn-1")
    parser.add_argument("--prefix", default="s")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(json.dumps(run(args.url, args.items, args.threads, args.seconds, args.prefix)))


if __name__ == "__main__":
    main()
