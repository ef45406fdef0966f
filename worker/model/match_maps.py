"""Why two images match: which regions of each carry the similarity, and how the score
splits over the embedding's parts.

The embedding is the spatial mean of the backbone's last feature maps (the head's, 10x10x1280
for Lite0 at 320 px, 7x7 at 224, and with "multiscale" features stage 6's, 10x10x192), each
scaled to unit length. The cosine of two means splits exactly over the positions of one map:

    cos(mean A, mean B) = sum over p of <A[p], mean B> / (n |mean A| |mean B|)

so each position's term is its share of the score, and the shares of one image add up to
the score (a negative share: that region pulls the images apart). A GeM-pooled head (the
default: g = mean(x ** k) ** (1 / k) per channel, k = 3) is such a mean too, of the
positions' contributions x ** k / g ** (k - 1), whose mean is g exactly: the maps read here
are those contributions, and the split holds as for the average. A multiscale vector is
the two parts side by side, each of length 1/sqrt(2) after the final scaling: its cosine is
the mean of the two parts' cosines, and so are its heatmaps.

The maps are read from the same TFLite model file the worker embeds with: an interpreter
that keeps every intermediate tensor (and so runs without the XNNPACK delegate, which fuses
them away) reads the inputs of the two pooling operations. Explaining costs two such model
calls; the worker loads this interpreter on the first explanation only.
"""

from __future__ import annotations

import base64
import io
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# The pooled outputs whose feature maps are read, and their names in a score's split.
PARTS = {"features": "head", "stage6": "stage6"}


class MapReader:
    """The backbone's last feature maps, from a TFLite model file; thread-safe."""

    def __init__(self, path: Path) -> None:
        from worker.model.runners import tflite_interpreter_class

        interpreter_class = tflite_interpreter_class()
        # ai_edge_litert's and tf.lite's interpreter modules both define it.
        resolvers = sys.modules[interpreter_class.__module__].OpResolverType
        self._interpreter = interpreter_class(
            model_path=str(path),
            experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        self._interpreter.allocate_tensors()
        self._lock = threading.Lock()
        (signature,) = self._interpreter.get_signature_list().values()
        runner = self._interpreter.get_signature_runner()
        outputs = runner.get_output_details()
        self._input = self._interpreter.get_input_details()[0]["index"]
        made_by = {
            int(tensor): op
            for op in self._interpreter._get_ops_details()
            for tensor in op["outputs"]
        }
        # Per pooled output: its map's tensor, and GeM's (p, eps), or None for the average.
        self._maps: dict[str, tuple[int, tuple[float, float] | None]] = {}
        for name in signature["outputs"]:
            found = self._pooled_map(made_by, int(outputs[name]["index"]))
            if found is not None:
                self._maps[name] = found
        if "features" not in self._maps:
            raise ValueError(f"{path}: no pooled feature map found")

    def _pooled_map(
        self, made_by: dict[int, Any], tensor: int
    ) -> tuple[int, tuple[float, float] | None] | None:
        """The map behind a pooled output: the input of its MEAN over the spatial axes, or for
        GeM (worker/model/gem.py: POW(MEAN(POW(MAXIMUM(map, eps), p)), 1 / p)) the map inside,
        with its p and eps. None for an output that pools nothing (the logits)."""
        op = made_by.get(tensor)
        if op is not None and op["op_name"] == "POW":
            op = made_by.get(int(op["inputs"][0]))
        if op is None or op["op_name"] != "MEAN":
            return None
        source = int(op["inputs"][0])
        power = made_by.get(source)
        if power is None or power["op_name"] != "POW":
            return source, None
        maximum = made_by[int(power["inputs"][0])]
        # MAXIMUM's other input is the constant eps, which no op makes.
        (found,) = (int(t) for t in maximum["inputs"] if int(t) in made_by)
        (eps_tensor,) = (int(t) for t in maximum["inputs"] if int(t) not in made_by)
        p = float(self._interpreter.get_tensor(int(power["inputs"][1])))
        return found, (p, float(self._interpreter.get_tensor(eps_tensor)))

    def maps(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """Per pooled output (``features``, ``stage6``), the (h, w, c) map of one framed image
        whose spatial mean is the output: the map itself under average pooling, its
        positions' contributions x ** p / g ** (p - 1) under GeM (g: the GeM vector)."""
        with self._lock:
            self._interpreter.set_tensor(self._input, pixels[None].astype(np.float32))
            self._interpreter.invoke()
            raw = {
                name: (np.array(self._interpreter.get_tensor(index)[0], dtype=np.float64), gem)
                for name, (index, gem) in self._maps.items()
            }
        maps = {}
        for name, (values, gem) in raw.items():
            if gem is not None:
                p, eps = gem
                powered = np.power(np.maximum(values, eps), p)
                pooled = np.power(powered.mean(axis=(0, 1)), 1.0 / p)
                values = powered / np.power(pooled, p - 1.0)
            maps[name] = values
        return maps


def shares(a: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The cosine of the two maps' spatial means, and each position's share of it in ``a``
    and in ``b`` ((h, w) arrays, each adding up to the cosine)."""
    mean_a, mean_b = a.mean(axis=(0, 1)), b.mean(axis=(0, 1))
    scale = max(float(np.linalg.norm(mean_a) * np.linalg.norm(mean_b)), 1e-300)
    cosine = float(mean_a @ mean_b) / scale
    positions_a, positions_b = a.shape[0] * a.shape[1], b.shape[0] * b.shape[1]
    return cosine, (a @ mean_b) / (positions_a * scale), (b @ mean_a) / (positions_b * scale)


def explain_pair(
    embedder: Any, reader: MapReader, first: Image.Image, second: Image.Image
) -> dict[str, Any]:
    """Score, its split over the embedding's parts, and a heatmap PNG of each image (as the
    model framed it) showing where the similarity lies."""
    pixels = embedder.pixels([first, second])
    maps = [reader.maps(p) for p in pixels]
    parts = ["features"] if embedder.features == "pooled" else ["features", "stage6"]
    weight = 1 / len(parts)
    score = 0.0
    split: dict[str, float] = {}
    heat = [np.zeros(maps[0]["features"].shape[:2]), np.zeros(maps[1]["features"].shape[:2])]
    for part in parts:
        cosine, heat_a, heat_b = shares(maps[0][part], maps[1][part])
        split[PARTS[part]] = round(weight * cosine, 6)
        score += weight * cosine
        heat[0] += weight * _resized(heat_a, heat[0].shape)
        heat[1] += weight * _resized(heat_b, heat[1].shape)
    return {
        "score": round(score, 6),
        # A trained head maps the vectors elsewhere: its score does not split this way.
        "split": split if embedder.head is None and not embedder.tta_flip else None,
        "images": [_describe(pixels[i], heat[i]) for i in range(2)],
    }


def _resized(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if values.shape == shape:
        return values
    # Stage 6 and the head share their stride (32) in EfficientNet-Lite; kept general.
    image = Image.fromarray(values.astype(np.float32), mode="F")
    return np.asarray(image.resize((shape[1], shape[0]), Image.Resampling.BILINEAR))


def _describe(pixels: np.ndarray, heat: np.ndarray) -> dict[str, Any]:
    """The heatmap as a PNG over the framed image, and where it peaks (fractions of the
    framed square's sides, the cell's centre)."""
    row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return {
        "heatmap_png": base64.b64encode(overlay(pixels, heat)).decode("ascii"),
        "grid": [[round(float(v), 6) for v in line] for line in heat],
        "peak": [float((col + 0.5) / heat.shape[1]), float((row + 0.5) / heat.shape[0])],
    }


def overlay(pixels: np.ndarray, heat: np.ndarray) -> bytes:
    """The framed image, dimmed where it does not match and tinted red where it does: the
    positive shares, scaled to the largest, bilinearly upsampled."""
    size = pixels.shape[1], pixels.shape[0]
    positive = np.clip(heat, 0, None)
    top = float(positive.max())
    level = positive / top if top > 0 else positive
    mask = Image.fromarray(level.astype(np.float32), mode="F").resize(
        size, Image.Resampling.BILINEAR
    )
    # The upper part of the range only: a 10x10 grid upsampled is broad, the peaks are not.
    alpha = np.clip((np.asarray(mask) - 0.25) / 0.75, 0, 1)[..., None]
    base = pixels.astype(np.float32)
    red = np.array([235.0, 30.0, 30.0])
    out = base * (0.45 + 0.55 * alpha) * (1 - 0.5 * alpha) + red * 0.5 * alpha
    png = io.BytesIO()
    Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)).save(png, "PNG", optimize=True)
    return png.getvalue()


_lock = threading.Lock()
_readers: dict[tuple[str, str, int, str], MapReader] = {}


def get_map_reader(
    model: str, cache_dir: Path, input_size: int = 0, pooling: str = ""
) -> MapReader:
    """The process's map reader for ``model`` at ``input_size`` with its head pooled by
    ``pooling`` (0 and "": the backbone's defaults), the model the embedder runs; loaded on
    the first explanation (the TFLite file is converted first if only the Keras model is
    cached)."""
    from worker.model.cache import build_model_cache

    key = (model, str(Path(cache_dir).resolve()), input_size, pooling)
    with _lock:
        reader = _readers.get(key)
        if reader is None:
            files = build_model_cache(
                model, Path(cache_dir), tflite=True, input_size=input_size, pooling=pooling
            )
            reader = _readers[key] = MapReader(files.tflite)
        return reader
