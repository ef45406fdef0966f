"""The default study's parts (benchmarks/quality_default.py): its probe of the real model
reproduces the vectors the service makes, GeM at p = 1 is the service's average, and the
same weights run at another input size."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.quality_default import (
    P_GRID,
    Candidate,
    gem,
    multiscale,
    pooled_arrays,
    probe_model,
)
from lookalike.images import DECODE_SCALED, decode_as
from lookalike.settings import Settings
from support import labelled_images
from worker.model import get_embedder
from worker.model.preprocess import preprocess


def _photos(size: int) -> list:  # type: ignore[type-arg]
    paths = [path for _, path in labelled_images(2, ("animals", "vehicles"))]
    return [
        decode_as(p.read_bytes(), DECODE_SCALED, max_pixels=40_000_000, input_size=size)
        for p in paths
    ]


def test_the_probe_of_lite0_at_224_makes_the_earlier_defaults_multiscale_vectors(
    model_cache_dir: Path,
) -> None:
    images = _photos(224)
    probe = probe_model(Candidate.parse("lite0"), model_cache_dir)
    arrays = pooled_arrays(probe, preprocess(images, 224, "resize"))
    earlier = Settings(
        model_cache=model_cache_dir,
        features="multiscale",
        runtime="keras",
        input_size=224,
        pooling="avg",
    )
    service = get_embedder(earlier).embed(images)

    assert np.allclose(multiscale(arrays, 1.0), service, atol=1e-5)
    # The higher p, the more the strongest positions weigh: never below the mean.
    assert set(P_GRID) >= {1.0, 3.0}
    assert np.all(arrays["head3"] >= arrays["head1"] - 1e-5)


def test_the_chosen_candidate_is_the_services_default(model_cache_dir: Path) -> None:
    # "lite0@320 multiscale gem3", the study's pick, is what a service with no settings runs.
    images = _photos(320)
    probe = probe_model(Candidate.parse("lite0@320"), model_cache_dir)
    arrays = pooled_arrays(probe, preprocess(images, 320, "resize"))
    service = get_embedder(Settings(model_cache=model_cache_dir, runtime="keras")).embed(images)
    assert np.allclose(multiscale(arrays, 3.0), service, atol=1e-5)


def test_gem_at_p_1_is_the_average_and_at_large_p_nears_the_maximum() -> None:
    maps = np.random.default_rng(0).uniform(0, 6, (2, 7, 7, 5)).astype(np.float32)
    assert np.allclose(gem(maps, 1.0), maps.mean(axis=(1, 2)))
    high, peak = gem(maps, 16.0), maps.max(axis=(1, 2))
    # Never above the maximum, and within (1/49) ** (1/16) of it over 7x7 positions.
    assert np.all(high <= peak + 1e-5) and np.all(high >= 0.78 * peak)
    assert np.all(high > gem(maps, 3.0))


def test_the_same_weights_run_at_a_higher_input_size(model_cache_dir: Path) -> None:
    candidate = Candidate.parse("lite0@320")
    assert (candidate.name, candidate.size) == ("lite0@320", 320)
    images = _photos(320)
    arrays = pooled_arrays(
        probe_model(candidate, model_cache_dir), preprocess(images, 320, "resize")
    )
    at_224 = pooled_arrays(
        probe_model(Candidate.parse("lite0@224"), model_cache_dir),
        preprocess(images, 224, "resize"),
    )
    # The same product at two resolutions: close vectors, not the same ones.
    cosine = np.sum(multiscale(arrays, 1.0) * multiscale(at_224, 1.0), axis=1)
    assert np.all(cosine > 0.8) and np.all(cosine < 0.9999), cosine
