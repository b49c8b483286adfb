"""The import graph of medimp: no cycle outside the registries, and no stage imports one to its
right (docs/ARCHITECTURE.md).

The graph is read from the source (every ``import``, at module level or inside a function, but
not under ``if TYPE_CHECKING``), so a lazy import counts as a dependency too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import medimp

SRC = Path(medimp.__file__).resolve().parent

#: The registries: a package whose ``_registry`` module the entries (each in its own module)
#: import to register themselves, and whose ``__init__`` imports the entries so that they are
#: registered. Those cycles are the mechanism (medimp._registry); no other cycle is allowed.
REGISTRY_PACKAGES = ("medimp.models", "medimp.prompts.backends")

#: The pipeline, left to right (docs/ARCHITECTURE.md): a stage imports only stages to its left.
STAGES = ("study", "simulate", "data", "prompts", "models", "train", "evaluate", "prognosis",
          "report", "demo", "cli")
BASE = ("medimp", "medimp.errors", "medimp._io", "medimp._registry", "medimp._textmodel")


def _modules() -> dict[str, Path]:
    mods = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(n) for node in ast.walk(tree)
                   if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for stmt in node.body for n in ast.walk(stmt)}
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:  # `from pkg import submodule` depends on the submodule
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in mods else base)
    out = set()
    for target in targets:
        while target and target not in mods:
            target = target.rpartition(".")[0]
        # a module's own packages are imported before it, whatever it imports from them
        if target.startswith("medimp") and target != name and not name.startswith(target + "."):
            out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, mods) for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def _in_registry(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in REGISTRY_PACKAGES)


def test_cycles_are_found() -> None:
    """The detector itself: a two-module cycle and a three-module one, not a chain."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(cycles(graph)) == [["a", "b"], ["c", "d", "e"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycle_outside_the_registries() -> None:
    bad = [c for c in cycles(import_graph()) if not all(_in_registry(m) for m in c)]
    assert not bad, ("import cycles (break them with a shared helper module or by moving the "
                     f"function to the module that needs it): {bad}")


def _stage(module: str) -> int | None:
    parts = module.split(".")
    if module in BASE or len(parts) < 2 or parts[1] not in STAGES:
        return None
    return STAGES.index(parts[1])


def test_no_stage_imports_a_stage_to_its_right() -> None:
    wrong = []
    for module, targets in import_graph().items():
        here = _stage(module)
        for target in targets:
            there = _stage(target)
            if here is not None and there is not None and there > here:
                wrong.append(f"{module} -> {target}")
    assert not wrong, wrong
