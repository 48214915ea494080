"""The project's modules and what each imports, read from the source (AST), never imported."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("closedloop", "features", "training", "serving", "monitoring", "actions")
PROJECT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Import:
    """One import statement's target: ``importer`` (line ``line``) imports ``target``, and from
    it ``name`` (None for ``import target``); ``local`` when inside a function."""

    importer: str
    line: int
    target: str
    name: str | None
    local: bool

    def __str__(self) -> str:
        what = self.target if self.name is None else f"{self.target}.{self.name}"
        where = "function-local " if self.local else ""
        return f"{self.importer}:{self.line} {where}imports {what}"


def modules(root: Path = PROJECT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Every module of ``packages`` under ``root``, by dotted name."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> list[Import]:
    """What module ``name`` (source at ``path``) imports; ``from a import b`` where ``a.b`` is
    one of the ``known`` modules counts as importing the module ``a.b``."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend(
                    Import(name, child.lineno, alias.name, None, local) for alias in child.names
                )
            elif isinstance(child, ast.ImportFrom):
                base = _absolute(name, is_package, child.module, child.level)
                for alias in child.names:
                    submodule = f"{base}.{alias.name}"
                    if submodule in known:
                        found.append(Import(name, child.lineno, submodule, None, local))
                    else:
                        found.append(Import(name, child.lineno, base, alias.name, local))
            visit(child, inner)

    visit(tree, False)
    return found


def _absolute(importer: str, is_package: bool, module: str | None, level: int) -> str:
    if level == 0:
        return module or ""
    parts = importer.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def project_imports(root: Path = PROJECT, packages: tuple[str, ...] = PACKAGES) -> list[Import]:
    """Every import in every module of ``packages`` under ``root``."""
    found = modules(root, packages)
    known = set(found)
    return [edge for name, path in found.items() for edge in imports(name, path, known)]
