"""The progress line: what its rate counts, and no line printed twice."""

from __future__ import annotations

import io

from indexer.progress import Progress


def test_a_final_update_with_nothing_new_prints_no_second_line() -> None:
    out = io.StringIO()  # not a terminal: plain lines
    progress = Progress(out, 40, label="duplicates", unit="items/s")
    progress.update(done=40, failed=0)
    progress.update(done=40, failed=0, force=True)
    progress.finish()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("duplicates: [") and "40/40" in lines[0]
    assert "items/s" in lines[0] and "img/s" not in lines[0]


def test_an_update_with_new_counts_is_printed_when_forced() -> None:
    out = io.StringIO()
    progress = Progress(out, None)
    progress.update(done=1, failed=0)
    progress.update(done=2, failed=1, force=True)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "done 2  failed 1" in lines[1] and "img/s" in lines[1]
