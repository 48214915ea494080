"""Third-party chatter kept off the console: set once by the entry point (and where MLflow is
set up), with no dependency on the command line's own libraries, so the service may use it."""

from __future__ import annotations

import logging
import os
import sys
import warnings

QUIET_ENVIRONMENT = {
    "MLFLOW_LOGGING_LEVEL": "ERROR",  # read when MLflow is first imported
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "BENTOML_DO_NOT_TRACK": "true",
    "TQDM_DISABLE": "1",
}
"""The libraries' own switches for their chatter, also passed to the service's processes."""

_QUIET_LOGGERS = (
    "mlflow", "alembic", "feast", "bentoml", "evidently", "lightgbm", "urllib3", "psycopg",
)  # fmt: skip
_QUIET_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def quiet_libraries() -> None:
    """Keep third-party chatter (info and warning logs, deprecation and pickling warnings,
    progress bars, MLflow's registration prints) off the console: their failures reach the
    user as exceptions. Called by the entry point, and again where MLflow is set up (its print
    stream exists once it is imported). A variable the user set is left as it is."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for category in _QUIET_WARNINGS:  # a user of the command cannot act on them
        warnings.filterwarnings("ignore", category=category)
    for name in _QUIET_LOGGERS:  # nor on a library's other warnings (e.g. MLflow's pickling)
        warnings.filterwarnings("ignore", module=rf"{name}(\..*)?$")
    if "mlflow" in sys.modules:
        from mlflow.utils.logging_utils import disable_logging

        disable_logging()
