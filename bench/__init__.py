"""Benchmarks: each prints its figures (medians of repeated runs) and any peer's beside them."""
