"""Flask API: accepts catalog images, answers similar-item queries, serves the gallery.

Never imports TensorFlow: embeddings are computed by workers, reached by Celery task name.
"""

from api.app import create_app

__all__ = ["create_app"]
