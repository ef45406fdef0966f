"""Shared fixtures: settings on a temporary data dir, the real model cache, the embedded
service (API + in-process Celery worker + qdrant-edge), and real labelled images."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lookalike.settings import Settings
from support import REPO


@pytest.fixture(scope="session")
def model_cache_dir() -> Path:
    """The real converted model, built once per machine (it is a cache, not test output)."""
    from worker.model import build_model_cache

    path = Path(os.environ.get("LOOKALIKE_TEST_MODEL_CACHE", REPO / "build" / "test-models"))
    build_model_cache("efficientnet-lite0", path)
    return path


@pytest.fixture
def settings(tmp_path: Path, model_cache_dir: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", model_cache=model_cache_dir)


@pytest.fixture(scope="module")
def embedded_settings(tmp_path_factory: pytest.TempPathFactory, model_cache_dir: Path) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp("embedded") / "data", model_cache=model_cache_dir
    )


@pytest.fixture(scope="module")
def embedded(embedded_settings: Settings) -> Iterator[object]:
    from launcher.embedded import start_embedded

    service = start_embedded(embedded_settings)
    yield service
    service.stop()


@pytest.fixture(scope="module")
def client(embedded: object):  # type: ignore[no-untyped-def]
    return embedded.app.test_client()  # type: ignore[attr-defined]
