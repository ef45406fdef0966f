"""A short, bounded version of benchmarks/load_test.py: another process (this one) sends a
mix of similar-by-id and search-by-upload queries to `lookalike serve` running in its own
process. Every answer must be a 200: no 5xx, no dropped connection. Latency and memory are
measured (not asserted) by the benchmark's several-minute run (docs/reliability.md)."""

from __future__ import annotations

import importlib.util
import signal
import sys
from pathlib import Path
from types import ModuleType

import httpx

from support import REPO


def _load_test() -> ModuleType:
    spec = importlib.util.spec_from_file_location("load_test", REPO / "benchmarks/load_test.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["load_test"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_mixed_query_load_gets_no_errors(tmp_path: Path, model_cache_dir: Path) -> None:
    bench = _load_test()
    (tmp_path / "data").mkdir()
    env = {"LOOKALIKE_MODEL_CACHE": str(model_cache_dir)}
    proc, base = bench.start_server(tmp_path / "data", env)
    try:
        ids, photos = bench.seed_catalog(base, 12)
        result = bench.run_load(
            base,
            item_ids=ids,
            photos=photos,
            duration_s=20,
            concurrency=4,
            search_share=0.25,
            pid=proc.pid,
            rss_every_s=2,
        )
        # Still healthy after the load.
        assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    report = result.report(window_s=10)
    assert result.transport_errors == []
    assert report["statuses"] == {"200": report["requests"]}, report["statuses"]
    kinds = report["overall"]
    assert kinds["similar_by_id"]["n"] > 0 and kinds["search_by_upload"]["n"] > 0
    assert len(result.rss) >= 5 and all(rss > 0 for _, rss in result.rss)
