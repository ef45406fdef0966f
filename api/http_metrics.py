"""Prometheus metrics of the API, served at ``/metrics``, and the request id of each request.

What the API process knows: its HTTP requests (by route template and status, and their
latency), the depth of each Celery queue in the broker, and the number of vectors in the
collection, both read when Prometheus scrapes. The worker's metrics (tasks, embedding) live
in the worker's process (`worker/task_metrics.py`); in the embedded default that process is this
one, so ``/metrics`` shows them too.

``/metrics`` needs no API key: Prometheus scrapes it from inside the cluster. Keep it off the
public ingress (the chart routes only ``/v1`` and the gallery there).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from flask import Flask, Response, g, request
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from lookalike.logs import (
    REQUEST_ID_HEADER,
    accept_request_id,
    bind_request_id,
    unbind_request_id,
)
from lookalike.task_queues import QUEUES

log = logging.getLogger(__name__)

# Registered once per process in the default registry (several apps in one process, as in
# the tests, share them); the route label is the URL rule's template, never the raw path, so
# item ids do not explode the number of series.
HTTP_REQUESTS = Counter(
    "lookalike_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "lookalike_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

# Routes not worth a latency series of their own: probes and the scrape itself.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


class BrokerCollector(Collector):
    """Queue depth per queue, read from the broker at scrape time (Redis: the list length
    that KEDA scales the workers on)."""

    def __init__(self, app: Flask) -> None:
        self._app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "lookalike_queue_depth",
            "Messages waiting in a Celery queue (not yet taken by a worker).",
            labels=["queue"],
        )
        up = GaugeMetricFamily("lookalike_broker_up", "1 when the broker answered the scrape.")
        try:
            celery = self._app.extensions["tasks"].celery
            with celery.connection_for_read() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
                channel = conn.default_channel
                counts = {q: channel.queue_declare(queue=q, passive=False) for q in QUEUES}
        except Exception as exc:
            log.warning("broker unreachable while scraping metrics: %s", type(exc).__name__)
            up.add_metric([], 0)
        else:
            up.add_metric([], 1)
            for queue, declared in counts.items():
                depth.add_metric([queue], declared.message_count)
            yield depth
        yield up


class CollectionCollector(Collector):
    """Vectors in the collection, counted at scrape time."""

    def __init__(self, app: Flask) -> None:
        self._app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        settings = self._app.extensions["lookalike.settings"]
        vectors = GaugeMetricFamily(
            "lookalike_collection_vectors",
            "Points (one vector per item) in the vector store's collection.",
            labels=["collection"],
        )
        up = GaugeMetricFamily(
            "lookalike_vector_store_up", "1 when the vector store answered the scrape."
        )
        try:
            count = self._app.extensions["lookalike.store"].get().count()
        except Exception as exc:
            log.warning("vector store unreachable while scraping metrics: %s", exc)
            up.add_metric([], 0)
        else:
            up.add_metric([], 1)
            vectors.add_metric([settings.collection], count)
            yield vectors
        yield up


def init_metrics(app: Flask) -> None:
    """Request ids and request metrics for every route, and the ``/metrics`` route."""
    # Not auto-described: registering must not reach the broker or the store.
    app_registry = CollectorRegistry()
    app_registry.register(BrokerCollector(app))
    app_registry.register(CollectionCollector(app))
    app.extensions["lookalike.metrics_registry"] = app_registry

    @app.before_request
    def _start() -> None:
        g.lookalike_started = time.perf_counter()
        g.lookalike_request_id = accept_request_id(request.headers.get(REQUEST_ID_HEADER))
        g.lookalike_request_token = bind_request_id(g.lookalike_request_id)

    @app.after_request
    def _finish(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        HTTP_REQUESTS.labels(request.method, route, str(response.status_code)).inc()
        started = g.get("lookalike_started")
        if started is not None and route not in _QUIET_ROUTES:
            HTTP_LATENCY.labels(request.method, route).observe(time.perf_counter() - started)
        request_id = g.get("lookalike_request_id")
        if request_id is not None:
            response.headers[REQUEST_ID_HEADER] = request_id
        return response

    @app.teardown_request
    def _unbind(_: BaseException | None) -> None:
        token = g.pop("lookalike_request_token", None)
        if token is not None:
            unbind_request_id(token)

    def metrics() -> Response:
        body = generate_latest(REGISTRY) + generate_latest(app_registry)
        # content_type, not mimetype: CONTENT_TYPE_LATEST carries its charset already.
        return Response(body, content_type=CONTENT_TYPE_LATEST)

    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])
