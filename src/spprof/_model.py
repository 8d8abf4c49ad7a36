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

from ._derived import StackTable, derived, join_profiles, on_cpu_only
from ._record import frozen_record
from ._states import GIL_CODES, GIL_VALUES, OFF_CPU, STATE_CODES, STATE_FRAMES, STATES, check_profile_mode
from ._times import WallTime

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from datetime import datetime

    from ._aggregate import AggregatedProfile

__all__ = ["Frame", "Profile", "Sample", "Stack"]

_set = object.__setattr__  # the records are frozen: their __init__ sets slots directly


@frozen_record
class Frame:
    """One level of a call stack."""

    __slots__ = ("function_name", "filename", "lineno", "is_native", "library")
    function_name: str
    filename: str
    lineno: int
    is_native: bool
    library: str

    def __init__(self, function_name: str, filename: str, lineno: int, is_native: bool = False,
                 library: str = "") -> None:
        _set(self, "function_name", function_name)
        _set(self, "filename", filename)
        _set(self, "lineno", lineno)
        _set(self, "is_native", is_native)
        # A native frame's loaded object (shared library or program); its
        # filename is the source file where the object has line tables,
        # else the object too (and lineno 0).
        _set(self, "library", library)

    def label(self) -> str:
        """``function (file:line)``, as shown in reports."""
        return f"{self.function_name} ({self.filename}:{self.lineno})"


Stack = tuple[Frame, ...]


@frozen_record
class Sample:
    """One observation of one thread.

    ``frames`` is root first: ``frames[0]`` is the outermost call and
    ``frames[-1]`` the function that was running (the leaf). ``weight`` is the
    number of sampling intervals this sample stands for: of CPU time, or in
    wall mode of real time. ``state`` is what the thread was doing: ``"cpu"``
    (running), ``"gc"`` (running a garbage collection), and in wall mode
    ``"idle"`` (off CPU: blocked, sleeping, or waiting for a processor) or
    ``"gil"`` (waiting for the GIL). ``holds_gil`` says whether the thread
    held the GIL when it was sampled (False for C code that released it, such
    as hashing or compression of large buffers, or I/O), None when not known.
    """

    __slots__ = ("timestamp_ns", "thread_id", "thread_name", "frames", "weight", "state", "holds_gil")
    timestamp_ns: int
    thread_id: int
    thread_name: str | None
    frames: Stack
    weight: int
    state: str
    holds_gil: bool | None

    def __init__(
        self,
        timestamp_ns: int,
        thread_id: int,
        thread_name: str | None,
        frames: Stack,
        weight: int = 1,
        state: str = "cpu",
        holds_gil: bool | None = None,
    ) -> None:
        if state not in STATE_CODES:
            raise ValueError(f"state must be one of {', '.join(map(repr, STATES))}, got {state!r}")
        if holds_gil is not None and not isinstance(holds_gil, bool):
            raise ValueError(f"holds_gil must be True, False or None, got {holds_gil!r}")
        _set(self, "timestamp_ns", timestamp_ns)
        _set(self, "thread_id", thread_id)
        _set(self, "thread_name", thread_name)
        _set(self, "frames", frames)
        _set(self, "weight", weight)
        _set(self, "state", state)
        _set(self, "holds_gil", holds_gil)

    @property
    def on_cpu(self) -> bool:
        """Whether the thread was running (state ``"cpu"`` or ``"gc"``)."""
        return self.state in ("cpu", "gc")

    @property
    def leaf(self) -> Frame | None:
        return self.frames[-1] if self.frames else None


class Profile:
    """The result of a profiling session.

    Build one by hand with ``Profile(start_time, end_time, interval_ms,
    samples, dropped_count, python_version, platform)``; the sampler builds
    one with :meth:`from_columns`. ``interval_ms`` is the sampling interval:
    a sample of weight ``w`` stands for ``w * interval_ms`` of CPU time, or
    in wall mode (``mode == "wall"``) of real time, as its ``state`` says.
    """

    __slots__ = (
        "_start_time",
        "_end_time",
        "interval_ms",
        "dropped_count",
        "python_version",
        "platform",
        "stats",
        "threads_without_samples",
        "children_cpu_ms",
        "_stacks",
        "_ts",
        "_tid",
        "_stack_idx",
        "_weight",
        "_state",
        "_gil",
        "mode",
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
        *,
        mode: str | None = None,
    ) -> None:
        table = StackTable()
        ts, tid, sidx, weight = array("q"), array("q"), array("q"), array("q")
        state, gil = array("b"), array("b")
        names: dict[int, str | None] = {}
        kept: list[Sample] = []
        for s in samples:
            ts.append(s.timestamp_ns)
            tid.append(s.thread_id)
            sidx.append(table.add(tuple(s.frames)))
            weight.append(s.weight)
            state.append(STATE_CODES.get(getattr(s, "state", "cpu"), 0))
            gil.append(GIL_CODES.get(getattr(s, "holds_gil", None), 0))
            if s.thread_name is not None or s.thread_id not in names:
                names[s.thread_id] = s.thread_name
            kept.append(s)
        self._init(start_time, end_time, interval_ms, dropped_count, python_version, platform)
        self._stacks, self._ts, self._tid, self._stack_idx, self._weight = (
            table.stacks,
            ts,
            tid,
            sidx,
            weight,
        )
        self._state = state
        self._gil = gil
        self.mode = check_profile_mode(mode, state)
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
        self._start_time = start_time
        self._end_time = end_time
        self.interval_ms = interval_ms
        self.dropped_count = int(dropped_count)
        self.python_version = python_version
        self.platform = platform
        self.stats: object | None = None
        # What the samples do not cover (set by the sampler; see _coverage):
        # (tid, kernel name, CPU ms) of threads that used CPU but ran no
        # Python, and the CPU of child processes that ended meanwhile.
        self.threads_without_samples: tuple[tuple[int, str, float], ...] = ()
        self.children_cpu_ms: float | None = None
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
        states: array | None = None,
        mode: str | None = None,
        gil: array | None = None,
    ) -> Profile:
        """Build from the compact form: one entry per sample in each array,
        ``stack_indices`` pointing into ``stacks`` (root-first tuples);
        ``states`` holds each sample's state as its index in ``STATES``
        (all ``"cpu"`` when omitted), ``gil`` whether the thread held the
        GIL as its index in ``GIL_VALUES`` (all unknown when omitted)."""
        n = len(timestamps_ns)
        if states is None:
            states = array("b", bytes(n))
        elif not isinstance(states, array) or states.typecode != "b":
            states = array("b", states)
        if gil is None:
            gil = array("b", bytes(n))
        elif not isinstance(gil, array) or gil.typecode != "b":
            gil = array("b", gil)
        if not (len(thread_ids) == len(stack_indices) == len(weights) == len(states) == len(gil) == n):
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
        self._state = states
        self._gil = gil
        self.mode = check_profile_mode(mode, states)
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
                Sample(t, th, names.get(th), stacks[i], w, STATES[s], GIL_VALUES[g])
                for t, th, i, w, s, g in zip(
                    self._ts, self._tid, self._stack_idx, self._weight, self._state, self._gil
                )
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
    def process_cpu_ms(self) -> float | None:
        """CPU time of the whole process during the session, from the kernel
        (None for a profile built by hand): compare with ``total_cpu_ms``."""
        value = getattr(self.stats, "process_cpu_ms", None)
        return float(value) if value is not None else None

    @property
    def total_cpu_ms(self) -> float:
        """CPU time the samples stand for: weights x interval of the samples
        taken on CPU (all of them in CPU mode)."""
        if self.mode == "cpu":
            return self.total_weight * self.interval_ms
        return self.state_totals_ms()["cpu"] + self.state_totals_ms()["gc"]

    @property
    def total_time_ms(self) -> float:
        """Time the samples stand for: CPU time in CPU mode, real time (on
        and off CPU, all threads) in wall mode."""
        return self.total_weight * self.interval_ms

    def state_totals_ms(self) -> dict[str, float]:
        """Time per state (``STATES``), all threads: weights x interval."""
        totals = [0] * len(STATES)
        for s, w in zip(self._state, self._weight):
            totals[s] += w
        return {name: totals[i] * self.interval_ms for i, name in enumerate(STATES)}

    def gil_totals_ms(self) -> dict[str, float]:
        """CPU time of the samples taken on CPU by whether the thread held
        the GIL: ``{"held": ..., "released": ..., "unknown": ...}``. Time
        ``released`` is C code running beside the interpreter (what more
        threads can speed up); ``unknown`` is from profiles built by hand and
        threads of other interpreters."""
        totals = [0, 0, 0]
        for s, g, w in zip(self._state, self._gil, self._weight):
            if s not in OFF_CPU:
                totals[g] += w
        return {
            "held": totals[1] * self.interval_ms,
            "released": totals[2] * self.interval_ms,
            "unknown": totals[0] * self.interval_ms,
        }

    def without_idle(self) -> Profile:
        """The samples taken on CPU only (a wall-mode profile without its
        idle and GIL-wait time: what CPU mode would have shown)."""
        return on_cpu_only(self)

    @property
    def total_duration_ms(self) -> float:
        return max(0.0, (self.end_time - self.start_time).total_seconds() * 1000.0)

    @property
    def effective_rate_hz(self) -> float:
        """Samples actually taken per second of sampled time (CPU time; in
        wall mode real time, on and off CPU).

        Equals ``1000 / interval_ms`` when every timer expiry produced a
        sample; lower when the kernel folded expiries into overruns (CPU
        timers fire at most once per scheduler tick)."""
        sampled_s = self.total_time_ms / 1000.0
        return self.sample_count / sampled_s if sampled_s > 0 else 0.0

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

    def aggregate(self, *, by_gil: bool = False) -> AggregatedProfile:
        """Unique (thread, stack) pairs with sample counts and weights; with
        ``by_gil``, unique (thread, stack, holds_gil) triples, each
        AggregatedStack saying whether the thread held the GIL."""
        from ._aggregate import aggregate_columns

        if by_gil or self._aggregate is None:
            state_frames = {STATE_CODES[name]: (Frame(label, "", 0),) for name, label in STATE_FRAMES.items()}
            folded = aggregate_columns(self, state_frames, by_gil=by_gil)
            if by_gil:
                return folded
            self._aggregate = folded
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
        return join_profiles(cls, parts)

    def _with_stacks(self, change: Callable[[Stack], Stack]) -> Profile:
        """The same samples with every stack replaced by ``change(stack)``
        (stacks that become equal are merged; ``stats`` is kept), or this
        profile itself when nothing changed."""
        table = StackTable()
        remap = array("q")
        changed = False
        for st in self._stacks:
            new = change(st)
            changed = changed or new != st
            remap.append(table.add(new))
        if not changed:
            return self
        return derived(self, stacks=table.stacks, stack_remap=remap)

    def __repr__(self) -> str:
        return (
            f"<Profile {self.sample_count} samples, {len(self.thread_ids)} threads, "
            f"{self.total_duration_ms:.0f} ms, interval {self.interval_ms} ms>"
        )


# The times are datetimes to the reader; the slots may hold EpochTime.
Profile.start_time = WallTime(Profile.__dict__["_start_time"])  # type: ignore[attr-defined]
Profile.end_time = WallTime(Profile.__dict__["_end_time"])  # type: ignore[attr-defined]
