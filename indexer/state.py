"""What an ingestion job remembers between runs: a small SQLite file.

Per item (tenant, id): the image hash and metadata hash last sent, and whether its task is
``pending`` (queued, not yet confirmed), ``indexed`` (confirmed) or ``failed``. A re-run of
the same command reads it to skip unchanged items, to follow the tasks a killed run left
queued instead of sending them again, and to send metadata-only changes without
re-embedding. Per source file or URL: size and mtime (or ETag) and the sha256 they gave, so
an unchanged file is not read again just to be hashed.

Each change is committed at once (WAL journal): a run killed at any point leaves a state
that the next run can trust. Losing the file loses no data, only the shortcuts: the next run
re-sends everything, and point ids derived from (tenant, id) keep the index free of
duplicates.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    image_sha256 TEXT,
    metadata_hash TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'indexed', 'failed')),
    task_id TEXT,
    code TEXT,
    message TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX IF NOT EXISTS items_by_task ON items (task_id) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS files (
    key TEXT PRIMARY KEY,
    size INTEGER,
    mtime_ns INTEGER,
    etag TEXT,
    sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def metadata_hash(metadata: dict[str, Any]) -> str:
    """A hash of metadata that ignores key order."""
    canonical = json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class ItemState:
    tenant: str
    id: str
    image_sha256: str | None
    metadata_hash: str | None
    status: str
    task_id: str | None
    code: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class FileState:
    size: int | None
    mtime_ns: int | None
    etag: str | None
    sha256: str


class JobState:
    """The state file. One writer (the job's main thread); readers in other threads get
    their own connection."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._db = self._connect()
        with self._db:
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)",
                (str(SCHEMA_VERSION),),
            )
        # The ids seen by this run, for --sync: a temporary table, gone with the connection.
        self._db.execute("CREATE TEMP TABLE seen (tenant TEXT, id TEXT, PRIMARY KEY (tenant, id))")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _reader(self) -> sqlite3.Connection:
        if threading.current_thread() is threading.main_thread():
            return self._db
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """Many writes as one commit. In autocommit mode (isolation_level=None), ``with
        db:`` opens no transaction, and executemany then commits once per row: 32 rows
        took 2.7 ms instead of 0.2 ms."""
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ------------------------------------------------------------------ run bookkeeping

    def mark_seen(self, tenant: str, item_id: str) -> bool:
        """Record that this run met the item; False if it already did (a duplicate id)."""
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO seen (tenant, id) VALUES (?, ?)", (tenant, item_id)
        )
        return cursor.rowcount == 1

    def was_seen(self, tenant: str, item_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM seen WHERE tenant = ? AND id = ?", (tenant, item_id)
        ).fetchone()
        return row is not None

    def seen_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM seen").fetchone()[0])

    # ------------------------------------------------------------------------ items

    def item(self, tenant: str, item_id: str) -> ItemState | None:
        row = (
            self._reader()
            .execute(
                "SELECT tenant, id, image_sha256, metadata_hash, status, task_id, code, message "
                "FROM items WHERE tenant = ? AND id = ?",
                (tenant, item_id),
            )
            .fetchone()
        )
        return None if row is None else ItemState(*row)

    def set_pending(self, rows: Iterable[tuple[str, str, str, str]], task_id: str) -> None:
        """(tenant, id, image sha256, metadata hash) of items just queued as ``task_id``."""
        now = time.time()
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO items (tenant, id, image_sha256, metadata_hash, status, "
                "task_id, updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                [(*row, task_id, now) for row in rows],
            )

    def set_indexed(self, rows: Iterable[tuple[str, str, str | None, str | None]]) -> None:
        """(tenant, id, image sha256, metadata hash) of items the service confirmed."""
        now = time.time()
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO items (tenant, id, image_sha256, metadata_hash, status, "
                "updated_at) VALUES (?, ?, ?, ?, 'indexed', ?)",
                [(*row, now) for row in rows],
            )

    def set_failed(self, rows: Iterable[tuple[str, str, str, str]]) -> None:
        """(tenant, id, code, message) of items that failed. What was indexed before stays
        in the index, so the hashes are forgotten: the next run tries again."""
        now = time.time()
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO items (tenant, id, status, code, message, updated_at) "
                "VALUES (?, ?, 'failed', ?, ?, ?)",
                [(*row, now) for row in rows],
            )

    def forget(self, rows: Iterable[tuple[str, str]]) -> None:
        with self._transaction():
            self._db.executemany("DELETE FROM items WHERE tenant = ? AND id = ?", list(rows))

    def has_items(self, tenant: str) -> bool:
        row = self._db.execute("SELECT 1 FROM items WHERE tenant = ? LIMIT 1", (tenant,)).fetchone()
        return row is not None

    def indexed_count(self, tenant: str) -> int:
        query = "SELECT count(*) FROM items WHERE tenant = ? AND status = 'indexed'"
        return int(self._db.execute(query, (tenant,)).fetchone()[0])

    def forget_tenant(self, tenant: str) -> None:
        self._db.execute("DELETE FROM items WHERE tenant = ?", (tenant,))

    def unseen(self, tenants: Iterable[str]) -> Iterator[tuple[str, str]]:
        """(tenant, id) of the items recorded here for these tenants that this run has not
        met."""
        for tenant in tenants:
            yield from self._db.execute(
                "SELECT tenant, id FROM items WHERE tenant = ? AND NOT EXISTS "
                "(SELECT 1 FROM seen WHERE seen.tenant = items.tenant AND seen.id = items.id)",
                (tenant,),
            ).fetchall()

    def sha_groups(self) -> list[list[tuple[str, str]]]:
        """Items met by this run that share one image, grouped (exact duplicates)."""
        groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for tenant, item_id, sha in self._db.execute(
            "SELECT i.tenant, i.id, i.image_sha256 FROM items i JOIN seen s "
            "ON s.tenant = i.tenant AND s.id = i.id WHERE i.image_sha256 IS NOT NULL "
            "AND i.status != 'failed' ORDER BY i.tenant, i.id"
        ):
            groups.setdefault((tenant, sha), []).append((tenant, item_id))
        return [g for g in groups.values() if len(g) > 1]

    # ------------------------------------------------------------------------ files

    def file(self, key: str) -> FileState | None:
        row = (
            self._reader()
            .execute("SELECT size, mtime_ns, etag, sha256 FROM files WHERE key = ?", (key,))
            .fetchone()
        )
        return None if row is None else FileState(*row)

    def set_file(self, key: str, state: FileState) -> None:
        # Called from reader threads too: a separate short write on their own connection.
        self._reader().execute(
            "INSERT OR REPLACE INTO files (key, size, mtime_ns, etag, sha256) "
            "VALUES (?, ?, ?, ?, ?)",
            (key, state.size, state.mtime_ns, state.etag, state.sha256),
        )


def default_state_path(
    api_url: str, source: str, kind: str = "ingest", *, state_dir: Path | None = None
) -> Path:
    """Where a job keeps its state unless told: one file per (service, source), under
    ``state_dir`` ($LOOKALIKE_INDEXER_STATE_DIR) or ``$XDG_STATE_HOME/lookalike/indexer``."""
    root = str(state_dir) if state_dir is not None else ""
    if not root:
        xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        root = str(Path(xdg) / "lookalike" / "indexer")
    key = hashlib.sha256(f"{api_url.rstrip('/')}\n{source}".encode()).hexdigest()[:16]
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in Path(source).name)[:40]
    return Path(root) / f"{kind}-{name or 'source'}-{key}.sqlite"
