"""Benchmarks are scripts run by hand (``python tests/bench/bench_embed.py``), not tests."""

collect_ignore_glob = ["*.py"]
