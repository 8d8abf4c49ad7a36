"""Thread groups: threads whose names differ only by their numbers.

A server that starts a thread per request, or a pool's workers, gives
hundreds of threads named ``Thread-17 (process_request_thread)`` or
``ThreadPoolExecutor-0_3``; one report section per thread is unreadable.
Threads whose names are equal once every run of digits is replaced by
``*`` form one group (``Thread-* (process_request_thread)``); threads with
no name are grouped as ``<unnamed>``.

The rule reports follow by default (``threads="auto"``): a profile with at
most :data:`GROUP_ABOVE` threads shows each thread; one with more shows
groups, a group of one thread shown as that thread.
"""

from __future__ import annotations

from ._record import frozen_record

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from ._aggregate import AggregatedProfile

__all__ = ["GROUP_ABOVE", "THREAD_VIEWS", "ThreadGroup", "group_name", "thread_tracks"]

# Reports show each thread up to this many threads, groups above it.
GROUP_ABOVE = 8

# The ways a report can show threads.
THREAD_VIEWS = ("auto", "groups", "threads", "merged")

UNNAMED = "<unnamed>"


def group_name(thread_name: str | None) -> str:
    """The group of a thread name: every run of digits replaced by ``*``."""
    if not thread_name:
        return UNNAMED
    out: list[str] = []
    in_digits = False
    for ch in thread_name:
        if "0" <= ch <= "9":
            if not in_digits:
                out.append("*")
            in_digits = True
        else:
            out.append(ch)
            in_digits = False
    return "".join(out)


@frozen_record
class ThreadGroup:
    """Threads shown together in a report: ``name`` is the group's name
    (or the thread's own, for a group of one thread), ``thread_ids`` its
    threads, ``weight`` their samples' summed weight."""

    __slots__ = ("name", "thread_ids", "weight")
    name: str
    thread_ids: tuple[int, ...]
    weight: int

    def __init__(self, name: str, thread_ids: tuple[int, ...], weight: int) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "thread_ids", thread_ids)
        object.__setattr__(self, "weight", weight)

    @property
    def label(self) -> str:
        """``name`` for one thread, ``name (N threads)`` for a group."""
        n = len(self.thread_ids)
        if n == 1:
            return f"{self.name} (tid {self.thread_ids[0]})"
        return f"{self.name} ({n} threads)"


def check_view(threads: str) -> str:
    if threads not in THREAD_VIEWS:
        raise ValueError(f"threads must be one of {', '.join(THREAD_VIEWS)}; got {threads!r}")
    return threads


def thread_tracks(agg: AggregatedProfile, threads: str = "auto") -> list[ThreadGroup]:
    """The tracks a report shows for ``threads`` (one of THREAD_VIEWS),
    costliest first: one per thread (``"threads"``), one per group
    (``"groups"``), either by the rule above (``"auto"``), or none
    (``"merged"``)."""
    check_view(threads)
    if threads == "merged":
        return []
    weights: dict[int, int] = {}
    for s in agg.stacks:
        if s.thread_id is not None:
            weights[s.thread_id] = weights.get(s.thread_id, 0) + s.weight
    if threads == "auto":
        threads = "groups" if len(weights) > GROUP_ABOVE else "threads"
    names = agg.thread_names
    if threads == "threads":
        tracks = [ThreadGroup(names.get(t) or UNNAMED, (t,), w) for t, w in weights.items()]
    else:
        members: dict[str, list[int]] = {}
        for t in weights:
            members.setdefault(group_name(names.get(t)), []).append(t)
        tracks = []
        for name, tids in members.items():
            tids.sort()
            own = (names.get(tids[0]) or UNNAMED) if len(tids) == 1 else name
            tracks.append(ThreadGroup(own, tuple(tids), sum(weights[t] for t in tids)))
    tracks.sort(key=lambda g: (-g.weight, g.name, g.thread_ids))
    return tracks
