"""Bounded load test: a second process hammers the running API with a mix of
similar-by-id and search-by-upload queries, and reports errors, latency per window and the
server's memory over time.

    python benchmarks/load_test.py [--api http://127.0.0.1:8000 --pid PID]
        [--duration 300] [--concurrency 4] [--search-share 0.2] [--seed-items 48]
        [--window 60] [--report build/load-test.json]

Without ``--api`` it starts ``lookalike serve`` (the embedded default: API, worker and
qdrant-edge in one process) on a free port over a temporary data dir, indexes
``--seed-items`` real photos (Debian's tuxpaint-stamps-default) and tests that. With
``--pid`` (or the started server) it samples the server's resident memory (/proc) every few
seconds. Exits 1 on any 5xx or transport error, 0 otherwise; the report holds, per window,
the request count, p50 and p99 of each kind, and the RSS samples.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
STAMPS = Path("/usr/share/tuxpaint/stamps")


@dataclass
class Sample:
    at: float
    kind: str
    status: int
    seconds: float


@dataclass
class LoadResult:
    samples: list[Sample] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)
    transport_errors: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def report(self, window_s: float) -> dict[str, Any]:
        windows: list[dict[str, Any]] = []
        end = max((s.at for s in self.samples), default=0.0)
        start = 0.0
        while start <= end:
            in_window = [s for s in self.samples if start <= s.at < start + window_s]
            row: dict[str, Any] = {"from_s": start, "requests": len(in_window)}
            for kind in sorted({s.kind for s in self.samples}):
                times = sorted(s.seconds for s in in_window if s.kind == kind)
                row[kind] = _percentiles(times)
            windows.append(row)
            start += window_s
        statuses: dict[str, int] = {}
        for s in self.samples:
            statuses[str(s.status)] = statuses.get(str(s.status), 0) + 1
        rss_mib = [round(r / 2**20, 1) for _, r in self.rss]
        return {
            "duration_s": round(self.duration_s, 1),
            "requests": len(self.samples),
            "requests_per_s": round(len(self.samples) / max(self.duration_s, 1e-9), 1),
            "statuses": statuses,
            "server_errors": sum(1 for s in self.samples if s.status >= 500),
            "transport_errors": self.transport_errors[:20],
            "overall": {
                kind: _percentiles(sorted(s.seconds for s in self.samples if s.kind == kind))
                for kind in sorted({s.kind for s in self.samples})
            },
            "windows": windows,
            "rss_mib": {
                "samples": [[round(t, 1), m] for (t, _), m in zip(self.rss, rss_mib, strict=True)],
                "first": rss_mib[0] if rss_mib else None,
                "last": rss_mib[-1] if rss_mib else None,
                "max": max(rss_mib) if rss_mib else None,
            },
        }


def _percentiles(times: list[float]) -> dict[str, float | int]:
    if not times:
        return {"n": 0}
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return {
        "n": len(times),
        "p50_ms": round(statistics.median(times) * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
    }


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def run_load(
    base_url: str,
    *,
    item_ids: list[str],
    photos: list[bytes],
    duration_s: float,
    concurrency: int = 4,
    search_share: float = 0.2,
    pid: int | None = None,
    rss_every_s: float = 5.0,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """Closed-loop load: `concurrency` clients, each sending its next request as soon as the
    last one is answered, until `duration_s` has passed."""
    result = LoadResult()
    lock = threading.Lock()
    started = time.monotonic()
    deadline = started + duration_s

    def client(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=base_url, headers=headers or {}, timeout=60) as http:
            while time.monotonic() < deadline:
                t0 = time.monotonic()
                try:
                    kind, status = _one_request(http, rng, item_ids, photos, search_share)
                except httpx.HTTPError as exc:
                    with lock:
                        result.transport_errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                t1 = time.monotonic()
                with lock:
                    result.samples.append(Sample(t0 - started, kind, status, t1 - t0))

    def sample_memory() -> None:
        while time.monotonic() < deadline and pid is not None:
            try:
                result.rss.append((time.monotonic() - started, rss_bytes(pid)))
            except OSError:
                return
            time.sleep(rss_every_s)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    threads.append(threading.Thread(target=sample_memory))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if pid is not None:
        result.rss.append((time.monotonic() - started, rss_bytes(pid)))
    result.duration_s = time.monotonic() - started
    return result


def _one_request(
    http: httpx.Client,
    rng: random.Random,
    item_ids: list[str],
    photos: list[bytes],
    search_share: float,
) -> tuple[str, int]:
    if rng.random() < search_share:
        files = {"image": ("q.png", rng.choice(photos))}
        return "search_by_upload", http.post(
            "/v1/search", params={"limit": 10}, files=files
        ).status_code
    item_id = rng.choice(item_ids)
    resp = http.get(f"/v1/items/{item_id}/similar", params={"limit": 10})
    return "similar_by_id", resp.status_code


def seed_catalog(
    base_url: str, count: int, timeout_s: float = 600
) -> tuple[list[str], list[bytes]]:
    """Index `count` real photos through the API; returns their ids and the photos."""
    paths = sorted(p for p in STAMPS.rglob("*.png") if p.stat().st_size > 20_000)
    if len(paths) < count:
        raise SystemExit("tuxpaint-stamps-default is missing: apt-get install it")
    chosen = paths[:: max(1, len(paths) // count)][:count]
    photos = [p.read_bytes() for p in chosen]
    ids, tasks = [], []
    with httpx.Client(base_url=base_url, timeout=60) as http:
        for i, data in enumerate(photos):
            resp = http.post(
                "/v1/items",
                data={
                    "id": f"load-{i}",
                    "metadata": json.dumps({"category": chosen[i].parent.name}),
                },
                files={"image": ("a.png", data)},
            )
            resp.raise_for_status()
            ids.append(f"load-{i}")
            tasks.append(resp.json()["task_id"])
        deadline = time.monotonic() + timeout_s
        for task_id in tasks:
            while True:
                status = http.get(f"/v1/tasks/{task_id}").json()["status"]
                if status in ("succeeded", "failed"):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("seeding the catalog timed out")
                time.sleep(0.2)
    return ids, photos


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    data_dir: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """`lookalike serve` (embedded default) on a free port; returns (process, base URL)."""
    port = free_port()
    environ = {**os.environ, "LOOKALIKE_DATA_DIR": str(data_dir), **(env or {})}
    environ.pop("LOOKALIKE_REDIS_URL", None)
    environ.setdefault("LOOKALIKE_MODEL_CACHE", str(REPO / "build" / "test-models"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "launcher.cli", "serve", "--port", str(port)],
        cwd=REPO,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=(data_dir.parent / "server.log").open("wb"),
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the server did not become ready")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", default=None, help="a running API (default: start one)")
    parser.add_argument("--pid", type=int, default=None, help="the API's process id, for RSS")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--search-share", type=float, default=0.2)
    parser.add_argument("--seed-items", type=int, default=48)
    parser.add_argument("--window", type=float, default=60.0, help="seconds per report row")
    parser.add_argument("--report", type=Path, default=REPO / "build" / "load-test.json")
    args = parser.parse_args(argv)

    proc = None
    with tempfile.TemporaryDirectory(prefix="lookalike-load-") as tmp:
        if args.api is None:
            (Path(tmp) / "data").mkdir()
            proc, base = start_server(Path(tmp) / "data")
            pid: int | None = proc.pid
        else:
            base, pid = args.api.rstrip("/"), args.pid
        try:
            ids, photos = seed_catalog(base, args.seed_items)
            result = run_load(
                base,
                item_ids=ids,
                photos=photos,
                duration_s=args.duration,
                concurrency=args.concurrency,
                search_share=args.search_share,
                pid=pid,
            )
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
    report = result.report(args.window)
    report["setup"] = {
        "api": args.api or "lookalike serve (embedded)",
        "concurrency": args.concurrency,
        "search_share": args.search_share,
        "seed_items": args.seed_items,
        "cpus": os.cpu_count(),
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2))
    print(
        f"{report['requests']} requests in {report['duration_s']} s "
        f"({report['requests_per_s']}/s), statuses {report['statuses']}"
    )
    for row in report["windows"]:
        cells = "  ".join(
            f"{k} p50 {v['p50_ms']} ms p99 {v['p99_ms']} ms (n={v['n']})"
            for k, v in row.items()
            if isinstance(v, dict) and v.get("n")
        )
        print(f"  t={row['from_s']:>5.0f}s  {cells}")
    print(
        f"  server RSS MiB: first {report['rss_mib']['first']}, last "
        f"{report['rss_mib']['last']}, max {report['rss_mib']['max']}"
    )
    print(f"report: {args.report}")
    failed = report["server_errors"] or result.transport_errors
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
