"""The packages' imports run one way, so the data flow reads from the layout.

Each package of tracker (``tracker.export``, ``tracker.decide``, ...) and ``collector``
is a node; an import anywhere in one package's modules of another (lazy ones inside
functions too) is an edge. What two packages both need goes in a module beneath them
(``tracker/rows.py`` for the query API and the budget advice), never in either.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(
    ["collector"] + [f"tracker.{p.name}" for p in (ROOT / "tracker").iterdir() if p.is_dir()]
)
PACKAGES = [p for p in PACKAGES if (ROOT / p.replace(".", "/") / "__init__.py").exists()]


def package_of(module: str) -> str | None:
    """The package of ``PACKAGES`` that ``module`` is in, if any."""
    return next((p for p in PACKAGES if module == p or module.startswith(p + ".")), None)


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, and every name it imports from one (a submodule
    maybe)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {package: set() for package in PACKAGES}
    for package in PACKAGES:
        for path in (ROOT / package.replace(".", "/")).rglob("*.py"):
            for name in imported(path):
                other = package_of(name)
                if other is not None and other != package:
                    edges[package].add(other)
    return edges


def test_the_packages_are_found() -> None:
    assert {"collector", "tracker.export", "tracker.decide", "tracker.stream"} <= set(PACKAGES)


def test_no_package_imports_one_that_imports_it_back() -> None:
    try:
        order = list(TopologicalSorter(graph()).static_order())
    except CycleError as exc:
        raise AssertionError(f"packages import each other: {' -> '.join(exc.args[1])}") from None
    assert set(order) == set(PACKAGES)


def test_tools_share_the_harness_and_import_no_tests() -> None:
    """What benchmarks and tests both use is in ``harness/``; a benchmark that imported
    a test module would run pytest's fixtures' module code, and tie tools to tests."""
    reached = {
        f"{path.relative_to(ROOT)} imports {name}"
        for folder in ("bench", "harness")
        for path in (ROOT / folder).rglob("*.py")
        for name in imported(path)
        if name.split(".")[0] == "tests" or (folder == "harness" and name.startswith("bench"))
    }
    assert not reached
