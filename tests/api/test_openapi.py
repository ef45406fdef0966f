"""The OpenAPI document is true: it lists exactly the app's routes, and schemathesis, fuzzing
the real embedded service (worker, model, qdrant-edge) from it, gets no 5xx and only answers
the document describes."""

from __future__ import annotations

import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from waitress.server import create_server

from api import create_app
from lookalike.settings import Settings
from support import labelled_images, post_item, wait_for_task

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def spec_operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in doc["paths"].items()
        for method in item
        if method.upper() in METHODS
    }


def app_operations(app: Flask) -> set[tuple[str, str]]:
    operations = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        operations.update((path, m) for m in (rule.methods or set()) & METHODS)
    return operations


def test_the_document_lists_exactly_the_routes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = create_app(Settings(data_dir=tmp_path, qdrant_url=":memory:"))
    doc = app.test_client().get("/openapi.json").get_json()

    assert doc["openapi"].startswith("3.")
    assert spec_operations(doc) == app_operations(app)
    components = doc["components"]["parameters"]

    def declared(params: list[dict[str, Any]]) -> set[str]:
        resolved = [components[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p for p in params]
        return {p["name"] for p in resolved if p["in"] == "path"}

    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method.upper() not in METHODS:
                continue
            names = declared(item.get("parameters", [])) | declared(op.get("parameters", []))
            assert names == set(re.findall(r"{([^}]+)}", path)), f"{method} {path}"


def test_every_operation_takes_only_the_query_parameters_it_documents(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The document is each operation's list of query parameters: one it does not list is
    refused before the route runs, so a route cannot read a parameter the document forgot
    (its own tests would fail), and a typo is never silently ignored."""
    app = create_app(Settings(data_dir=tmp_path, qdrant_url=":memory:"))
    client = app.test_client()
    doc = client.get("/openapi.json").get_json()
    pages = {"/", "/jobs"}  # the gallery's pages keep their state in their query string
    for path, method in sorted(spec_operations(doc)):
        if path in pages:
            assert client.open(path + "?category=food", method=method).status_code == 200
            continue
        url = re.sub(r"{[^}]+}", "x1", path) + "?lmit=5"
        resp = client.open(url, method=method)
        assert resp.status_code == 400, f"{method} {path}: {resp.status_code}"
        error = resp.get_json()["error"]
        assert (error["code"], error["field"]) == ("unknown_parameter", "lmit"), path
    limit = client.get("/v1/items?limit=5&limit=6").get_json()["error"]
    assert (limit["code"], limit["field"]) == ("invalid_parameter", "limit")
    # a parameter documented as a list may repeat
    assert client.get("/v1/items?category=a&category=b").status_code == 200


def test_every_model_of_the_table_is_in_the_document(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Each operation's body, query options and answers are documented from their models
    (api/paths.py): every field of each model is in the served document."""
    from api.paths import PATHS

    app = create_app(Settings(data_dir=tmp_path, qdrant_url=":memory:"))
    doc = app.test_client().get("/openapi.json").get_json()
    components = doc["components"]

    def resolved(ref: dict[str, Any]) -> dict[str, Any]:
        kind, name = ref["$ref"].split("/")[-2:]
        return components[kind][name]

    for path, operations in PATHS.items():
        for method, op in operations.items():
            documented = doc["paths"][path][method]
            if op.body is not None:
                schema = resolved(documented["requestBody"]["content"][op.media]["schema"])
                assert set(schema["properties"]) == set(op.body.model_fields), (method, path)
                if op.body.model_config.get("extra") == "forbid":
                    assert schema["additionalProperties"] is False, (method, path)
            if op.query is not None:
                names = {resolved(p)["name"] for p in documented["parameters"] if "$ref" in p}
                assert set(op.query.model_fields) <= names, (method, path)
            for status, (answer, _) in op.responses.items():
                if isinstance(answer, type):
                    content = documented["responses"][str(status)]["content"]
                    schema = resolved(content["application/json"]["schema"])
                    assert set(schema["properties"]) == set(answer.model_fields), (method, path)
                    assert schema["additionalProperties"] is False, (method, path)
    entries = components["schemas"]["BatchRequest"]["properties"]["queries"]["items"]["oneOf"]
    assert {e["$ref"].rsplit("/", 1)[1] for e in entries} == {"SimilarEntry", "RecommendEntry"}


# The served document, read from an app that opens nothing (its store opens on first use);
# schemathesis needs it when pytest collects the tests.
schema = schemathesis.openapi.from_wsgi(
    "/openapi.json",
    create_app(
        Settings(data_dir=Path(tempfile.gettempdir()) / "lookalike-spec", qdrant_url=":memory:")
    ),
)


@pytest.fixture(scope="module")
def live_url(client, embedded) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The embedded service over real HTTP, holding items the spec's examples name."""
    images = labelled_images(per_category=2, categories=("animals", "food"))
    ids = ["lion-1", "default", "tomato-1", "tomato-2"]
    tasks = []
    for i, (item_id, (category, path)) in enumerate(zip(ids, images, strict=True)):
        meta = {"category": category, "brand": "acme", "price": 10.0 + i, "in_stock": i % 2 == 0}
        tasks.append(post_item(client, item_id, path.read_bytes(), meta).get_json()["task_id"])
    for task_id in tasks:
        assert wait_for_task(client, task_id)["status"] == "succeeded"
    server = create_server(embedded.app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_fuzzed_requests_get_no_5xx_and_documented_answers(case, live_url: str) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(
        base_url=live_url,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            negative_data_rejection,
            unsupported_method,
        ],
    )
