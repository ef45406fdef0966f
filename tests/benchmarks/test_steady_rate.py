"""The benchmark's steady ingest rate leaves out a job's start and end."""

from __future__ import annotations

import math

from benchmarks.bench import steady_rate


def test_steady_rate_is_the_middle_of_the_job() -> None:
    # 1 s before the first image, then 100 images/s in steps of 32 (one task at a time),
    # sampled every 0.25 s, then a 2 s tail with nothing more embedded.
    progress, done = [], 0.0
    for tick in range(60):
        t = tick * 0.25
        if t > 1.0:
            done = min(1000.0, 32 * ((t - 1.0) * 100 // 32))
        progress.append((t, done))
    progress += [(15.0 + i * 0.25, done) for i in range(8)]
    steady = steady_rate(progress)
    assert 90 < steady < 110
    assert steady > 1.5 * done / progress[-1][0]  # the whole job's rate, start and end in


def test_steady_rate_needs_a_job_under_way() -> None:
    assert math.isnan(steady_rate([]))
    assert math.isnan(steady_rate([(0.0, 0.0), (0.25, 0.0), (0.5, 0.0)]))
