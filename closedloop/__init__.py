"""closedloop: a system of action for telecom operators.

OpenMP threads (LightGBM's) wait for work by sleeping unless the operator says otherwise: a
spinning thread holds a core that the service's other processes, consumers and jobs need, and
on a busy machine the spin costs far more than the wake-up (``python -m bench.openmp`` prints
both). The default is set here, on first import, so that it is in the environment before
LightGBM's OpenMP runtime loads and in every process closedloop starts.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

__version__ = "0.1.0"
