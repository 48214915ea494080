"""Run as a script: import modules and print, as JSON, every side effect the import had.

``python import_probe.py BASELINE MODULES`` (two JSON lists of module names) first imports the
BASELINE (the third-party modules the project imports: their own import-time habits are theirs),
takes stock of the process and the user's home, imports MODULES, and reports what changed.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import threading
from pathlib import Path


def handlers() -> dict[str, list[int]]:
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    return {logger.name: [id(h) for h in logger.handlers] for logger in loggers}


def metrics() -> set[str]:
    if "prometheus_client" not in sys.modules:
        return set()
    from prometheus_client import REGISTRY

    return set(REGISTRY._names_to_collectors)


def files(folder: Path) -> set[str]:
    return {str(path) for path in folder.rglob("*")} if folder.exists() else set()


def tracking_uri() -> str | None:
    if "mlflow" not in sys.modules:
        return None
    from mlflow.tracking._tracking_service import utils

    return utils._tracking_uri


def threads() -> set[str]:
    return {
        thread.name
        for thread in threading.enumerate()
        if not thread.daemon and thread is not threading.main_thread()
    }


def main(baseline: list[str], wanted: list[str]) -> dict:
    for name in baseline:
        importlib.import_module(name)
    user_home = Path.home()
    before = {
        "environment": dict(os.environ),
        "metrics": metrics(),
        "handlers": handlers(),
        "user_files": files(user_home),
        "threads": threads(),
    }
    for name in wanted:
        importlib.import_module(name)
    environment = dict(os.environ)
    after_handlers = handlers()
    return {
        "environment_changed": sorted(
            name
            for name in set(environment) | set(before["environment"])
            if environment.get(name) != before["environment"].get(name)
        ),
        "metrics_registered": sorted(metrics() - before["metrics"]),
        "handlers_added": sorted(
            name
            for name, ids in after_handlers.items()
            if set(ids) - set(before["handlers"].get(name, []))
        ),
        "user_files_created": sorted(files(user_home) - before["user_files"]),
        "threads_started": sorted(threads() - before["threads"]),
        "tracking_uri": tracking_uri(),
        "prometheus_imported": "prometheus_client" in sys.modules,
    }


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]), json.loads(sys.argv[2]))))
