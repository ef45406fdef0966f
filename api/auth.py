"""API keys, tenants, and signed image URLs.

With no key configured (the embedded demo) every request may read and write, and the tenant is
the ``X-Tenant`` header. With keys configured, every ``/v1`` request needs one, in
``X-API-Key: KEY`` or ``Authorization: Bearer KEY``:

* no key, or an unknown one: 401; a read key on a write operation: 403;
* a key bound to a tenant (``TENANT/KEY`` in the settings) acts for that tenant only: an
  ``X-Tenant`` naming another is a 403, and no ``X-Tenant`` means its own.

An ``<img>`` tag cannot send a header, so the image URLs in API results carry ``tenant`` and
a signature (``sig``) over tenant and item id instead: whoever the API showed an item to may
load its image, and nobody can forge the URL of another tenant's image.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, current_app, g, request

from api.errors import APIError
from lookalike.schema import DEFAULT_TENANT, InvalidId, validate_id
from lookalike.settings import Settings, parse_api_keys

F = TypeVar("F", bound=Callable[..., Any])

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    """Who is asking: may they write, and which tenant are they bound to (None: any)."""

    can_write: bool
    tenant: str | None


class KeyRing:
    """The configured keys, looked up by their SHA-256 (no key is compared byte by byte)."""

    def __init__(self, settings: Settings) -> None:
        self._keys: dict[bytes, Principal] = {}
        secrets: list[str] = []
        for raw, can_write in ((settings.api_keys_read, False), (settings.api_keys_write, True)):
            for tenant, key in parse_api_keys(raw):
                digest = hashlib.sha256(key.encode()).digest()
                known = self._keys.get(digest)
                # The same key listed twice keeps its widest rights.
                if known is None or (can_write and not known.can_write):
                    self._keys[digest] = Principal(can_write, tenant)
                secrets.append(f"{tenant or '*'}/{key}")
        self.enabled = bool(self._keys)
        seed = settings.url_signing_key or "\n".join(sorted(secrets))
        self._signing_key = hashlib.sha256(b"lookalike image urls\n" + seed.encode()).digest()

    def lookup(self, key: str) -> Principal | None:
        return self._keys.get(hashlib.sha256(key.encode()).digest())

    def sign(self, tenant: str, item_id: str) -> str:
        message = f"{tenant}\n{item_id}".encode()
        return hmac.new(self._signing_key, message, hashlib.sha256).hexdigest()[:32]

    def verify(self, tenant: str, item_id: str, signature: str) -> bool:
        # Bytes: compare_digest refuses str holding non-ASCII characters.
        expected = self.sign(tenant, item_id).encode()
        return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))


def read_only(view: F) -> F:
    """Mark a POST view that only reads (a query), so a read key may call it."""
    view.lookalike_read_only = True  # type: ignore[attr-defined]
    return view


def signed_url(view: F) -> F:
    """Mark a view whose URL may carry ``tenant`` and ``sig`` instead of a key (images)."""
    view.lookalike_signed_url = True  # type: ignore[attr-defined]
    return view


def init_auth(app: Flask, settings: Settings) -> KeyRing:
    keys = KeyRing(settings)
    app.extensions["lookalike.keys"] = keys
    app.before_request(_authenticate)
    return keys


def keyring() -> KeyRing:
    keys: KeyRing = current_app.extensions["lookalike.keys"]
    return keys


def _authenticate() -> None:
    if not request.path.startswith("/v1/"):
        return  # the gallery, its static files, probes, the OpenAPI document, metrics
    keys = keyring()
    view = current_app.view_functions.get(request.endpoint or "")
    signature = request.args.get("sig")
    if signature is not None and getattr(view, "lookalike_signed_url", False):
        tenant = _query_tenant()
        item_id = (request.view_args or {}).get("item_id", "")
        if not keys.verify(tenant, str(item_id), signature):
            raise APIError(403, "invalid_signature", "the URL's signature is not valid", "sig")
        g.lookalike_principal = Principal(can_write=False, tenant=tenant)
        return
    if not keys.enabled:
        g.lookalike_principal = Principal(can_write=True, tenant=None)
        request_tenant()
        return
    key = _presented_key()
    if not key:
        raise APIError(
            401, "missing_api_key", "an API key is required (X-API-Key or Authorization: Bearer)"
        )
    principal = keys.lookup(key)
    if principal is None:
        raise APIError(401, "invalid_api_key", "the API key is not valid")
    writes = request.method not in READ_METHODS and not getattr(view, "lookalike_read_only", False)
    if writes and not principal.can_write:
        raise APIError(403, "read_only_key", "this API key may only read")
    g.lookalike_principal = principal
    request_tenant()  # a malformed X-Tenant, or another tenant's key, fails every route alike


def _presented_key() -> str:
    key = request.headers.get("X-API-Key", "").strip()
    if key:
        return key
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def _explicit_tenant() -> tuple[str, str] | None:
    """The tenant the request names, and where: the X-Tenant header, or for an image URL
    its ``tenant`` parameter."""
    header = request.headers.get("X-Tenant")
    if header is not None:
        return header, "X-Tenant"
    view = current_app.view_functions.get(request.endpoint or "")
    param = request.args.get("tenant")
    if param is not None and getattr(view, "lookalike_signed_url", False):
        return param, "tenant"
    return None


def _query_tenant() -> str:
    explicit = _explicit_tenant()
    return _valid_tenant(*explicit) if explicit else DEFAULT_TENANT


def _valid_tenant(raw: str, field: str) -> str:
    try:
        return validate_id(raw, "tenant")
    except InvalidId as exc:
        raise APIError(400, "invalid_tenant", str(exc), field) from exc


def request_tenant() -> str:
    """The tenant this request acts for: the one it names, checked against its key's tenant,
    else its key's tenant, else ``default``."""
    principal: Principal | None = g.get("lookalike_principal")
    bound = principal.tenant if principal is not None else None
    explicit = _explicit_tenant()
    if explicit is None:
        return bound or DEFAULT_TENANT
    tenant = _valid_tenant(*explicit)
    if bound is not None and tenant != bound:
        raise APIError(
            403, "tenant_forbidden", "this API key belongs to another tenant", explicit[1]
        )
    return tenant
