"""What the query-string contract costs a request: ``python -m benchmarks.query_checks``.

Every request's query string is checked against the OpenAPI document (api/openapi.py
``init_query_checks``: unknown parameters, repeated single-valued ones), and its filters are
read through the catalog schema (api/params.py). This measures, in one process and one run,

1. the check alone, per call, on a similar-by-id query string with four filters;
2. similar-by-id requests (the real app: Flask, the schema-driven parameter parsing,
   qdrant-edge search with the filters inside, JSON) with the check on and off, in
   alternating rounds so that a shared machine's noise falls on both alike;

3. reading a ``POST /v1/recommend`` body with its pydantic model (api/contract.py), per call
   (the hand parser it replaced took 13.6 us against the model's 17.9 us in the run that
   chose it: 1.1% and 1.5% of a similar-by-id request);

4. with ``--library`` (spectree importable, e.g. ``pip install --target /tmp/scratch
   spectree`` and ``PYTHONPATH=/tmp/scratch``): the same query string validated by spectree's
   ``@validate(query=Model)`` against the way the app does it (the document check plus
   api/contract.py ``options_from_query``), each on a minimal Flask route beside an
   unvalidated one, in alternating rounds: what choosing the library would cost a request;

and prints each one's share of a similar-by-id request. The catalog is synthetic (random
unit vectors of the default model's size, with category/brand/price/in_stock metadata): the
checks' cost does not depend on the vectors.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from api import create_app
from lookalike.schema import point_id, vector_size
from lookalike.settings import Settings
from lookalike.store import StoredItem

QUERY = "limit=10&category=c1,c2&brand=b3&price_max=80&in_stock=true"


def build(data: Path, n: int) -> tuple[object, Settings]:
    settings = Settings(data_dir=data, index_after_idle_s=0)
    app = create_app(settings)
    store = app.extensions["lookalike.store"].get()
    dim = vector_size(settings)
    rng = np.random.default_rng(0)
    for start in range(0, n, 500):
        store.upsert(
            [
                StoredItem(
                    point_id(f"s{i}"),
                    {
                        "item_id": f"s{i}",
                        "tenant": "default",
                        "metadata": {
                            "category": f"c{i % 10}",
                            "brand": f"b{i % 7}",
                            "price": float(i % 100),
                            "in_stock": i % 3 != 0,
                        },
                    },
                    rng.normal(size=dim).astype(np.float32),
                )
                for i in range(start, min(start + 500, n))
            ]
        )
    store.optimize()
    return app, settings


def check_alone(app: object, calls: int) -> float:
    """Seconds per call of the before_request check on QUERY's route."""
    flask_app = app  # type: ignore[assignment]
    check = next(f for f in flask_app.before_request_funcs[None] if "query_string" in f.__name__)  # type: ignore[attr-defined]
    with flask_app.test_request_context(f"/v1/items/s1/similar?{QUERY}"):  # type: ignore[attr-defined]
        from flask import request

        request.url_rule = flask_app.url_map.bind("localhost").match(  # type: ignore[attr-defined]
            "/v1/items/s1/similar", return_rule=True
        )[0]
        check()  # builds the table once
        began = time.perf_counter()
        for _ in range(calls):
            check()
        return (time.perf_counter() - began) / calls


RECOMMEND = {
    "positive": ["s1", "s2"],
    "negative": ["s3"],
    "limit": 10,
    "filter": {"category": ["c1", "c2"], "brand": "b3", "price_max": 80, "in_stock": True},
    "group_by": "category",
    "group_size": 2,
}


def body_parsing(app: object, calls: int) -> dict[str, float]:
    """Seconds per call reading RECOMMEND with its pydantic model."""
    from api.contract import RecommendBody, options_from_body, parse_body

    schema = app.extensions["lookalike.settings"].catalog  # type: ignore[attr-defined]

    def model() -> None:
        options_from_body(parse_body(RecommendBody, RECOMMEND), schema)

    model()
    began = time.perf_counter()
    for _ in range(calls):
        model()
    return {"pydantic model": (time.perf_counter() - began) / calls}


def requests_per_variant(app: object, rounds: int, per_round: int, n: int) -> dict[str, float]:
    """Median seconds per similar-by-id request, with and without the check."""
    flask_app = app  # type: ignore[assignment]
    funcs = flask_app.before_request_funcs[None]  # type: ignore[attr-defined]
    check = next(f for f in funcs if "query_string" in f.__name__)
    client = flask_app.test_client()  # type: ignore[attr-defined]
    rng = np.random.default_rng(1)
    times: dict[str, list[float]] = {"with check": [], "without": []}
    for _ in range(per_round):  # warm up
        client.get(f"/v1/items/s{rng.integers(0, n)}/similar?{QUERY}")
    for r in range(rounds):
        for variant in ("with check", "without") if r % 2 == 0 else ("without", "with check"):
            if variant == "without":
                funcs.remove(check)
            began = time.perf_counter()
            for _ in range(per_round):
                resp = client.get(f"/v1/items/s{rng.integers(0, n)}/similar?{QUERY}")
                assert resp.status_code == 200, resp.get_data(as_text=True)
            times[variant].append((time.perf_counter() - began) / per_round)
            if variant == "without":
                funcs.append(check)
    return {k: statistics.median(v) for k, v in times.items()}


def library_overhead(app: object, rounds: int, per_round: int) -> dict[str, float]:
    """Median seconds per request of a minimal route: unvalidated, validated the app's way,
    validated by spectree (a model with the same options and the catalog's four filters,
    unknown parameters refused). The handlers return the same small JSON."""
    from flask import Flask, jsonify, request
    from pydantic import BaseModel, ConfigDict, Field
    from spectree import SpecTree

    from api.contract import options_from_query
    from api.errors import register_error_handlers

    schema = app.extensions["lookalike.settings"].catalog  # type: ignore[attr-defined]
    rules = app.extensions["lookalike.query_rules"]  # type: ignore[attr-defined]
    allowed = rules[("/v1/items/<item_id>/similar", "GET")]

    class SimilarQuery(BaseModel):
        model_config = ConfigDict(extra="forbid")
        limit: int = Field(10, ge=1, le=100)
        offset: int = Field(0, ge=0, le=1000)
        score_threshold: float | None = None
        group_by: str | None = None
        group_size: int = Field(1, ge=1, le=20)
        diversity: float | None = Field(None, ge=0, le=1)
        category: list[str] = []
        brand: list[str] = []
        price_min: float | None = None
        price_max: float | None = None
        in_stock: bool | None = None

    spec = SpecTree("flask", annotations=False, validation_error_status=400)
    bench = Flask("bench")
    register_error_handlers(bench)

    @bench.get("/bare/<item_id>")
    def bare(item_id: str) -> object:
        return jsonify(id=item_id, limit=10)

    @bench.get("/ours/<item_id>")
    def ours(item_id: str) -> object:
        for name in request.args:  # the document check, as init_query_checks does it
            if name not in allowed or (not allowed[name] and len(request.args.getlist(name)) > 1):
                raise AssertionError(name)
        opts = options_from_query(request.args, schema)
        return jsonify(id=item_id, limit=opts.limit)

    @bench.get("/spectree/<item_id>")
    @spec.validate(query=SimilarQuery)
    def with_spectree(item_id: str) -> object:
        return jsonify(id=item_id, limit=request.context.query.limit)  # type: ignore[attr-defined]

    spec.register(bench)
    client = bench.test_client()
    routes = {"unvalidated": "bare", "the app's way": "ours", "spectree": "spectree"}
    for route in routes.values():
        resp = client.get(f"/{route}/s1?{QUERY}")
        assert resp.status_code == 200, resp.get_data(as_text=True)
    times: dict[str, list[float]] = {k: [] for k in routes}
    names = list(routes)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            url = f"/{routes[name]}/s1?{QUERY}"
            began = time.process_time()
            for _ in range(per_round):
                client.get(url)
            times[name].append((time.process_time() - began) / per_round)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=200)
    parser.add_argument("--library", action="store_true", help="compare with spectree")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        app, _ = build(Path(tmp) / "data", args.items)
        alone = check_alone(app, 20_000)
        bodies = body_parsing(app, 20_000)
        medians = requests_per_variant(app, args.rounds, args.per_round, args.items)
        library = library_overhead(app, args.rounds, args.per_round * 5) if args.library else {}
        app.extensions["lookalike.store"].get().close()  # type: ignore[attr-defined]
    with_check, without = medians["with check"], medians["without"]
    print(f"catalog: {args.items} synthetic items; query: ?{QUERY}")
    print(f"the check alone: {alone * 1e6:.1f} us per request")
    print(
        f"similar-by-id: {with_check * 1e3:.3f} ms with the check, {without * 1e3:.3f} ms "
        f"without (medians of {args.rounds} alternating rounds of {args.per_round})"
    )
    print(
        f"the check's share: {alone / without:.2%} (alone / request); "
        f"difference of medians {(with_check - without) / without:+.2%}"
    )
    for name, seconds in bodies.items():
        print(
            f"a recommend body read by the {name}: {seconds * 1e6:.1f} us, "
            f"{seconds / without:.2%} of a similar-by-id request"
        )
    if library:
        base = library["unvalidated"]
        print("a minimal route, CPU per request (medians of alternating rounds):")
        for name, seconds in library.items():
            print(
                f"  {name}: {seconds * 1e6:.1f} us, validation {(seconds - base) * 1e6:+.1f} us "
                f"= {(seconds - base) / without:.2%} of a similar-by-id request"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
