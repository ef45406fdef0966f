"""Celery workers: decode images, embed them with TensorFlow in batches, upsert into Qdrant."""
