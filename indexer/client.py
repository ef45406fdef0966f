"""A small HTTP client for the lookalike API."""

from __future__ import annotations

import json
from typing import Any

import httpx


class APIClientError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.status = status
        self.code = error.get("code", "http_error")
        self.message = error.get("message", str(body))
        super().__init__(f"{status} {self.code}: {self.message}")


class APIClient:
    def __init__(self, base_url: str, *, tenant: str | None = None, timeout: float = 60) -> None:
        headers = {"X-Tenant": tenant} if tenant else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _json(self, resp: httpx.Response) -> Any:
        try:
            body = resp.json() if resp.content else None
        except ValueError:
            body = resp.text
        if resp.status_code >= 400:
            raise APIClientError(resp.status_code, body)
        return body

    def add_item(self, item_id: str, image: bytes, metadata: dict[str, Any]) -> dict[str, Any]:
        resp = self._http.post(
            "/v1/items",
            data={"id": item_id, "metadata": json.dumps(metadata)},
            files={"image": (item_id, image, "application/octet-stream")},
        )
        result: dict[str, Any] = self._json(resp)
        return result

    def task(self, task_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json(self._http.get(f"/v1/tasks/{task_id}"))
        return result

    def get(self, path: str, **params: Any) -> Any:
        return self._json(self._http.get(path, params=params))
