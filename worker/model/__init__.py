"""The embedding model: EfficientNet-Lite weights converted once to Keras and TFLite.

Importing this package is cheap: TensorFlow (or LiteRT) is imported only when a model is
built or loaded.
"""

from worker.model.cache import ModelFiles, build_model_cache
from worker.model.embedder import Embedder, get_embedder, load_embedder
from worker.model.preprocess import preprocess

__all__ = [
    "Embedder",
    "ModelFiles",
    "build_model_cache",
    "get_embedder",
    "load_embedder",
    "preprocess",
]
