"""LightGBM's OpenMP threads on a shared machine.

OpenMP threads spin for a while before they sleep when they wait for work. A thread that spins
long holds a core that the service's other processes, consumers and jobs need: on a busy
machine the spin costs far more than the wake-up, and on an idle one a short spin costs what a
long one does (``python -m bench.openmp`` prints both).
"""

from __future__ import annotations

import os

SPIN_COUNT = "10000"


def spin_briefly() -> None:
    """Make a short spin the default in this process's environment, so in every process it
    starts, unless the operator set one. Call it at an entry point, before LightGBM loads: the
    OpenMP runtime reads it once."""
    os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
