"""The start and end times of a Profile: ``datetime`` objects to the reader,
made from the sampler's nanoseconds only when first read, so that neither
``import spprof`` nor ``stop()`` imports ``datetime``."""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any

__all__ = ["EpochTime", "WallTime", "earliest", "latest"]


class EpochTime:
    """A wall-clock time as the sampler gives it: ``ns`` nanoseconds since
    the epoch, plus ``after_ns``. ``Profile.start_time`` and ``end_time``
    turn it into a UTC ``datetime`` when first read, so that neither
    ``import spprof`` nor ``stop()`` imports ``datetime``."""

    __slots__ = ("ns", "after_ns")

    def __init__(self, ns: int, after_ns: int = 0) -> None:
        self.ns, self.after_ns = ns, after_ns

    def to_datetime(self) -> datetime:
        from datetime import datetime, timedelta, timezone

        t = datetime.fromtimestamp(self.ns / 1e9, timezone.utc)
        return t + timedelta(microseconds=self.after_ns / 1000) if self.after_ns else t


class WallTime:
    """The descriptor of ``start_time`` / ``end_time``: a ``datetime``
    (an :class:`EpochTime` stored in its slot is converted on first read)."""

    __slots__ = ("slot",)

    def __init__(self, slot: Any) -> None:
        self.slot = slot  # the member descriptor of the hidden slot

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = self.slot.__get__(obj, owner)
        if type(value) is EpochTime:
            value = value.to_datetime()
            self.slot.__set__(obj, value)
        return value

    def __set__(self, obj: object, value: object) -> None:
        self.slot.__set__(obj, value)


def earliest(times: list[Any]) -> Any:
    return _extreme(times, min)


def latest(times: list[Any]) -> Any:
    return _extreme(times, max)


def _extreme(times: list[Any], pick: Any) -> Any:
    # Sampler times compare without becoming datetimes (joined() runs in stop()).
    if all(type(t) is EpochTime for t in times):
        return pick(times, key=lambda t: t.ns + t.after_ns)
    return pick(t.to_datetime() if type(t) is EpochTime else t for t in times)
