"""Benchmarks: scripts run from the checkout (``python bench/plan.py``, ``python -m
bench.fanout``); docs/performance.md has what they measured."""
