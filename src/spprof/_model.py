"""The profile model: what a profiling session produced, independent of how.

Everything downstream of capture (the writers, the CLI, the tests) works on
these classes only, so a profile can be built by hand, by the native sampler
or by a loader, and every output format sees the same data.

Memory: a profile keeps each unique stack once (``stacks``) and one small
record per sample (timestamp, thread, stack index, weight) in typed arrays.
For a profile made by the sampler, ``Profile.samples`` materialises
:class:`Sample` objects on first use only (a profile built by hand from a
list of samples keeps that list).
"""

from __future__ import annotations

import math
import os
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

__all__ = [
    "AggregatedProfile",
    "AggregatedStack",
    "Frame",
    "FunctionStats",
    "Profile",
    "Sample",
]


@dataclass(frozen=True, slots=True)
class Frame:
    """One level of a call stack."""

    function_name: str
    filename: str
    lineno: int
    is_native: bool = False

    def label(self) -> str:
        """``function (file:line)``, as shown in reports."""
        return f"{self.function_name} ({self.filename}:{self.lineno})"


Stack = tuple[Frame, ...]


# -- frame names ------------------------------------------------------------------
#
# Module-level code has the code name ``<module>`` in every module, so reports
# could not tell one module from another, and some viewers (pprof) drop the
# angle-bracketed part, leaving nothing. The sampler's profiles name such a
# frame after its module instead: ``<module> pkg.mod``. This is the one place
# that naming is decided; every writer shows ``Frame.function_name`` as is.

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
            fr = Frame(name, fr.filename, fr.lineno, fr.is_native)
        out.append(fr)
    return out


@dataclass(frozen=True, slots=True)
class Sample:
    """One observation of one thread.

    ``frames`` is root first: ``frames[0]`` is the outermost call and
    ``frames[-1]`` the function that was running (the leaf). ``weight`` is the
    number of sampling intervals of CPU time this sample stands for
    (``1 + timer overruns``).
    """

    timestamp_ns: int
    thread_id: int
    thread_name: str | None
    frames: Stack
    weight: int = 1

    @property
    def leaf(self) -> Frame | None:
        return self.frames[-1] if self.frames else None


@dataclass(frozen=True, slots=True)
class AggregatedStack:
    """A unique (thread, stack) pair with how often it was seen.

    ``thread_id`` is ``None`` in a thread-merged aggregate.
    """

    thread_id: int | None
    frames: Stack
    count: int
    weight: int


@dataclass(frozen=True, slots=True)
class FunctionStats:
    """Per-function totals: self = the function was the leaf; total = anywhere
    on the stack (counted once per sample even under recursion). ``lineno`` is
    the line that was seen most often while the function was the leaf (or on
    the stack, for functions never seen as a leaf)."""

    function_name: str
    filename: str
    lineno: int
    self_count: int
    total_count: int
    self_weight: int
    total_weight: int


@dataclass
class AggregatedProfile:
    """Samples folded into unique stacks: memory grows with unique stacks,
    not with session length."""

    interval_ns: int
    stacks: list[AggregatedStack]
    thread_names: dict[int, str | None] = field(default_factory=dict)

    @property
    def total_samples(self) -> int:
        return sum(s.count for s in self.stacks)

    @property
    def total_weight(self) -> int:
        return sum(s.weight for s in self.stacks)

    @property
    def total_cpu_ns(self) -> int:
        return self.total_weight * self.interval_ns

    @property
    def unique_stack_count(self) -> int:
        return len({s.frames for s in self.stacks})

    @property
    def compression_ratio(self) -> float:
        """Samples per unique stack (1.0 for an empty profile)."""
        unique = self.unique_stack_count
        return self.total_samples / unique if unique else 1.0

    @property
    def thread_ids(self) -> list[int]:
        return sorted({s.thread_id for s in self.stacks if s.thread_id is not None})

    def for_thread(self, thread_id: int) -> AggregatedProfile:
        return AggregatedProfile(
            self.interval_ns,
            [s for s in self.stacks if s.thread_id == thread_id],
            {thread_id: self.thread_names.get(thread_id)},
        )

    def merged(self) -> AggregatedProfile:
        """The same data with all threads folded together (thread_id None)."""
        folded: dict[Stack, list[int]] = {}
        for s in self.stacks:
            acc = folded.setdefault(s.frames, [0, 0])
            acc[0] += s.count
            acc[1] += s.weight
        stacks = [AggregatedStack(None, f, c, w) for f, (c, w) in folded.items()]
        return AggregatedProfile(self.interval_ns, stacks, dict(self.thread_names))

    def function_stats(self) -> list[FunctionStats]:
        """Per-function self/total, sorted by self weight, then total weight."""
        acc: dict[tuple[str, str], list[int]] = {}
        leaf_lines: dict[tuple[str, str], dict[int, int]] = {}
        any_lines: dict[tuple[str, str], dict[int, int]] = {}
        for s in self.stacks:
            seen: set[tuple[str, str]] = set()
            for fr in s.frames:
                key = (fr.function_name, fr.filename)
                lines = any_lines.setdefault(key, {})
                lines[fr.lineno] = lines.get(fr.lineno, 0) + s.weight
                if key in seen:
                    continue
                seen.add(key)
                a = acc.setdefault(key, [0, 0, 0, 0])
                a[1] += s.count
                a[3] += s.weight
            if s.frames:
                leaf = s.frames[-1]
                key = (leaf.function_name, leaf.filename)
                a = acc[key]
                a[0] += s.count
                a[2] += s.weight
                lines = leaf_lines.setdefault(key, {})
                lines[leaf.lineno] = lines.get(leaf.lineno, 0) + s.weight
        out = []
        for key, (sc, tc, sw, tw) in acc.items():
            lines = leaf_lines.get(key) or any_lines[key]
            line = max(lines.items(), key=lambda kv: (kv[1], -kv[0]))[0]
            out.append(FunctionStats(key[0], key[1], line, sc, tc, sw, tw))
        out.sort(key=lambda f: (-f.self_weight, -f.total_weight, f.function_name))
        return out


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Profile:
    """The result of a profiling session.

    Build one by hand with ``Profile(start_time, end_time, interval_ms,
    samples, dropped_count, python_version, platform)``; the sampler builds
    one with :meth:`from_columns`. ``interval_ms`` is the sampling interval:
    a sample of weight ``w`` stands for ``w * interval_ms`` of CPU time.
    """

    __slots__ = (
        "start_time",
        "end_time",
        "interval_ms",
        "dropped_count",
        "python_version",
        "platform",
        "stats",
        "_stacks",
        "_ts",
        "_tid",
        "_stack_idx",
        "_weight",
        "_thread_names",
        "_samples",
        "_aggregate",
        "_total_weight",
    )

    def __init__(
        self,
        start_time: datetime,
        end_time: datetime,
        interval_ms: float,
        samples: Iterable[Sample],
        dropped_count: int = 0,
        python_version: str = "",
        platform: str = "",
    ) -> None:
        stacks: list[Stack] = []
        index: dict[Stack, int] = {}
        ts, tid, sidx, weight = array("q"), array("q"), array("q"), array("q")
        names: dict[int, str | None] = {}
        kept: list[Sample] = []
        for s in samples:
            frames = tuple(s.frames)
            i = index.get(frames)
            if i is None:
                i = index[frames] = len(stacks)
                stacks.append(frames)
            ts.append(s.timestamp_ns)
            tid.append(s.thread_id)
            sidx.append(i)
            weight.append(s.weight)
            if s.thread_name is not None or s.thread_id not in names:
                names[s.thread_id] = s.thread_name
            kept.append(s)
        self._init(start_time, end_time, interval_ms, dropped_count, python_version, platform)
        self._stacks, self._ts, self._tid, self._stack_idx, self._weight = (
            stacks,
            ts,
            tid,
            sidx,
            weight,
        )
        self._thread_names = names
        self._samples = kept

    def _init(
        self,
        start_time: datetime,
        end_time: datetime,
        interval_ms: float,
        dropped_count: int,
        python_version: str,
        platform: str,
    ) -> None:
        if isinstance(interval_ms, bool) or not isinstance(interval_ms, (int, float)):
            raise ValueError(f"interval_ms must be a positive number, got {interval_ms!r}")
        if not math.isfinite(interval_ms) or interval_ms <= 0:
            raise ValueError(f"interval_ms must be a positive number, got {interval_ms!r}")
        self.start_time = start_time
        self.end_time = end_time
        self.interval_ms = interval_ms
        self.dropped_count = int(dropped_count)
        self.python_version = python_version
        self.platform = platform
        self.stats: object | None = None
        self._aggregate: AggregatedProfile | None = None
        self._total_weight: int | None = None

    @classmethod
    def from_columns(
        cls,
        *,
        start_time: datetime,
        end_time: datetime,
        interval_ms: float,
        stacks: Sequence[Stack],
        timestamps_ns: array,
        thread_ids: array,
        stack_indices: array,
        weights: array,
        thread_names: dict[int, str | None],
        dropped_count: int = 0,
        python_version: str = "",
        platform: str = "",
    ) -> Profile:
        """Build from the compact form: one entry per sample in each array,
        ``stack_indices`` pointing into ``stacks`` (root-first tuples)."""
        n = len(timestamps_ns)
        if not (len(thread_ids) == len(stack_indices) == len(weights) == n):
            raise ValueError("sample columns must all have the same length")
        self = cls.__new__(cls)
        self._init(start_time, end_time, interval_ms, dropped_count, python_version, platform)
        self._stacks = list(stacks)
        self._ts, self._tid, self._stack_idx, self._weight = (
            timestamps_ns,
            thread_ids,
            stack_indices,
            weights,
        )
        self._thread_names = dict(thread_names)
        self._samples = None
        return self

    # -- basic facts -------------------------------------------------------

    @property
    def samples(self) -> list[Sample]:
        """Every sample in capture order (materialised on first access)."""
        if self._samples is None:
            names = self._thread_names
            stacks = self._stacks
            self._samples = [
                Sample(t, th, names.get(th), stacks[i], w)
                for t, th, i, w in zip(self._ts, self._tid, self._stack_idx, self._weight)
            ]
        return self._samples

    @property
    def sample_count(self) -> int:
        return len(self._ts)

    @property
    def total_weight(self) -> int:
        if self._total_weight is None:
            self._total_weight = sum(self._weight)
        return self._total_weight

    @property
    def interval_ns(self) -> int:
        return int(round(self.interval_ms * 1_000_000))

    @property
    def total_cpu_ms(self) -> float:
        """CPU time the samples stand for: sum of weights x interval."""
        return self.total_weight * self.interval_ms

    @property
    def total_duration_ms(self) -> float:
        return max(0.0, (self.end_time - self.start_time).total_seconds() * 1000.0)

    @property
    def effective_rate_hz(self) -> float:
        """Samples actually taken per second of sampled CPU time.

        Equals ``1000 / interval_ms`` when every timer expiry produced a
        sample; lower when the kernel folded expiries into overruns (CPU
        timers fire at most once per scheduler tick)."""
        cpu_s = self.total_cpu_ms / 1000.0
        return self.sample_count / cpu_s if cpu_s > 0 else 0.0

    @property
    def samples_per_second(self) -> float:
        """Samples per second of wall-clock session time, all threads."""
        d = self.total_duration_ms / 1000.0
        return self.sample_count / d if d > 0 else 0.0

    @property
    def thread_names(self) -> dict[int, str | None]:
        return dict(self._thread_names)

    @property
    def thread_ids(self) -> list[int]:
        return sorted(set(self._tid))

    @property
    def stacks(self) -> list[Stack]:
        """The unique stacks, root first (indexed by ``iter_compact``)."""
        return self._stacks

    def iter_compact(self) -> Iterator[tuple[int, int, int, int]]:
        """``(timestamp_ns, thread_id, stack_index, weight)`` per sample, in
        capture order, without building Sample objects."""
        return zip(self._ts, self._tid, self._stack_idx, self._weight)

    def aggregate(self) -> AggregatedProfile:
        """Unique (thread, stack) pairs with sample counts and weights."""
        if self._aggregate is None:
            acc: dict[tuple[int, int], list[int]] = {}
            for th, i, w in zip(self._tid, self._stack_idx, self._weight):
                a = acc.get((th, i))
                if a is None:
                    acc[(th, i)] = [1, w]
                else:
                    a[0] += 1
                    a[1] += w
            stacks = [
                AggregatedStack(th, self._stacks[i], c, w) for (th, i), (c, w) in acc.items()
            ]
            self._aggregate = AggregatedProfile(
                self.interval_ns, stacks, dict(self._thread_names)
            )
        return self._aggregate

    # -- outputs -----------------------------------------------------------

    def render(self, format: str = "speedscope", **options: object) -> bytes:
        """The profile in ``format`` as bytes (see :func:`spprof.writers.formats`)."""
        from .writers import get_writer

        return get_writer(format).render(self, **options)

    def to_speedscope(self) -> dict:
        """The speedscope document as a dict (one sampled profile per thread)."""
        from .writers.speedscope import build_document

        return build_document(self)

    def to_collapsed(self, *, merge_threads: bool = True) -> str:
        """``root;...;leaf weight`` lines as flamegraph.pl reads them."""
        return self.render("collapsed", merge_threads=merge_threads).decode("utf-8")

    def save(self, path: str | os.PathLike[str], format: str | None = None, **options: object) -> str:
        """Write the profile to ``path`` and return the path written.

        ``format`` is one of :func:`spprof.writers.formats`; when omitted it is
        taken from the file extension (speedscope when that says nothing).
        The profile goes where ``open(path, "wb")`` would put it: a regular
        file is written to a temporary name and renamed into place, so a
        failed save leaves neither a partial file nor a changed profile; a
        symbolic link's target is written; a device or FIFO is written
        through, never replaced. Failures raise ``OSError`` naming ``path``.
        """
        from ._files import write_output
        from .writers import format_for_path, get_writer

        target = os.fspath(path)
        fmt = format if format is not None else format_for_path(target, default="speedscope")
        writer = get_writer(fmt)  # ValueError for an unknown format, before any I/O
        data = writer.render(self, **options)
        write_output(target, data)
        return target

    @classmethod
    def joined(cls, parts: Sequence[Profile]) -> Profile:
        """One profile of consecutive parts (e.g. a session that was stopped
        and restarted): samples in order, times from the first part's start
        to the last one's end, dropped counts summed.

        Parts with different intervals are joined at the largest interval
        that divides them all (their greatest common divisor, in
        nanoseconds), each sample's weight scaled to that interval, so CPU
        totals are exact."""
        if not parts:
            raise ValueError("joined() needs at least one profile")
        if len(parts) == 1:
            return parts[0]
        unit = 0
        for p in parts:
            unit = math.gcd(unit, p.interval_ns)
        if unit <= 0:
            raise ValueError("profiles to join need intervals of at least 1 ns")
        stacks: list[Stack] = []
        index: dict[Stack, int] = {}
        ts, tid, sidx, weight = array("q"), array("q"), array("q"), array("q")
        names: dict[int, str | None] = {}
        for p in parts:
            scale = p.interval_ns // unit
            remap = []
            for st in p._stacks:
                i = index.get(st)
                if i is None:
                    i = index[st] = len(stacks)
                    stacks.append(st)
                remap.append(i)
            ts.extend(p._ts)
            tid.extend(p._tid)
            sidx.extend(remap[i] for i in p._stack_idx)
            if scale == 1:
                weight.extend(p._weight)
            else:
                weight.extend(w * scale for w in p._weight)
            for t, name in p._thread_names.items():
                if name is not None or t not in names:
                    names[t] = name
        interval_ms: float = unit / 1_000_000
        if interval_ms.is_integer():
            interval_ms = int(interval_ms)
        return cls.from_columns(
            start_time=min(p.start_time for p in parts),
            end_time=max(p.end_time for p in parts),
            interval_ms=interval_ms,
            stacks=stacks,
            timestamps_ns=ts,
            thread_ids=tid,
            stack_indices=sidx,
            weights=weight,
            thread_names=names,
            dropped_count=sum(p.dropped_count for p in parts),
            python_version=parts[0].python_version,
            platform=parts[0].platform,
        )

    def __repr__(self) -> str:
        return (
            f"<Profile {self.sample_count} samples, {len(self.thread_ids)} threads, "
            f"{self.total_duration_ms:.0f} ms, interval {self.interval_ms} ms>"
        )
