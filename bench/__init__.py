"""Benchmarks: each prints its figures (medians of repeated runs) and any peer's beside them.

Importing closedloop first puts its OpenMP default in the environment before any benchmark
loads LightGBM, as the product's own commands do.
"""

import closedloop  # noqa: F401
