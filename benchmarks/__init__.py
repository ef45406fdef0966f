"""Benchmarks: ``python -m benchmarks`` runs the performance report (docs/performance.md)."""
