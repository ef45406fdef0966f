"""Model fixtures: the PyTorch parity references (the model cache is in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
REFERENCE_DIR = REPO / "tests" / "data" / "reference"


@pytest.fixture(scope="session")
def load_reference() -> Callable[[str], dict[str, np.ndarray]]:
    """Per model: the images and PyTorch outputs written by scripts/make_reference.py."""

    def load(model: str) -> dict[str, np.ndarray]:
        with np.load(REFERENCE_DIR / f"{model}.npz") as data:
            return {key: data[key] for key in data.files}

    return load
