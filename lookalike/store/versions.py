"""How versions and aliases of a catalog are named: ``<collection>__<label>__<n>``."""

from __future__ import annotations

import re

from lookalike.models import MODELS
from lookalike.store.types import ALIAS_ROLES, StoreError, Version

COLLECTION_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
LABEL_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_VERSION_SEPARATOR = "__"


def version_name(collection: str, label: str, number: int) -> str:
    """The physical collection of a catalog's version."""
    return f"{collection}{_VERSION_SEPARATOR}{label}{_VERSION_SEPARATOR}{number}"


def alias_name(collection: str, role: str) -> str:
    """The alias of a role: the catalog's own name for ``active``, else ``<catalog>__<role>``."""
    if role not in ALIAS_ROLES:
        raise StoreError(f"unknown alias role {role!r}")
    return collection if role == "active" else f"{collection}{_VERSION_SEPARATOR}{role}"


def parse_version(collection: str, name: str) -> Version | None:
    if name == collection:
        return Version(name, "", 0)
    prefix = collection + _VERSION_SEPARATOR
    if not name.startswith(prefix):
        return None
    label, sep, number = name[len(prefix) :].rpartition(_VERSION_SEPARATOR)
    if not sep or not LABEL_RE.match(label) or not number.isdigit():
        return None
    return Version(name, label, int(number))


def model_of(version: Version | None, configured: str) -> str:
    """The model that fills a version: its label, or the configured model for a catalog from
    before versions (label ``""``) or with no version yet."""
    if version is not None and version.label in MODELS:
        return version.label
    return configured
