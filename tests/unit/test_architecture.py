"""The dependency rule between the packages, checked over every import in the source (module
level, function-local and type-only alike): no cycle between packages, no forbidden import, no
private name taken from another package.

closedloop (core) <- features <- training <- serving, monitoring; actions depends on the core
(and features' online store), never on serving, training or monitoring; serving may import
actions. The CLI composes every stage and nothing imports it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from pathlib import Path

from import_graph import PACKAGES, Import, project_imports

STAGES = ("features", "training", "serving", "monitoring", "actions")
COMPOSITION = ("closedloop.cli", "closedloop.__main__", "closedloop.params")
FORBIDDEN = {
    "closedloop": set(STAGES),
    "features": {"training", "serving", "monitoring", "actions"},
    "training": {"serving", "monitoring", "actions"},
    "actions": {"serving", "training", "monitoring"},
}


def unit(module: str) -> str:
    """The node of the package graph a module belongs to: its package, or itself for the
    CLI's composition modules."""
    if module in COMPOSITION:
        return module
    return module.split(".")[0]


def is_private(edge: Import) -> bool:
    parts = [*edge.target.split("."), *([edge.name] if edge.name else [])]
    return any(part.startswith("_") and not part.startswith("__") for part in parts)


def violations(edges: Iterable[Import], packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """Every breach of the rule, one line each (cycles: one line per import on the cycle)."""
    found: list[str] = []
    graph: dict[str, dict[str, list[Import]]] = {}
    for edge in edges:
        if edge.target.split(".")[0] not in packages:
            continue
        source, target = unit(edge.importer), unit(edge.target)
        if edge.importer.split(".")[0] != edge.target.split(".")[0] and is_private(edge):
            found.append(f"private name from another package: {edge}")
        if source == target:
            continue
        graph.setdefault(source, {}).setdefault(target, []).append(edge)
        if target in FORBIDDEN.get(source, ()):
            found.append(f"forbidden ({source} must not import {target}): {edge}")
        if target in COMPOSITION and source not in COMPOSITION:
            found.append(f"forbidden (nothing imports the CLI): {edge}")
    for cycle in cycles(graph):
        found.extend(
            f"cycle {' <-> '.join(sorted(cycle))}: {edge}"
            for source in sorted(cycle)
            for target in sorted(cycle & set(graph.get(source, {})))
            for edge in graph[source][target]
        )
    return found


def cycles(graph: dict[str, dict[str, list]]) -> list[set[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_packages_follow_the_dependency_rule():
    edges = project_imports()
    breaches = violations(edges)
    assert not breaches, "\n".join(["the dependency rule is broken:", *breaches])


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_the_checker_finds_a_hidden_cycle_a_forbidden_import_and_a_private_name(tmp_path):
    write(
        tmp_path,
        {
            "closedloop/__init__.py": "",
            "closedloop/settings.py": "X = 1\n",
            "closedloop/cli.py": "from training import fit\nfrom features import views\n",
            "features/__init__.py": "",
            "features/views.py": """\
                from closedloop.settings import X

                def build():
                    from ..training import fit  # a relative, function-local import
                    return fit
                """,
            "training/__init__.py": "",
            "training/fit.py": "from features.views import build\nfrom serving import _cache\n",
            "serving/__init__.py": "_cache = {}\n",
            "monitoring/__init__.py": "",
            "actions/__init__.py": "",
        },
    )
    assert sorted(violations(project_imports(tmp_path))) == [
        "cycle features <-> training: features.views:4 function-local imports training.fit",
        "cycle features <-> training: training.fit:1 imports features.views.build",
        "forbidden (features must not import training): "
        "features.views:4 function-local imports training.fit",
        "forbidden (training must not import serving): training.fit:2 imports serving._cache",
        "private name from another package: training.fit:2 imports serving._cache",
    ]


def test_a_stage_importing_the_cli_or_the_core_importing_a_stage_is_reported(tmp_path):
    write(
        tmp_path,
        {
            "closedloop/__init__.py": "",
            "closedloop/cli.py": "import features.jobs\n",
            "closedloop/__main__.py": "from closedloop.cli import main\n",
            "closedloop/home.py": "import typing\nif typing.TYPE_CHECKING:\n    import features\n",
            "features/__init__.py": "",
            "features/jobs.py": "from closedloop import cli\n",
        },
    )
    assert sorted(violations(project_imports(tmp_path, ("closedloop", "features")))) == [
        "cycle closedloop.cli <-> features: closedloop.cli:1 imports features.jobs",
        "cycle closedloop.cli <-> features: features.jobs:1 imports closedloop.cli",
        "forbidden (closedloop must not import features): closedloop.home:3 imports features",
        "forbidden (nothing imports the CLI): features.jobs:1 imports closedloop.cli",
    ]
