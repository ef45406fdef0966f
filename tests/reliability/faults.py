"""Helpers of the fault-injection tests: a Redis server of their own (never the shared one),
worker and API processes started as the compose file starts them, and real images."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import redis

from support import REPO, free_port


def wait_until(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class RedisServer:
    """redis-server on a port of its own with an append-only file, so what was queued
    survives a restart (as the compose file runs it)."""

    def __init__(self, directory: Path) -> None:
        if shutil.which("redis-server") is None:
            raise AssertionError("redis-server is missing: run scripts/test.sh")
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        command += ["--dir", str(self.directory)]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        wait_until(lambda: _pings(client), 20, "redis-server to start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # a clean restart: the AOF is flushed
            self.proc.wait(timeout=30)
        self.proc = None

    def flush(self) -> None:
        redis.Redis.from_url(self.url).flushall()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "celery", "-A", "worker.main", "worker"]
    command += ["-Q", "ingest,query", "--pool", "solo", "--loglevel", "INFO"]
    command += ["--without-heartbeat", "--without-gossip", "--without-mingle"]
    with log.open("ab") as out:
        return subprocess.Popen(
            command, cwd=REPO, env={**os.environ, **env}, stdout=out, stderr=out
        )


# The API as `lookalike serve` builds it (the app factory under waitress), without the
# launcher's layout check: with Redis and no Qdrant server, `lookalike serve` refuses to
# start (lookalike/topology.py), since an API beside workers cannot open the embedded shard.
# There is no Qdrant server here, and the restart test needs only the API's task routes,
# which never open the shard; the worker owns it.
_API_ONLY = (
    "import sys; from waitress import serve; from api import create_app; "
    "from lookalike.logs import configure_logging; from lookalike.settings import Settings; "
    "s = Settings.from_env(); configure_logging(s); "
    "serve(create_app(s), host='127.0.0.1', port=int(sys.argv[1]), threads=4)"
)


def start_api(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-c", _API_ONLY, str(port)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command, cwd=REPO, env={**os.environ, **env}, stdout=out, stderr=out
        )

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the API exited: {log.read_text()[-2000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, 180, "the API to answer")
    return proc


def stop(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()
