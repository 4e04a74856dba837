"""The messaging package's modules stand alone and import one another without a cycle.

The graph is read from the sources (every `import`, those under `TYPE_CHECKING` too), so a
cycle hidden from the interpreter by a guarded import still fails here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = "shared.messaging"
ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "shared" / "messaging"
MODULES = sorted(
    f"{PACKAGE}.{path.stem}" for path in SOURCES.glob("*.py") if path.stem != "__init__"
)


def _imports(module: str) -> set[str]:
    """The modules of the package that `module` imports, by name (`from shared.messaging
    import dlq` names `shared.messaging.dlq`; importing the package itself names it)."""
    path = SOURCES / f"{module.rsplit('.', 1)[1]}.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == PACKAGE:
                names = [f"{PACKAGE}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(n for n in names if n == PACKAGE or n.startswith(f"{PACKAGE}."))
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycle() -> None:
    graph = {module: _imports(module) for module in MODULES}
    graph[PACKAGE] = _imports_of_package()
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])
    # the facade is the top: nothing below it reaches back to it or to the package
    for module, targets in graph.items():
        if module != PACKAGE:
            assert PACKAGE not in targets, f"{module} imports the package {PACKAGE}"
            assert f"{PACKAGE}.bus" not in targets or module == PACKAGE, module


def _imports_of_package() -> set[str]:
    init = SOURCES / "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(init.read_text(), str(init))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE):
            found.add(node.module)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert _cycle(graph) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


_IMPORT_ALONE = """
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m.split(".")[:2] == ["shared", "messaging"]]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as error:
        failed.append(f"{name}: {type(error).__name__}: {error}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_each_module_imports_alone() -> None:
    """Each module imports with none of the package's other modules loaded beforehand (one
    fresh interpreter; the package's modules are forgotten before each import)."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALONE, *MODULES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
