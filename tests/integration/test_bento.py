"""The Bento built from serving/bentofile.yaml: it holds everything the service imports and
reads, and, served with the source tree out of reach, it scores customers and takes events."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml
from access_kit import bearer
from import_graph import PACKAGES, modules, project_imports
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from closedloop.settings import Settings
from closedloop.world.config import WorldConfig
from serving.process import PROJECT, RunningService, service_environment, wait_ready
from training.config import LightGBMParams

BENTOFILE = PROJECT / "serving" / "bentofile.yaml"
CONFIG = WorldConfig(customers=1_200, days=50, seed=9, customers_per_cell=40)
END = datetime(2026, 2, 20, tzinfo=UTC)
FAST = LightGBMParams(num_boost_round=60, early_stopping_rounds=10)
# Put in front of the service's path, this drops the project's own folder from sys.path (the
# editable install puts it there) so that every project module must come from the Bento.
OUT_OF_REACH = f"import sys\nsys.path[:] = [p for p in sys.path if p != {str(PROJECT)!r}]\n"


def served_imports() -> tuple[set[str], set[str]]:
    """The project modules the service imports, transitively (function-local imports too), and
    the top-level third-party modules those import."""
    known = modules()
    by_importer: dict[str, list] = {}
    for edge in project_imports():
        by_importer.setdefault(edge.importer, []).append(edge)
    ours, theirs, todo = set(), set(), ["serving.service"]
    while todo:
        name = todo.pop()
        if name in ours:
            continue
        ours.add(name)
        for edge in by_importer.get(name, []):
            top = edge.target.split(".")[0]
            if top not in PACKAGES:
                theirs.add(top)
                continue
            parts = edge.target.split(".")
            todo.extend(".".join(parts[:n]) for n in range(1, len(parts) + 1))
    ours &= set(known)
    return ours, theirs - set(sys.stdlib_module_names) - {"__future__"}


def test_the_bento_lists_every_distribution_the_service_imports():
    _, theirs = served_imports()
    distributions = importlib.metadata.packages_distributions()
    listed = {
        canonicalize_name(Requirement(line).name)
        for line in yaml.safe_load(BENTOFILE.read_text())["python"]["packages"]
    }
    assert {"lightgbm", "mlflow", "bentoml"} <= theirs
    missing = {
        name: distributions[name]
        for name in theirs
        if not {canonicalize_name(d) for d in distributions[name]} & listed
    }
    assert not missing, f"modules whose distribution the bentofile does not list: {missing}"


@pytest.fixture(scope="module")
def bento(tmp_path_factory) -> tuple[str, dict[str, str]]:
    """``bentoml build`` into a fresh BENTOML_HOME, offline: the tag and the environment."""
    bentoml_home = tmp_path_factory.mktemp("bentoml")
    environment = {**os.environ, "BENTOML_HOME": str(bentoml_home), "BENTOML_DO_NOT_TRACK": "true"}
    built = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "-f", str(BENTOFILE), "--output", "tag", "."],
        cwd=PROJECT,
        env={**environment, "PIP_NO_INDEX": "1", "UV_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    return tag, environment


def test_the_bento_holds_every_module_the_service_imports_and_the_policies(bento):
    tag, environment = bento
    source = Path(environment["BENTOML_HOME"]) / "bentos" / Path(*tag.split(":")) / "src"
    ours, _ = served_imports()
    files = modules(source, PACKAGES)
    assert {"actions.runtime", "serving.service", "features.online"} <= ours
    assert ours <= set(files), f"missing from the Bento: {sorted(ours - set(files))}"
    assert (source / "actions" / "policies" / "default.yaml").exists()
    runbooks = {path.name for path in (PROJECT / "actions" / "runbooks").glob("*.md")}
    assert runbooks and runbooks == {p.name for p in (source / "actions" / "runbooks").glob("*")}


@pytest.fixture(scope="module")
def home(tmp_path_factory, prepare_serving) -> Settings:
    return prepare_serving(tmp_path_factory.mktemp("bento-home"), CONFIG, END, FAST)


def serve(tag: str, environment: dict, settings: Settings, folder: Path) -> RunningService:
    shim = folder / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(OUT_OF_REACH)
    environment = {
        **service_environment(settings),
        "BENTOML_HOME": environment["BENTOML_HOME"],
        "PYTHONPATH": str(shim),
    }
    reach = subprocess.run(
        [sys.executable, "-c", "import actions"], cwd=folder, env=environment, capture_output=True
    )
    assert reach.returncode != 0, "the project's source is still importable"
    log_path = folder / "bento.log"
    with log_path.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", tag,
             "--host", settings.serve_host, "--port", str(settings.serve_port)],
            cwd=folder, env=environment, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://{settings.serve_host}:{settings.serve_port}"
    return wait_ready(RunningService(process, url, log_path), 120)


def test_the_built_bento_scores_and_takes_events(bento, home, free_port, tmp_path):
    tag, environment = bento
    settings = Settings.model_validate(
        {**home.model_dump(), "serve_port": free_port(), "clock_start": END}
    )
    customers = pd.read_parquet(home.world_dir / "inventory/customers.parquet")
    cell = customers.cell_id.value_counts().index[0]
    at = END - timedelta(hours=1)
    onset = {
        "event_id": f"bento-{cell}", "event_type": "alarm_onset", "occurred_at": at.isoformat(),
        "cell_id": cell, "severity": "critical", "alarm_id": f"alm-{cell}",
        "description": "cell down",
    }  # fmt: skip
    auth = bearer(home, "admin")
    service = serve(tag, environment, settings, tmp_path)
    try:
        anonymous = httpx.post(f"{service.url}/events", json={"events": [onset]}, timeout=60)
        scored = httpx.post(
            f"{service.url}/churn/score",
            json={"customer_ids": customers.customer_id.head(3).tolist()},
            timeout=60,
            headers=auth,
        )
        events = httpx.post(
            f"{service.url}/events", json={"events": [onset]}, timeout=60, headers=auth
        )
        health = httpx.get(f"{service.url}/status/health", timeout=30, headers=auth).json()
    finally:
        service.stop()
    assert anonymous.status_code == 401  # the Bento's door is the service's
    assert scored.status_code == 200, scored.text
    assert [s["entity_id"] for s in scored.json()["scores"]] == customers.customer_id.head(
        3
    ).tolist()
    assert all(0 <= s["probability"] <= 1 for s in scored.json()["scores"])
    assert events.status_code == 200, events.text
    (outcome,) = events.json()["outcomes"]
    assert outcome["outcome"] == "new" and outcome["decisions"]
    assert health["status"] == "ok", health["problems"]
