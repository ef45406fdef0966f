"""Reading a shard's memory-mapped files once after it opens (lookalike/residency.py)."""

from __future__ import annotations

import mmap
import sys
from pathlib import Path

import pytest

from lookalike.residency import mapped_files, warm

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/maps")


def test_warm_reads_each_mapped_file_under_a_folder_once(tmp_path: Path) -> None:
    shard = tmp_path / "shard"
    (shard / "segment").mkdir(parents=True)
    vectors, payload = shard / "segment" / "vectors.dat", shard / "payload.dat"
    vectors.write_bytes(b"\x01" * (3 << 20))
    payload.write_bytes(b"\x02" * (1 << 20))
    (shard / "unmapped.dat").write_bytes(b"\x03" * (1 << 20))
    (tmp_path / "elsewhere.dat").write_bytes(b"\x04" * (1 << 20))
    maps = []
    # vectors.dat twice (qdrant-edge maps its vector file twice), payload.dat and a file
    # outside the folder once each.
    for path in (vectors, vectors, payload, tmp_path / "elsewhere.dat"):
        with path.open("rb") as f:
            maps.append(mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ))
    try:
        assert sorted(mapped_files(shard)) == sorted([vectors.resolve(), payload.resolve()])
        assert warm(shard) == 4 << 20
    finally:
        for m in maps:
            m.close()
    assert mapped_files(shard) == []


def test_nothing_mapped_nothing_read(tmp_path: Path) -> None:
    (tmp_path / "file.dat").write_bytes(b"x" * 100)
    assert mapped_files(tmp_path) == []
    assert warm(tmp_path) == 0
