"""Which of the project's modules a function can run, read from the source (AST): the function,
what it names, what those name, and so on, through imports at module level and in functions."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from import_graph import PACKAGES, PROJECT, modules


@dataclass
class Module:
    """One module's top-level names: what each is bound to."""

    name: str
    tree: ast.Module
    is_package: bool
    definitions: dict[str, ast.AST] = field(default_factory=dict)  # def, class, assignment
    imported: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # name -> target

    @classmethod
    def parse(cls, name: str, path: Path) -> Module:
        module = cls(name, ast.parse(path.read_text(), str(path)), path.name == "__init__.py")
        for node in module.tree.body:
            module.bind(node)
        return module

    def bind(self, node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            self.definitions[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        self.definitions[name.id] = node
        elif isinstance(node, ast.Import | ast.ImportFrom):
            self.imported.update(self.bindings(node))
        elif isinstance(node, ast.If | ast.Try | ast.With):  # e.g. TYPE_CHECKING blocks
            for child in ast.iter_child_nodes(node):
                self.bind(child)

    def bindings(self, node: ast.Import | ast.ImportFrom) -> dict[str, tuple[str, str | None]]:
        if isinstance(node, ast.Import):
            return {
                (alias.asname or alias.name.split(".")[0]): (
                    alias.name if alias.asname else alias.name.split(".")[0],
                    None,
                )
                for alias in node.names
            }
        base = self.absolute(node.module, node.level)
        return {(alias.asname or alias.name): (base, alias.name) for alias in node.names}

    def absolute(self, module: str | None, level: int) -> str:
        if level == 0:
            return module or ""
        parts = self.name.split(".") if self.is_package else self.name.split(".")[:-1]
        parts = parts[: len(parts) - (level - 1)]
        return ".".join([*parts, module] if module else parts)


class Reach:
    """Reachability over the project's source: start from functions, get modules."""

    def __init__(self, root: Path = PROJECT) -> None:
        self.files = modules(root, PACKAGES)

    @cached_property
    def parsed(self) -> dict[str, Module]:
        return {name: Module.parse(name, path) for name, path in self.files.items()}

    def modules_run_by(self, *starts: tuple[str, str]) -> set[str]:
        """The project modules whose code ``(module, top-level name)`` can run, with every
        package whose ``__init__`` importing them runs."""
        seen: set[tuple[str, str | None]] = set()
        todo: list[tuple[str, str | None]] = list(starts)
        while todo:
            symbol = todo.pop()
            if symbol in seen or symbol[0] not in self.parsed:
                continue
            seen.add(symbol)
            todo.extend(self.named_by(*symbol))
        reached = {module for module, _ in seen}
        return {
            ".".join(name.split(".")[:n]) for name in reached for n in range(1, name.count(".") + 2)
        } & set(self.files)

    def named_by(self, module_name: str, name: str | None) -> list[tuple[str, str | None]]:
        """What a symbol names: ``(module, name)`` pairs, name None for a whole module."""
        module = self.parsed[module_name]
        if name is None:  # the module used as a whole: all of it
            return [(module_name, n) for n in [*module.definitions, *module.imported]]
        if name in module.imported:
            return [self.resolve(*module.imported[name])]
        node = module.definitions.get(name)
        if node is None:
            return []
        local: dict[str, tuple[str, str | None]] = {}
        for child in ast.walk(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                local.update(module.bindings(child))
        imported = {**module.imported, **local}
        found: list[tuple[str, str | None]] = []
        consumed: set[int] = set()  # names read as ``module.attribute``: the attribute counts
        for child in ast.walk(node):
            if isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name):
                bound = imported.get(child.value.id)
                owner = self.resolve(*bound) if bound else None
                if owner is not None and owner[1] is None:
                    found.append(self.resolve(owner[0], child.attr))
                    consumed.add(id(child.value))
        for child in ast.walk(node):
            if not isinstance(child, ast.Name) or id(child) in consumed or child.id == name:
                continue
            if child.id in imported:
                found.append(self.resolve(*imported[child.id]))
            elif child.id in module.definitions:
                found.append((module_name, child.id))
        return found

    def resolve(self, target: str, name: str | None) -> tuple[str, str | None]:
        """``from target import name`` (or ``import target``): a symbol, or a whole module."""
        if name is not None and self.is_module(f"{target}.{name}"):
            return (f"{target}.{name}", None)
        return (target, name)

    def is_module(self, name: str) -> bool:
        return name in self.files
