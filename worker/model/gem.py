"""Generalised-mean (GeM) pooling as a Keras layer: ``mean(max(x, eps) ** p) ** (1 / p)``
over the positions of an (n, h, w, c) map. p = 1 is the global average; a larger p weighs
strong local activations more (a product that fills part of a photo). It is built only from
``keras.ops`` that TFLite runs (MAXIMUM, POW, MEAN).

Importing this module registers the layer, so ``keras.saving.load_model`` reads a model file
that holds it: the model builder and the Keras runner import it.
"""

from __future__ import annotations

from typing import Any

import keras

# The p of LOOKALIKE_POOLING=gem, fixed: docs/quality.md measured p = 3 and p fitted per set
# within noise of each other.
GEM_P = 3.0
# Clamp as the GeM paper does, so x ** (1 / p) stays finite for an all-zero channel.
GEM_EPS = 1e-6


@keras.saving.register_keras_serializable(package="lookalike")
class GeM(keras.layers.Layer):
    def __init__(self, p: float = GEM_P, eps: float = GEM_EPS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.p = float(p)
        self.eps = float(eps)

    def call(self, x: Any) -> Any:
        ops = keras.ops
        powered = ops.power(ops.maximum(x, self.eps), self.p)
        return ops.power(ops.mean(powered, axis=(1, 2)), 1.0 / self.p)

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        return (input_shape[0], input_shape[3])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "p": self.p, "eps": self.eps}
