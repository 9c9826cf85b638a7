"""Benchmarks: measured evidence for kdlib's speed (docs/speed.md). Run from the repository root,
e.g. `python -m benchmarks.bench_train --json bench.json`."""
