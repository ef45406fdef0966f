"""A catalog built with another vector size (the model or LOOKALIKE_FEATURES changed) is an
operator's matter: every route says so with a 503, none fails with a 500."""

from __future__ import annotations

from pathlib import Path

from api import create_app
from lookalike.settings import Settings
from lookalike.store import open_store


def test_a_catalog_of_another_vector_size_answers_503_everywhere(tmp_path: Path) -> None:
    pooled = Settings(data_dir=tmp_path, features="pooled")
    multiscale = pooled.replace(features="multiscale")
    assert pooled.vector_size() != multiscale.vector_size()
    with open_store(pooled) as store:
        store.ensure_collection(pooled.vector_size())

    client = create_app(multiscale).test_client()

    for path in (
        "/v1/items",
        "/v1/items/anything",
        "/v1/items/anything/similar",
        "/v1/items/anything/duplicates",
        "/v1/facets?field=category",
    ):
        resp = client.get(path)
        assert resp.status_code == 503, (path, resp.get_json())
        error = resp.get_json()["error"]
        assert error["code"] == "store_misconfigured", path
        assert "1280" in error["message"] and "1472" in error["message"], error
    assert client.get("/readyz").status_code == 503


def test_the_store_is_opened_at_start_and_a_misconfigured_one_still_answers_503(
    tmp_path: Path,
) -> None:
    # open_soon() (the embedded default calls it at start) makes the collection before any
    # request; one it cannot open is only logged, and the routes report it as before.
    fresh = create_app(Settings(data_dir=tmp_path / "fresh"))
    handle = fresh.extensions["lookalike.store"]
    assert not handle.ready
    handle.open_soon().join(60)
    assert handle.ready
    assert handle.get().count() == 0

    pooled = Settings(data_dir=tmp_path / "old", features="pooled")
    with open_store(pooled) as store:
        store.ensure_collection(pooled.vector_size())
    app = create_app(pooled.replace(features="multiscale"))
    handle = app.extensions["lookalike.store"]
    handle.open_soon().join(60)
    assert not handle.ready
    resp = app.test_client().get("/v1/items")
    assert resp.status_code == 503
    assert resp.get_json()["error"]["code"] == "store_misconfigured"
