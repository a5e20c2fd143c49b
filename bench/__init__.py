"""Benchmarks of what tracing costs the database (``bench/overhead.py``)."""
