"""Collapsed ("folded") stacks: one ``root;...;leaf COUNT`` line per stack.

flamegraph.pl, inferno and speedscope read this format. COUNT is the sample
weight (CPU intervals), so widths are proportional to CPU time. Frame names
are ``function (file:line)``; ``;`` and newlines inside names are replaced
because the format has no escaping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._model import Frame, Profile


def frame_label(frame: Frame) -> str:
    if frame.is_native:  # a C/C++ function in its library, as the original marks it
        label = f"[native] {frame.function_name} ({frame.library or frame.filename})"
    else:
        label = f"{frame.function_name} ({frame.filename}:{frame.lineno})"
    return label.replace(";", ":").replace("\n", " ").replace("\r", " ")


class CollapsedWriter:
    name = "collapsed"
    extension = ".collapsed"

    def render(self, profile: Profile, *, merge_threads: bool = True, **_: object) -> bytes:
        """One line per unique stack. With ``merge_threads=False`` each line is
        rooted at a ``thread NAME (TID)`` frame."""
        agg = profile.aggregate()
        if merge_threads:
            agg = agg.merged()
        lines: dict[str, int] = {}
        for s in agg.stacks:
            parts = [frame_label(f) for f in s.frames] or ["<no Python frames>"]
            if s.thread_id is not None:
                name = agg.thread_names.get(s.thread_id) or "thread"
                parts.insert(0, frame_label_thread(name, s.thread_id))
            key = ";".join(parts)
            lines[key] = lines.get(key, 0) + s.weight
        out = [f"{k} {v}" for k, v in sorted(lines.items())]
        return ("\n".join(out) + ("\n" if out else "")).encode("utf-8")


def frame_label_thread(name: str, tid: int) -> str:
    return f"thread {name} ({tid})".replace(";", ":").replace("\n", " ")


def parse(text: str) -> dict[tuple[str, ...], int]:
    """Read collapsed lines back: {stack tuple (root first): count}."""
    result: dict[tuple[str, ...], int] = {}
    # Lines end at "\n" only: str.splitlines() would also break at characters
    # that are legal inside a function or file name (U+2028, \x85, \x0c,
    # \x1c-\x1e...). "\r" never occurs in a name (the writer replaces it).
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        stack, sep, count = line.rpartition(" ")
        if not sep or not count.isdigit():
            raise ValueError(f"line {lineno}: expected 'frame;...;frame COUNT', got {line!r}")
        key = tuple(stack.split(";"))
        result[key] = result.get(key, 0) + int(count)
    return result


WRITER = CollapsedWriter()
