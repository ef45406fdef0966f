"""How versions and aliases of a catalog are named: ``<collection>__<label>__<n>``.

A version's label says what fills it: a backbone (``efficientnet-lite0``), or a backbone and
a trained head on its vectors (``efficientnet-lite0-head-<name>``, the embedder's own name
for that pair), or the backbone's own vectors whatever head is configured
(``efficientnet-lite0-head-none``). :func:`model_of` reads it, for the worker and the API
alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lookalike.models import MODELS
from lookalike.settings import HEAD_NAME, NO_HEAD
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


HEAD_SEPARATOR = "-head-"


@dataclass(frozen=True)
class VersionModel:
    """What fills a version: a backbone (``LOOKALIKE_MODEL``'s names) and a trained head's
    name in the model cache, or ``""`` for the backbone's own vectors."""

    model: str
    head: str = ""

    @property
    def label(self) -> str:
        """The version label, and the embedder's name (worker/model/embedder.py)."""
        return f"{self.model}{HEAD_SEPARATOR}{self.head}" if self.head else self.model


def requested_label(model: str, head: str = "") -> str:
    """The label of the version a reindex to ``model`` and ``head`` makes. Head ``none``
    (NO_HEAD): ``<model>-head-none``, the model's own vectors, which no configured head
    fills, where the bare ``<model>`` would take LOOKALIKE_HEAD (:func:`label_model`)."""
    return (
        f"{model}{HEAD_SEPARATOR}{NO_HEAD}" if head == NO_HEAD else VersionModel(model, head).label
    )


def parse_label(label: str) -> VersionModel | None:
    """The backbone and head a label names; None for another label (``""``: a catalog from
    before versions)."""
    if label in MODELS:
        return VersionModel(label)
    model, separator, head = label.partition(HEAD_SEPARATOR)
    if separator and model in MODELS and HEAD_NAME.match(head):
        return VersionModel(model, "" if head == NO_HEAD else head)
    return None


def model_of(version: Version | None, configured: str, configured_head: str = "") -> VersionModel:
    """What fills a version: what its label names, or the configured model and head
    (``LOOKALIKE_MODEL``, ``LOOKALIKE_HEAD``) for a catalog from before versions (label
    ``""``) or with no version yet.

    A label naming the configured backbone alone means the configured head too: versions
    were labelled by their backbone only before a label could name a head, and a new
    catalog's first version still is (lookalike/store/opener.py). The backbone's own
    vectors under a configured head are labelled ``<model>-head-none``
    (:func:`requested_label`).
    """
    return label_model(version.label if version is not None else "", configured, configured_head)


def label_model(label: str, configured: str, configured_head: str = "") -> VersionModel:
    """:func:`model_of` for a version labelled ``label`` (one a reindex is about to make)."""
    named = parse_label(label)
    if named is None or label == configured:
        return VersionModel(configured, configured_head)
    return named
