"""Where catalog items come from: a folder of images, or a CSV / JSON Lines manifest.

A **folder**: every image below it (sorted); the item id is the relative path without the
suffix (``shoes/red-1.jpg`` -> ``shoes.red-1``), the first sub-folder is the ``category``
unless told otherwise, and ``path`` is kept in the metadata.

A **manifest** lists one item per row (``.csv`` with a header row, or ``.jsonl``/``.ndjson``
with one JSON object per line):

- ``id`` (required): the item id;
- ``path`` (relative to the manifest's folder, or absolute) or ``url`` (``http(s)://``):
  where the image is; ``image`` is read as either. A path must lie inside the manifest's
  folder (or the ``base`` given): ``../../etc/x.jpg`` or an absolute path elsewhere is refused
  as ``path_not_allowed`` unless ``allow_outside`` (``indexer ingest --base-dir`` /
  ``--allow-any-path``). A URL whose host is a private, loopback, link-local or cloud
  metadata address is refused at download time as ``url_not_allowed`` (:func:`check_url`)
  unless private URLs are allowed (``--allow-private-urls``, for trusted internal sources);
- ``tenant`` (optional): the catalog the item belongs to (default: the command's tenant);
- every other column is metadata. A CSV cell of a field the catalog schema declares is
  converted to the declared type (``integer``, ``float``, ``bool``: true/false/1/0/yes/no,
  ``datetime``: ISO 8601, ``keyword_list``: values separated by ``|``); undeclared columns
  stay text, and empty cells are left out. JSON Lines keep their JSON types (a ``metadata``
  object is merged in), and declared fields are checked against their type.

A row that cannot be an item (no id, an invalid id, no image, bad JSON, a declared field
whose value is not of its type: ``invalid_metadata``) is not skipped in silence: it becomes
an item with a ``problem``, which the job reports as failed, before anything is uploaded.
"""

from __future__ import annotations

import csv
import ipaddress
import json
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lookalike.images import IMAGE_SUFFIXES
from lookalike.schema import (
    DEFAULT_CATALOG_SCHEMA,
    CatalogSchema,
    InvalidId,
    InvalidMetadata,
    validate_id,
)

MANIFEST_SUFFIXES = frozenset({".csv", ".jsonl", ".ndjson"})
_UNSAFE = re.compile(r"[^A-Za-z0-9._:@+=-]+")
_RESERVED = ("id", "path", "url", "image", "tenant")


@dataclass(frozen=True)
class SourceItem:
    id: str
    path: Path | None
    metadata: dict[str, Any] = field(default_factory=dict)
    url: str | None = None
    tenant: str | None = None
    # Where it came from, for reports: "file.csv:12" or the image's path.
    origin: str = ""
    # (code, message) when the row cannot be an item; the job reports it as failed.
    problem: tuple[str, str] | None = None

    @property
    def location(self) -> str:
        return self.url or (str(self.path) if self.path is not None else "")


class SourceError(ValueError):
    """The source as a whole cannot be read (not a folder, unknown manifest type)."""


def open_source(
    source: Path,
    *,
    labels_from_folders: bool = True,
    base: Path | None = None,
    allow_outside: bool = False,
    schema: CatalogSchema = DEFAULT_CATALOG_SCHEMA,
) -> Iterator[SourceItem]:
    """The items of a folder or a manifest file. A manifest's paths must lie inside ``base``
    (default: the manifest's folder) unless ``allow_outside``; its metadata is typed and
    checked by the catalog's ``schema`` (the API's GET /v1/schema)."""
    source = Path(source)
    if source.is_dir():
        return folder_items(source, labels_from_folders=labels_from_folders)
    if not source.is_file():
        raise SourceError(f"{source} is neither a folder nor a manifest file")
    jail = None if allow_outside else Path(base or source.parent).resolve()
    if source.suffix.lower() == ".csv":
        return csv_items(source, base=jail, schema=schema)
    if source.suffix.lower() in (".jsonl", ".ndjson"):
        return jsonl_items(source, base=jail, schema=schema)
    raise SourceError(f"{source}: a manifest must be .csv, .jsonl or .ndjson")


def count_items(source: Path) -> int:
    """How many items (or rows) a source holds, read quickly, for the progress bar."""
    source = Path(source)
    if source.is_dir():
        return sum(1 for _ in _image_paths(source))
    with source.open("rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    return max(0, lines - 1) if source.suffix.lower() == ".csv" else lines


def _image_paths(root: Path) -> Iterator[Path]:
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        if path.is_file():
            yield path


def folder_items(root: Path, *, labels_from_folders: bool = True) -> Iterator[SourceItem]:
    """Every image below `root`, sorted; the first sub-folder names the category."""
    root = Path(root)
    for path in _image_paths(root):
        rel = path.relative_to(root)
        item_id = _UNSAFE.sub("-", ".".join(rel.with_suffix("").parts)).strip("-.") or "item"
        metadata: dict[str, Any] = {"path": rel.as_posix()}
        if labels_from_folders and len(rel.parts) > 1:
            metadata["category"] = rel.parts[0]
        yield SourceItem(item_id, path, metadata, origin=rel.as_posix())


def csv_items(
    manifest: Path, *, base: Path | None = None, schema: CatalogSchema = DEFAULT_CATALOG_SCHEMA
) -> Iterator[SourceItem]:
    with manifest.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "id" not in reader.fieldnames:
            raise SourceError(f"{manifest}: the header must have an 'id' column")
        for row in reader:
            origin = f"{manifest.name}:{reader.line_num}"
            if None in row:
                yield _problem(row.get("id"), origin, "invalid_row", "the row has extra cells")
                continue
            try:
                metadata = {
                    key: _typed(schema, key, value)
                    for key, value in row.items()
                    if key not in _RESERVED and value not in (None, "")
                }
            except InvalidMetadata as exc:
                yield _problem(row.get("id"), origin, "invalid_metadata", exc.message)
                continue
            yield _item(manifest, row, metadata, origin, base)


def jsonl_items(
    manifest: Path, *, base: Path | None = None, schema: CatalogSchema = DEFAULT_CATALOG_SCHEMA
) -> Iterator[SourceItem]:
    with manifest.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            origin = f"{manifest.name}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield _problem(None, origin, "invalid_row", f"not valid JSON: {exc}")
                continue
            if not isinstance(row, dict):
                yield _problem(None, origin, "invalid_row", "a line must hold a JSON object")
                continue
            nested = row.get("metadata")
            if nested is not None and not isinstance(nested, dict):
                yield _problem(row.get("id"), origin, "invalid_row", "metadata must be an object")
                continue
            metadata = {k: v for k, v in row.items() if k not in (*_RESERVED, "metadata")}
            metadata.update(nested or {})
            try:
                metadata = schema.check_metadata(metadata)
            except InvalidMetadata as exc:
                yield _problem(row.get("id"), origin, "invalid_metadata", exc.message)
                continue
            yield _item(manifest, row, metadata, origin, base)


def _item(
    manifest: Path,
    row: dict[str, Any],
    metadata: dict[str, Any],
    origin: str,
    base: Path | None = None,
) -> SourceItem:
    raw_id = row.get("id")
    if not isinstance(raw_id, str | int) or isinstance(raw_id, bool) or raw_id == "":
        return _problem(None, origin, "invalid_row", "the row has no id")
    item_id = str(raw_id)
    try:
        validate_id(item_id)
    except InvalidId as exc:
        return _problem(item_id, origin, "invalid_id", str(exc))
    tenant = row.get("tenant") or None
    if tenant is not None:
        try:
            tenant = validate_id(str(tenant), "tenant")
        except InvalidId as exc:
            return _problem(item_id, origin, "invalid_tenant", str(exc))
    location = row.get("url") or row.get("path") or row.get("image")
    if not isinstance(location, str) or not location.strip():
        return _problem(item_id, origin, "invalid_row", "the row has no path or url")
    location = location.strip()
    if location.startswith(("http://", "https://")):
        return SourceItem(item_id, None, metadata, url=location, tenant=tenant, origin=origin)
    if "://" in location:
        return _problem(item_id, origin, "url_not_allowed", "only http(s) URLs are fetched")
    path = Path(location)
    if not path.is_absolute():
        path = manifest.parent / path
    if base is not None and not path.resolve().is_relative_to(base):
        # A manifest from elsewhere must not make the indexer read (and upload) any file the
        # user can read: symlinks and ".." are resolved before the check.
        return _problem(
            item_id,
            origin,
            "path_not_allowed",
            f"{location} is outside {base} (indexer ingest --base-dir or --allow-any-path)",
        )
    return SourceItem(item_id, path, metadata, tenant=tenant, origin=origin)


class UrlNotAllowed(ValueError):
    """A URL the indexer refuses to fetch (it would reach inside the network it runs in)."""


def check_url(url: str, *, allow_private: bool = False) -> None:
    """Refuse a URL that is not http(s), or whose host resolves to a loopback, private,
    link-local (cloud metadata: 169.254.169.254), multicast, reserved or unspecified address,
    unless ``allow_private``. Every address the host resolves to is checked. An early answer
    only: the indexer's downloads connect to the addresses they checked themselves
    (indexer/fetch.py), for the first request and every redirect."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UrlNotAllowed(f"{url}: only http(s) URLs with a host are fetched")
    if allow_private:
        return
    host = parts.hostname
    try:
        infos = socket.getaddrinfo(host, parts.port or 80, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise UrlNotAllowed(f"{url}: cannot resolve {host}: {exc}") from exc
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address_allowed(address):
            raise UrlNotAllowed(
                f"{url}: {host} is a private, loopback or link-local address ({address}); "
                "use --allow-private-urls for a trusted internal source"
            )


def address_allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether the indexer may connect to ``address``: a global unicast address (an
    IPv4-mapped IPv6 address judged as the IPv4 one)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _problem(raw_id: Any, origin: str, code: str, message: str) -> SourceItem:
    item_id = str(raw_id) if isinstance(raw_id, str | int) and raw_id != "" else f"@{origin}"
    return SourceItem(item_id, None, origin=origin, problem=(code, f"{origin}: {message}"))


def _typed(schema: CatalogSchema, key: str, value: str) -> Any:
    """A CSV cell as the catalog schema declares its field (text if it declares none)."""
    declared = schema.field(key)
    return value.strip() if declared is None else declared.from_text(value)
