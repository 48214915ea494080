"""A worker's start path imports neither MLflow (the registry is asked by the watcher thread)
nor scikit-learn and SciPy's statistics (LightGBM's estimator API, which scoring never uses)."""

from __future__ import annotations

import subprocess
import sys

from serving.process import PROJECT

START_PATH = """
import sys
from serving.process import lightgbm_without_sklearn
lightgbm_without_sklearn()
import serving.champion, serving.prediction_log, serving.scoring, serving.service
import lightgbm
print(sorted(m for m in ("mlflow", "sklearn", "scipy.stats", "feast") if m in sys.modules))
print(lightgbm.Booster.__name__, sys.modules.get("sklearn", "importable"))
"""


def test_the_start_path_imports_no_registry_client_and_no_estimator_api():
    done = subprocess.run(
        [sys.executable, "-c", START_PATH],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["[]", "Booster", "importable"]
