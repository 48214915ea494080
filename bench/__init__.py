"""Benchmarks: each prints its figures (medians of repeated runs) and any peer's beside them.

Each is a program of its own, so the package sets closedloop's OpenMP default before any
benchmark loads LightGBM, as the product's command line does.
"""

from closedloop.openmp import spin_briefly

spin_briefly()
