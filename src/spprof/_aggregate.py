"""Samples folded into unique stacks, and per-function totals: what the
reports (text, HTML, pprof) are drawn from."""

from __future__ import annotations

from dataclasses import dataclass, field

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._model import Profile, Stack

__all__ = ["AggregatedProfile", "AggregatedStack", "FunctionStats", "aggregate_columns"]


@dataclass(frozen=True, slots=True)
class AggregatedStack:
    """A unique (thread, stack) pair with how often it was seen.

    ``thread_id`` is ``None`` in a thread-merged aggregate. ``holds_gil`` is
    whether the thread held the GIL, in an aggregate by GIL
    (``Profile.aggregate(by_gil=True)``); None otherwise or when not known.
    """

    thread_id: int | None
    frames: Stack
    count: int
    weight: int
    holds_gil: bool | None = None


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
    is_native: bool = False  # a C/C++ function (filename: its source, or its library when lineno is 0)


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

    def for_threads(self, thread_ids: Iterable[int]) -> AggregatedProfile:
        """Only the stacks of ``thread_ids`` (still one entry per thread)."""
        wanted = set(thread_ids)
        return AggregatedProfile(
            self.interval_ns,
            [s for s in self.stacks if s.thread_id in wanted],
            {t: n for t, n in self.thread_names.items() if t in wanted},
        )

    def merged(self) -> AggregatedProfile:
        """The same data with all threads folded together (thread_id None)."""
        folded: dict[tuple[Stack, bool | None], list[int]] = {}
        for s in self.stacks:
            acc = folded.setdefault((s.frames, s.holds_gil), [0, 0])
            acc[0] += s.count
            acc[1] += s.weight
        stacks = [AggregatedStack(None, f, c, w, g) for (f, g), (c, w) in folded.items()]
        return AggregatedProfile(self.interval_ns, stacks, dict(self.thread_names))

    def function_stats(self) -> list[FunctionStats]:
        """Per-function self/total, sorted by self weight, then total weight."""
        acc: dict[tuple[str, str], list[int]] = {}
        leaf_lines: dict[tuple[str, str], dict[int, int]] = {}
        any_lines: dict[tuple[str, str], dict[int, int]] = {}
        native: set[tuple[str, str]] = set()
        for s in self.stacks:
            seen: set[tuple[str, str]] = set()
            for fr in s.frames:
                key = (fr.function_name, fr.filename)
                if fr.is_native:
                    native.add(key)
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
            out.append(FunctionStats(key[0], key[1], line, sc, tc, sw, tw, key in native))
        out.sort(key=lambda f: (-f.self_weight, -f.total_weight, f.function_name))
        return out


def aggregate_columns(profile: Profile, state_frames: dict[int, Stack], *, by_gil: bool) -> AggregatedProfile:
    """Profile.aggregate: the samples folded by (thread, stack, state), and
    with ``by_gil`` by whether the thread held the GIL too. Off-CPU samples
    end in a frame naming the state (<idle>, <waiting for the GIL>): every
    output shows where a thread waited, under the function that waited:
    ``state_frames`` maps a state's code to the frames appended."""
    from ._states import GIL_VALUES

    gil = profile._gil if by_gil else bytes(len(profile._state))
    acc: dict[tuple[int, int, int, int], list[int]] = {}
    for th, i, w, s, g in zip(profile._tid, profile._stack_idx, profile._weight, profile._state, gil):
        a = acc.get((th, i, s, g))
        if a is None:
            acc[(th, i, s, g)] = [1, w]
        else:
            a[0] += 1
            a[1] += w
    stacks = profile._stacks
    folded = [
        AggregatedStack(th, stacks[i] + state_frames.get(s, ()), c, w, GIL_VALUES[g])
        for (th, i, s, g), (c, w) in acc.items()
    ]
    return AggregatedProfile(profile.interval_ns, folded, dict(profile._thread_names))
