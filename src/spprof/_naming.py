"""Names of module-level code: ``<module> pkg.mod`` instead of ``<module>``.

Module-level code has the code name ``<module>`` in every module, so reports
could not tell one module from another, and some viewers (pprof) drop the
angle-bracketed part, leaving nothing. The sampler's profiles name such a
frame after its module instead. This is the one place that naming is
decided; every writer shows ``Frame.function_name`` as is.
"""

from __future__ import annotations

import os

from ._model import Frame

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = ["MODULE_CODE", "module_code_name", "module_name", "name_module_code"]

MODULE_CODE = "<module>"


def module_name(filename: str, search_path: Iterable[str] | None = None) -> str:
    """The dotted name the module in ``filename`` is imported as: its path
    relative to the closest ``search_path`` entry (``sys.path`` by default),
    e.g. ``pkg.mod`` for ``<entry>/pkg/mod.py`` and ``pkg`` for
    ``<entry>/pkg/__init__.py``; else the file's base name without extension.
    Pseudo-files keep their name (``<string>``), and ``<frozen x.y>`` is ``x.y``."""
    if not filename:
        return "?"
    if filename.startswith("<frozen ") and filename.endswith(">"):
        return filename[len("<frozen ") : -1]
    if filename.startswith("<") and filename.endswith(">"):
        return filename
    if search_path is None:
        import sys

        search_path = sys.path
    stem = os.path.splitext(os.path.abspath(filename))[0]
    real_stem = os.path.splitext(os.path.realpath(filename))[0]
    best: str | None = None
    for entry in search_path:
        if not isinstance(entry, str):
            continue
        for base in {os.path.abspath(entry or os.curdir), os.path.realpath(entry or os.curdir)}:
            for candidate in (stem, real_stem):
                dotted = _dotted(candidate, base)
                # The most specific entry gives the shortest name
                # (site-packages inside lib/pythonX.Y, a project inside a repo).
                if dotted and (best is None or len(dotted) < len(best)):
                    best = dotted
    if best is not None:
        return best
    base_name = os.path.basename(stem)
    if base_name == "__init__":
        base_name = os.path.basename(os.path.dirname(stem)) or base_name
    return base_name or filename


def _dotted(stem: str, directory: str) -> str | None:
    prefix = directory.rstrip(os.sep) + os.sep
    if not stem.startswith(prefix):
        return None
    parts = stem[len(prefix) :].split(os.sep)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    if not all(p.isidentifier() for p in parts):
        return None
    return ".".join(parts)


def module_code_name(filename: str, search_path: Iterable[str] | None = None) -> str:
    """The function name of module-level code in ``filename``: ``<module> pkg.mod``."""
    return f"{MODULE_CODE} {module_name(filename, search_path)}"


def name_module_code(
    frames: Sequence[Frame], search_path: Iterable[str] | None = None
) -> list[Frame]:
    """``frames`` with every ``<module>`` frame renamed after its module
    (see :func:`module_name`); other frames are returned unchanged."""
    if search_path is None:
        import sys

        search_path = list(sys.path)
    else:
        search_path = list(search_path)
    names: dict[str, str] = {}
    out = []
    for fr in frames:
        if fr.function_name == MODULE_CODE:
            name = names.get(fr.filename)
            if name is None:
                name = names[fr.filename] = module_code_name(fr.filename, search_path)
            fr = Frame(name, fr.filename, fr.lineno, fr.is_native, fr.library)
        out.append(fr)
    return out
