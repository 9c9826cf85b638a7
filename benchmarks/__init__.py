"""Benchmarks: measured evidence for kdlib's speed (README "Speed"). Run from the repository root,
e.g. `python -m benchmarks.bench_train --json bench.json`."""
