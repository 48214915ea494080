"""The notebooks run, top to bottom, on a real kernel: each builds its own small home."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def outputs(notebook: nbformat.NotebookNode) -> str:
    """Everything the notebook's cells printed or displayed, as text."""
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            texts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


def test_the_notebooks_are_stored_without_outputs():
    stored = sorted(NOTEBOOKS.glob("*.ipynb"))
    assert [p.name for p in stored] == ["data-scientists.ipynb", "model-owners.ipynb"]
    for path in stored:
        cells = nbformat.read(path, as_version=4).cells
        code = [cell for cell in cells if cell.cell_type == "code"]
        assert code and all(not c.outputs and c.execution_count is None for c in code), path.name


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        (
            "data-scientists.ipynb",
            [
                "quarantined",
                "churn_v1",
                "promoted to champion",
                "against champion v1",
                "this version",
                "cumulative_gain",
                "observed",
                "roc_auc",
                "the risk)",
            ],
        ),
        (
            "model-owners.ipynb",
            [
                "churn v1 is the champion",
                "drifted features:",
                "threshold",
                "retrain:",
                "drift: file://",
                "evidently ui --workspace",
            ],
        ),
    ],
)
def test_a_notebook_runs_and_shows_its_results(name, shown, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's temporary home lands here
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    text = outputs(notebook)
    for expected in shown:
        assert expected in text, f"{name} does not show {expected!r}"
    (home,) = tmp_path.glob("closedloop-*")
    assert (home / "mlflow").is_dir()
    errors = [o for c in notebook.cells for o in c.get("outputs", []) if o.get("name") == "stderr"]
    assert not errors, f"{name} printed to stderr: {errors}"
