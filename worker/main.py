"""Entry point for `celery -A worker.main worker`: builds the app from the environment."""

from worker.celery_app import create_celery

app = create_celery()
