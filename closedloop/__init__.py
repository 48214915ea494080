"""closedloop: a system of action for telecom operators.

OpenMP threads (LightGBM's) spin only briefly before they sleep while they wait for work
(``GOMP_SPINCOUNT``, unless the operator sets it): a thread that spins for long holds a core
that the service's other processes, consumers and jobs need, and on a busy machine the spin
costs far more than the wake-up, while on an idle one a short spin costs what the long one does
(``python -m bench.openmp`` prints both). The default is set here, on first import, so that it
is in the environment before LightGBM's OpenMP runtime loads and in every process closedloop
starts.
"""

import os

OPENMP_SPIN_COUNT = "10000"

os.environ.setdefault("GOMP_SPINCOUNT", OPENMP_SPIN_COUNT)

__version__ = "0.1.0"
