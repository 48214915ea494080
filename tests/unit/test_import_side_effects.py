"""Importing any module of the project changes nothing: no file, no environment variable, no
tracking URI, no thread, no metric, no logging handler. Each check runs in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from import_graph import PACKAGES, PROJECT, modules, project_imports

PROBE = PROJECT / "tests" / "import_probe.py"


def importable_modules() -> list[str]:
    """Every module but ``__main__`` ones, whose import is running the program."""
    return [name for name in modules() if not name.endswith("__main__")]


def third_party_imports() -> list[str]:
    """The modules outside the project that the project imports at module level."""
    targets = {
        edge.target
        for edge in project_imports()
        if not edge.local and edge.target.split(".")[0] not in PACKAGES
    }
    return sorted(name for name in targets if name.split(".")[0] != "__future__")


def probe(tmp_path: Path, baseline: list[str], wanted: list[str]) -> tuple[dict, Path, Path]:
    cwd, home, user = tmp_path / "cwd", tmp_path / "home-not-yet", tmp_path / "user"
    cwd.mkdir()
    user.mkdir()
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CLOSEDLOOP_", "MLFLOW_", "BENTOML_", "PROMETHEUS_"))
    }
    environment.update(CLOSEDLOOP_HOME=str(home), HOME=str(user), PYTHONPATH=str(PROJECT))
    environment["PYTHONDONTWRITEBYTECODE"] = "1"
    done = subprocess.run(
        [sys.executable, str(PROBE), json.dumps(baseline), json.dumps(wanted)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1]), cwd, home


NOTHING = {
    "environment_changed": [],
    "metrics_registered": [],
    "handlers_added": [],
    "user_files_created": [],
    "threads_started": [],
    "tracking_uri": None,
}


def test_the_walk_covers_every_stage_and_the_service():
    names = importable_modules()
    assert {name.split(".")[0] for name in names} == set(PACKAGES)
    assert {"serving.service", "closedloop.cli", "actions.runtime"} <= set(names)
    assert "feast" in {name.split(".")[0] for name in third_party_imports()}


@pytest.mark.parametrize("wanted", ["every module", "serving.service"])
def test_importing_has_no_side_effects(tmp_path, wanted):
    """Every module at once, after the third-party modules they import; and the service alone,
    as BentoML's supervisor imports it, with nothing imported before it."""
    if wanted == "every module":
        seen, cwd, home = probe(tmp_path, third_party_imports(), importable_modules())
    else:
        seen, cwd, home = probe(tmp_path, [], [wanted])
        # prometheus_client picks its storage when imported: a worker must import it after
        # BentoML has exported PROMETHEUS_MULTIPROC_DIR, never the service's import
        assert not seen["prometheus_imported"]
    assert {key: seen[key] for key in NOTHING} == NOTHING
    assert list(cwd.iterdir()) == []
    assert not home.exists()
