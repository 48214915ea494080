"""dvc.yaml lists, for each stage, every project source its command can run: the command's
function, what it calls and imports, transitively, read from the source (see code_reach)."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer
import yaml
from code_reach import Reach
from import_graph import PROJECT

from closedloop.cli import app

STAGES = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"]


def entry_points(cmd: str) -> list[tuple[str, str]]:
    """The functions a stage's ``cmd`` runs: the CLI's callback, then each command's."""
    root = typer.main.get_command(app)
    found = [(root.callback.__module__, root.callback.__name__)]
    for part in cmd.split("&&"):
        words = shlex.split(part)
        assert words[0] == "closedloop", f"a stage calls the CLI, not {words[0]!r}"
        command, args = root, words[1:]
        while isinstance(command, typer.core.TyperGroup):
            command = command.get_command(None, args.pop(0))
        found.append((command.callback.__module__, command.callback.__name__))
    return found


def uncovered(deps: list, files: set[Path]) -> list[str]:
    """The files no dep names, itself or through a folder holding it."""
    listed = [PROJECT / (dep if isinstance(dep, str) else next(iter(dep))) for dep in deps]
    return sorted(
        str(path.relative_to(PROJECT))
        for path in files
        if not any(path == dep or dep in path.parents for dep in listed)
    )


def sources(reach: Reach, cmd: str) -> set[Path]:
    return {reach.files[name] for name in reach.modules_run_by(*entry_points(cmd))}


def test_every_stage_lists_every_source_its_command_runs():
    reach = Reach()
    missing = {
        stage: uncovered(spec["deps"], sources(reach, spec["cmd"]))
        for stage, spec in STAGES.items()
    }
    gaps = [f"{stage}: {', '.join(files)}" for stage, files in missing.items() if files]
    assert not gaps, "\n".join(["sources run but not in the stage's deps:", *gaps])


def test_every_source_a_stage_lists_exists():
    for stage, spec in STAGES.items():
        for dep in spec["deps"]:
            path = dep if isinstance(dep, str) else next(iter(dep))
            if not path.startswith("var/"):
                assert (PROJECT / path).exists(), f"{stage}: {path} does not exist"


def test_the_reach_follows_calls_into_other_packages():
    """So that a dep left out would be found missing."""
    reach = Reach()
    training = sources(reach, STAGES["train_churn"]["cmd"])
    assert PROJECT / "training" / "trainer.py" in training
    assert PROJECT / "closedloop" / "settings.py" in training
    assert PROJECT / "serving" / "service.py" not in training
    world = sources(reach, STAGES["world"]["cmd"])
    left_out = uncovered(["closedloop/world", "training", "monitoring"], world)
    assert {"closedloop/cli.py", "closedloop/params.py", "closedloop/settings.py"} <= set(left_out)
    assert PROJECT / "closedloop" / "world" / "simulate.py" in world
    assert PROJECT / "features" / "ingest.py" not in world
