"""Shared core of the lookalike service: settings, catalog schema, image decoding, vector store.

Nothing here imports the API, the worker, the indexer or TensorFlow.
"""
