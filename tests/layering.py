"""The project's import rules, checked by walking the source with `ast`.

The rules are the architecture of README.md and hil/README.md: the top packages import one
way (`protocols` <- `sim_backend` <- `drivers` <- `hil`), and inside `hil/` the paper's
mathematics (`hil.network`) knows nothing of crossbars, in-situ training and characterisation
do not import each other, sweeps (`hil.sweep`) sit on in-situ training and below the command
line, and only the command line imports `hil.commands`. Every import
counts, also one inside a function: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("protocols", "sim_backend", "drivers", "hil")

#: (importing package, imported package it must not reach). Prefixes match whole dotted parts.
FORBIDDEN: tuple[tuple[str, str], ...] = (
    ("protocols", "sim_backend"),
    ("protocols", "drivers"),
    ("protocols", "hil"),
    ("sim_backend", "drivers"),
    ("sim_backend", "hil"),
    ("drivers", "hil"),
    # hil.network: the paper's mathematics, no notion of a crossbar.
    ("hil.network", "hil.insitu"),
    ("hil.network", "hil.characterize"),
    ("hil.network", "hil.commands"),
    ("hil.network", "hil.cli"),
    ("hil.network", "sim_backend"),
    ("hil.network", "drivers"),
    # hil.insitu and hil.characterize both build on hil.network, never on each other.
    ("hil.insitu", "hil.characterize"),
    ("hil.insitu", "hil.commands"),
    ("hil.insitu", "hil.cli"),
    ("hil.characterize", "hil.insitu"),
    ("hil.characterize", "hil.commands"),
    ("hil.characterize", "hil.cli"),
    # hil.sweep runs cells of hil.insitu; nothing below it imports it, and it knows no
    # command line and no characterisation.
    ("hil.network", "hil.sweep"),
    ("hil.insitu", "hil.sweep"),
    ("hil.characterize", "hil.sweep"),
    ("hil.sweep", "hil.commands"),
    ("hil.sweep", "hil.cli"),
    ("hil.sweep", "hil.characterize"),
    # the command line sits on top: nothing below it imports it.
    ("hil.commands", "hil.cli"),
)


@dataclass(frozen=True)
class Arrow:
    """One import: `source` (a module) imports `target` (a module or package)."""

    source: str
    target: str
    path: Path
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.source} imports {self.target}"


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(root: Path, module: str) -> bool:
    return (root / Path(*module.split(".")) / "__init__.py").is_file()


def _exists(root: Path, module: str) -> bool:
    base = root / Path(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _targets(root: Path, source: str, node: ast.AST) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = source.split(".")
            # a package's own module name is its package; a module's is one level deeper
            keep = len(base) - node.level + (1 if _is_package(root, source) else 0)
            prefix = ".".join(base[:keep])
            module = f"{prefix}.{node.module}" if node.module else prefix
        else:
            module = node.module or ""
        # `from pkg import sub` imports the submodule; `from pkg import name` the package
        subs = [f"{module}.{a.name}" for a in node.names if _exists(root, f"{module}.{a.name}")]
        if len(subs) < len(node.names):
            yield module
        yield from subs


def arrows(root: Path, packages: Iterable[str] = PACKAGES) -> list[Arrow]:
    """Every import between modules of `packages` under `root`."""
    out: list[Arrow] = []
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            source = module_name(root, path)
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Import | ast.ImportFrom):
                    continue
                for target in _targets(root, source, node):
                    if target.split(".")[0] in PACKAGES and target != source:
                        out.append(Arrow(source, target, path.relative_to(root), node.lineno))
    return out


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(found: Iterable[Arrow]) -> list[str]:
    """Arrows against `FORBIDDEN`, each with the rule it breaks."""
    bad: list[str] = []
    for arrow in found:
        for src, dst in FORBIDDEN:
            if _within(arrow.source, src) and _within(arrow.target, dst):
                bad.append(f"{arrow} (rule: {src} must not import {dst})")
    return bad


def cycles(found: Iterable[Arrow]) -> list[list[str]]:
    """Import circles between modules (strongly connected components of more than one)."""
    graph: dict[str, set[str]] = {}
    for arrow in found:
        graph.setdefault(arrow.source, set()).add(arrow.target)
        graph.setdefault(arrow.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out
