"""The package's layout: its modules import one another in one direction only."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "workflow_db"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The workflow_db modules ``path`` imports, at load time or inside a function."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = node.module or "" if node.level == 0 else ".".join(filter(None, [base, node.module]))
            modules = {f"{target}.{alias.name}" for alias in node.names} | {target}
        elif isinstance(node, ast.Import):
            modules = {alias.name for alias in node.names}
        else:
            continue
        found |= {module for module in modules if module.startswith("workflow_db")}
    return found


def _known(name: str, modules: set[str]) -> str | None:
    """The module ``name`` is, or the one it is a name of (``workflow_db.queries.GET_RUN``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def test_no_module_of_the_package_imports_back_one_that_imports_it() -> None:
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        targets = {_known(target, set(paths)) for target in _imports(path)} - {None, name}
        if path.name == "__init__.py":  # a package re-exporting its own modules is no cycle of design
            targets = {target for target in targets if target and not target.startswith(f"{name}.")}
        graph[name] = {target for target in targets if target}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(
            nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})) for nxt in graph[start]
        )

    assert sorted(name for name in graph if reaches(name, name, {name})) == []
