"""Profiles made from other profiles: Profile.joined (consecutive parts of
one session), Profile.without_idle (the samples on CPU only), and the
stack rewrites of Profile._with_stacks."""

from __future__ import annotations

import math
from array import array

from ._states import OFF_CPU
from ._times import earliest, latest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._model import Profile, Stack

__all__ = ["StackTable", "derived", "join_profiles", "on_cpu_only"]


class StackTable:
    """Unique stacks in first-seen order: ``add`` returns a stack's index."""

    __slots__ = ("_index", "stacks")

    def __init__(self) -> None:
        self.stacks: list[Stack] = []
        self._index: dict[Stack, int] = {}

    def add(self, stack: Stack) -> int:
        i = self._index.get(stack)
        if i is None:
            i = self._index[stack] = len(self.stacks)
            self.stacks.append(stack)
        return i


def join_profiles(cls: type[Profile], parts: Sequence[Profile]) -> Profile:
    if not parts:
        raise ValueError("joined() needs at least one profile")
    if len(parts) == 1:
        return parts[0]
    unit = 0
    for p in parts:
        unit = math.gcd(unit, p.interval_ns)
    if unit <= 0:
        raise ValueError("profiles to join need intervals of at least 1 ns")
    table = StackTable()
    ts, tid, sidx, weight = array("q"), array("q"), array("q"), array("q")
    state, gil = array("b"), array("b")
    names: dict[int, str | None] = {}
    for p in parts:
        scale = p.interval_ns // unit
        remap = [table.add(st) for st in p._stacks]
        ts.extend(p._ts)
        state.extend(p._state)
        gil.extend(p._gil)
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
    joined = cls.from_columns(
        start_time=earliest([p._start_time for p in parts]),
        end_time=latest([p._end_time for p in parts]),
        interval_ms=interval_ms,
        stacks=table.stacks,
        timestamps_ns=ts,
        thread_ids=tid,
        stack_indices=sidx,
        weights=weight,
        states=state,
        gil=gil,
        thread_names=names,
        dropped_count=sum(p.dropped_count for p in parts),
        python_version=parts[0].python_version,
        platform=parts[0].platform,
        mode="wall" if any(p.mode == "wall" for p in parts) else "cpu",
    )
    others: dict[int, list] = {}
    for p in parts:
        for t, name, ms in p.threads_without_samples:
            acc = others.setdefault(t, [t, name, 0.0])
            acc[2] += ms
    sampled = set(tid)
    joined.threads_without_samples = tuple(
        sorted((tuple(v) for t, v in others.items() if t not in sampled), key=lambda v: (-v[2], v[0]))
    )
    children = [p.children_cpu_ms for p in parts if p.children_cpu_ms is not None]
    joined.children_cpu_ms = sum(children) if children else None
    return joined


def derived(
    profile: Profile,
    *,
    keep: Sequence[int] | None = None,
    stacks: Sequence[Stack] | None = None,
    stack_remap: Sequence[int] | None = None,
    mode: str | None = None,
) -> Profile:
    """A profile of the same session made of ``profile``'s samples: those at
    the indices ``keep`` (all when None), their stack indices mapped through
    ``stack_remap`` into ``stacks`` (unchanged when None); every column,
    ``stats`` and what the samples do not cover carried over."""

    def column(a: array) -> array:
        return array(a.typecode, a if keep is None else (a[i] for i in keep))

    indices = column(profile._stack_idx)
    if stack_remap is not None:
        indices = array("q", (stack_remap[i] for i in indices))
    out = type(profile).from_columns(
        start_time=profile._start_time,
        end_time=profile._end_time,
        interval_ms=profile.interval_ms,
        stacks=profile._stacks if stacks is None else stacks,
        timestamps_ns=column(profile._ts),
        thread_ids=column(profile._tid),
        stack_indices=indices,
        weights=column(profile._weight),
        states=column(profile._state),
        gil=column(profile._gil),
        thread_names=profile._thread_names,
        dropped_count=profile.dropped_count,
        python_version=profile.python_version,
        platform=profile.platform,
        mode=profile.mode if mode is None else mode,
    )
    out.stats = profile.stats
    out.threads_without_samples = profile.threads_without_samples
    out.children_cpu_ms = profile.children_cpu_ms
    return out


def on_cpu_only(profile: Profile) -> Profile:
    if profile.mode == "cpu" and not any(s in OFF_CPU for s in profile._state):
        return profile
    keep = [i for i, s in enumerate(profile._state) if s not in OFF_CPU]
    return derived(profile, keep=keep, mode="cpu")
