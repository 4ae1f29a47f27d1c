"""Benchmarks of the outbox (not tests): ``python bench/run.py``; see docs/BENCHMARKS.md."""
