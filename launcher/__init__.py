"""Starts the service's processes: the one-process embedded default (API, an in-process Celery
worker on an in-memory broker, and the qdrant-edge shard they share), or the API alone when a
Redis broker is configured and workers run as their own processes."""
