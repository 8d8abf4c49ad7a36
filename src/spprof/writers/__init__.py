"""Output writers: one module per format behind one small interface.

Every writer turns a :class:`spprof.Profile` into bytes. Writers read the
profile's aggregate (unique stacks) or its compact per-sample columns, never
a list of Sample objects, so memory stays proportional to unique stacks.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .._model import Profile

__all__ = ["Writer", "formats", "get_writer", "format_for_path"]


class Writer(Protocol):
    name: str
    extension: str  # the usual file extension, with the dot

    def render(self, profile: Profile, **options: object) -> bytes: ...


# format name -> module in this package; each module defines WRITER.
_MODULES = {
    "speedscope": "speedscope",
    "collapsed": "collapsed",
    "pprof": "pprof",
    "html": "html",
    "text": "text",
}

# file extension -> format, for inferring the format from an output path.
_EXTENSIONS = {
    ".speedscope.json": "speedscope",
    ".json": "speedscope",
    ".collapsed": "collapsed",
    ".folded": "collapsed",
    ".pb.gz": "pprof",
    ".pprof": "pprof",
    ".pb": "pprof",
    ".html": "html",
    ".htm": "html",
    ".txt": "text",
}


def formats() -> list[str]:
    """The format names accepted by ``get_writer`` and ``Profile.save``."""
    return [name for name in _MODULES if _available(name)]


def _available(name: str) -> bool:
    # Only "this writer module does not exist" makes a format unavailable; a
    # writer that fails on an import of its own must fail loudly.
    try:
        importlib.import_module(f".{_MODULES[name]}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{_MODULES[name]}":
            raise
        return False
    return True


def get_writer(name: str) -> Writer:
    """The writer for ``name``; ``ValueError`` naming the choices otherwise."""
    if not isinstance(name, str) or name not in _MODULES or not _available(name):
        raise ValueError(
            f"unknown format {name!r}; choose one of: {', '.join(formats())}"
        )
    module = importlib.import_module(f".{_MODULES[name]}", __name__)
    return module.WRITER


def format_for_path(path: str | os.PathLike[str], default: str | None = None) -> str | None:
    """The format a file name's extension implies, or ``default``."""
    lower = os.fspath(path).lower()
    for ext in sorted(_EXTENSIONS, key=len, reverse=True):
        if lower.endswith(ext) and _available(_EXTENSIONS[ext]):
            return _EXTENSIONS[ext]
    return default
