"""The Python package's layering (ARCHITECTURE.md), enforced: a module
imports only modules of its own layer or below, never one above, and the
package has no import cycle. Imports a type checker alone sees (under
``if TYPE_CHECKING:``) do not count; imports inside functions do.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "src" / "spprof"

# Lowest first. A module not listed here fails the test: a new module gets
# a layer when it is added.
LAYERS: list[tuple[str, ...]] = [
    ("spprof._errors", "spprof._native", "spprof._files", "spprof._record", "spprof._times",
     "spprof._groups", "spprof._coverage", "spprof._states"),
    ("spprof.writers",),  # the registry and the writers: formats of a Profile
    ("spprof._naming", "spprof._derived", "spprof._model", "spprof._aggregate"),  # the data model
    ("spprof._limits", "spprof._state"),  # argument limits; process-wide state
    ("spprof._results", "spprof._signals", "spprof._threads", "spprof._native_frames"),
    ("spprof._hooks",),  # fork, exec and exit hooks
    ("spprof._session",),  # every session transition
    ("spprof._api",),  # the public functions
    ("spprof._profiler",),  # Profiler, @profile
    ("spprof", "spprof.cli", "spprof.__main__"),  # the package's face, the command line
]


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for level, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best_len:
                best, best_len = level, len(name)
    assert best is not None, f"{module} has no layer in tests/test_layering.py (and ARCHITECTURE.md)"
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
    )


def imports_of(path: Path) -> set[str]:
    """The spprof modules `path` imports at run time."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_only(node):
            for child in node.orelse:  # the else branch runs
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "spprof")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "spprof":
                return
            for alias in node.names:
                # `from . import x` imports the module x; `from .m import f` imports m
                sub = f"{target}.{alias.name}"
                found.add(sub if _is_module(sub) else target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    found.discard(name)
    return found


def _is_module(dotted: str) -> bool:
    rel = Path(*dotted.split(".")[1:])
    base = PACKAGE / rel
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists() or dotted == "spprof._native"


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_lower_layers_never_import_higher_ones():
    wrong = []
    for module, imported in graph().items():
        for target in sorted(imported):
            if layer_of(target) > layer_of(module):
                wrong.append(f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    g = graph()
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            walk(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_check_sees_imports():
    """The checker itself: it finds relative, absolute and function-level
    imports, and ignores TYPE_CHECKING-only ones."""
    g = graph()
    assert "spprof._session" in g["spprof._api"]
    assert "spprof._results" in g["spprof._session"]  # imported inside a function
    assert "spprof._model" not in g["spprof.writers.text"]  # TYPE_CHECKING only
    assert "spprof._state" in g["spprof._signals"]


def test_no_source_file_over_500_lines():
    """One concept per file: no source file in src/ grows past 500 lines
    (session.cpp, the lifecycle, stays under 400)."""
    sizes = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines())
        for p in sorted((ROOT / "src").rglob("*"))
        if p.suffix in (".py", ".cpp", ".h", ".js", ".css", ".html")
    }
    assert len(sizes) > 40
    assert {p: n for p, n in sizes.items() if n > 500} == {}
    assert sizes["src/native/session.cpp"] < 400
