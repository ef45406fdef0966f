"""A small HTTP client for the lookalike API.

Transient trouble (the service restarting, a 429 or 503, a dropped connection) is retried
with exponential backoff; what is still failing after that, and every 4xx, raises
:class:`APIClientError` with the API's error code.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from lookalike.schema import DEFAULT_CATALOG_SCHEMA, CatalogSchema, catalog_schema

# Statuses worth another try: throttled, or the service (or a proxy before it) is not ready.
_TRANSIENT = frozenset({408, 429, 502, 503, 504})


class APIClientError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.status = status
        self.code = error.get("code", "http_error")
        self.message = error.get("message", str(body)[:500])
        super().__init__(f"{status} {self.code}: {self.message}")

    @property
    def transient(self) -> bool:
        return self.status in _TRANSIENT or self.status == 0


class APIClient:
    """``api_key``, when given, is sent as ``X-API-Key`` (the CLI takes it from --api-key or
    ``$LOOKALIKE_API_KEY``: lookalike.settings.IndexerSettings)."""

    def __init__(
        self,
        base_url: str,
        *,
        tenant: str | None = None,
        api_key: str | None = None,
        timeout: float = 60,
        retries: int = 6,
    ) -> None:
        headers = {"X-Tenant": tenant} if tenant else {}
        if api_key:
            headers["X-API-Key"] = api_key
        self.base_url = base_url.rstrip("/")
        self.tenant = tenant
        self.retries = retries
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, tenant: str | None = None, **kwargs: Any) -> Any:
        if tenant:
            kwargs["headers"] = {**kwargs.get("headers", {}), "X-Tenant": tenant}
        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                return self._json(self._http.request(method, path, **kwargs))
            except httpx.TransportError as exc:
                error = APIClientError(0, {"error": {"code": "unreachable", "message": str(exc)}})
            except APIClientError as exc:
                if not exc.transient:
                    raise
                error = exc
            if attempt == self.retries:
                raise error
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
        raise AssertionError("unreachable")

    def _json(self, resp: httpx.Response) -> Any:
        try:
            body = resp.json() if resp.content else None
        except ValueError:
            body = resp.text
        if resp.status_code >= 400:
            raise APIClientError(resp.status_code, body)
        return body

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def catalog_schema(self) -> CatalogSchema:
        """The catalog's declared fields (GET /v1/schema); the default four from a service
        that predates it."""
        try:
            body = self.get("/v1/schema")
        except APIClientError as exc:
            if exc.status == 404:
                return DEFAULT_CATALOG_SCHEMA
            raise
        return catalog_schema(body.get("fields", {}))

    # ------------------------------------------------------------------------ items

    def add_item(self, item_id: str, image: bytes, metadata: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST",
            "/v1/items",
            data={"id": item_id, "metadata": json.dumps(metadata)},
            files={"image": (item_id, image, "application/octet-stream")},
        )
        return result

    def put_blob(self, sha256: str, data: bytes, *, tenant: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PUT",
            f"/v1/blobs/{sha256}",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
            tenant=tenant,
        )
        return result

    def put_blobs(self, blobs: dict[str, bytes], *, tenant: str | None = None) -> dict[str, Any]:
        """Upload many images in one request (``POST /v1/blobs``), each named by its sha256:
        ``{"stored": [sha256...], "rejected": [{"sha256", "code", "message"}]}``."""
        files = [(sha, (sha, data, "application/octet-stream")) for sha, data in blobs.items()]
        result: dict[str, Any] = self.request("POST", "/v1/blobs", files=files, tenant=tenant)
        return result

    def add_batch(
        self, items: list[dict[str, Any]], *, tenant: str | None = None, job: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"items": items}
        if job:
            body["job"] = job
        result: dict[str, Any] = self.request("POST", "/v1/batches", json=body, tenant=tenant)
        return result

    def update_metadata(
        self, items: list[dict[str, Any]], *, tenant: str | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST", "/v1/batches/metadata", json={"items": items}, tenant=tenant
        )
        return result

    def delete_items(self, ids: list[str], *, tenant: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST", "/v1/batches/delete", json={"ids": ids}, tenant=tenant
        )
        return result

    def list_items(
        self, *, cursor: str | None = None, limit: int = 500, tenant: str | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        result: dict[str, Any] = self.request("GET", "/v1/items", params=params, tenant=tenant)
        return result

    def task(self, task_id: str, *, tenant: str | None = None) -> dict[str, Any]:
        """A task's status; a task is visible to the tenant that submitted it."""
        result: dict[str, Any] = self.request("GET", f"/v1/tasks/{task_id}", tenant=tenant)
        return result

    def tasks(self, task_ids: list[str], *, tenant: str | None = None) -> dict[str, Any]:
        """Many tasks' statuses in one request: ``{"tasks": [...], "not_found": [ids]}``."""
        result: dict[str, Any] = self.request(
            "GET", "/v1/tasks", params={"ids": ",".join(task_ids)}, tenant=tenant
        )
        return result

    def duplicates(
        self,
        ids: list[str],
        *,
        tenant: str | None = None,
        threshold: float | None = None,
        limit: int = 20,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"ids": ids, "limit": limit}
        if threshold is not None:
            body["threshold"] = threshold
        result: dict[str, Any] = self.request("POST", "/v1/duplicates", json=body, tenant=tenant)
        return result

    # ---------------------------------------------------------------------- reindex

    def reindex(self, action: str = "", **body: Any) -> dict[str, Any]:
        """``GET /v1/reindex`` (no action), or ``POST /v1/reindex[/action]`` with ``body``."""
        if not action and not body:
            result: dict[str, Any] = self.request("GET", "/v1/reindex")
            return result
        path = "/v1/reindex" + (f"/{action}" if action else "")
        result = self.request("POST", path, json=body)
        return result
