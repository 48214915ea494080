"""`dvc repro` rebuilds world, ingest, features and both models from scratch in a repo copy."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SKIP = {
    ".git",
    ".venv",
    "var",
    ".pytest_cache",
    ".ruff_cache",
    "__pycache__",
    ".dvc/cache",
    ".dvc/tmp",
}


def _copy_project(target: Path) -> None:
    def ignore(folder: str, names: list[str]) -> set[str]:
        relative = Path(folder).relative_to(ROOT)
        return {n for n in names if n in SKIP or str(relative / n) in SKIP}

    shutil.copytree(ROOT, target, ignore=ignore)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("CLOSEDLOOP_HOME", None)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_dvc_repro_builds_every_stage_and_reports_metrics(tmp_path):
    repo = tmp_path / "repo"
    _copy_project(repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["world"].update(customers=1_500, days=50, customers_per_cell=50)
    for section in ("train_churn", "train_fault"):
        params[section]["lightgbm"].update(num_boost_round=150, early_stopping_rounds=20)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    for command in (["git", "init", "-q"], ["git", "add", "-A"]):
        assert _run(command, repo).returncode == 0
    assert (
        _run(
            ["git", "-c", "user.name=ci", "-c", "user.email=ci@localhost", "commit", "-qm", "x"],
            repo,
        ).returncode
        == 0
    )

    first = _run([sys.executable, "-m", "dvc", "repro"], repo)
    assert first.returncode == 0, first.stderr[-2000:]
    for stage in ("world", "ingest", "features", "train_churn", "train_fault"):
        assert f"Running stage '{stage}'" in first.stdout
    assert (repo / "dvc.lock").is_file()

    metrics = _run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], repo)
    assert metrics.returncode == 0, metrics.stderr
    shown = json.dumps(json.loads(metrics.stdout))
    assert "train_churn.json" in shown and "roc_auc" in shown

    again = _run([sys.executable, "-m", "dvc", "repro"], repo)
    assert again.returncode == 0
    assert "Running stage" not in again.stdout, "nothing changed, so nothing re-runs"
