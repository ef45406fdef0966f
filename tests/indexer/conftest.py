from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def model_dir(model_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model cache of the module's own (heads are written into it; with the embedded
    service, the service's), sharing the converted backbone."""
    private = tmp_path_factory.mktemp("models")
    for path in model_cache_dir.glob("efficientnet-lite0*"):
        (private / path.name).symlink_to(path)
    return private
