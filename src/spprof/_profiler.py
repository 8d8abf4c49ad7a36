"""``Profiler`` (a block, or explicit start/stop) and ``@profile`` (every
call of a function, generator or coroutine), on top of the public
start()/stop()."""

from __future__ import annotations

import os

from . import _state
from ._api import is_active, pause, resume, start, stop
from ._limits import (
    check_backend,
    check_mode,
    check_native,
    check_interval,
    check_interval_for_mode,
    check_memory_limit,
    check_output_path,
    check_take_over_sigprof,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, overload

    from ._model import Profile
    from ._state import SessionInfo

    F = TypeVar("F", bound=Callable[..., Any])
else:

    def overload(func: object) -> object:  # typing.overload, for type checkers only
        return func

__all__ = ["Profiler", "profile"]

class Profiler:
    """Profile a block: ``with Profiler() as p: ...`` then ``p.profile``.

    Also usable with explicit ``start()``/``stop()``, and ``pause()``/
    ``resume()`` in between.
    """

    def __init__(
        self,
        interval_ms: float = 10,
        output_path: str | os.PathLike[str] | None = None,
        memory_limit_mb: float = 100,
        *,
        take_over_sigprof: bool = False,
        backend: str = "auto",
        mode: str = "cpu",
        native: bool | None = None,
    ) -> None:
        self.interval_ms = check_interval(interval_ms)
        self.native = check_native(native)
        self.backend = check_backend(backend)
        self.mode = check_mode(mode)
        check_interval_for_mode(self.interval_ms, self.mode)
        self.output_path = check_output_path(output_path)
        self.memory_limit_mb = check_memory_limit(memory_limit_mb)
        self.take_over_sigprof = check_take_over_sigprof(take_over_sigprof)
        self.profile: Profile | None = None
        self._running = False
        self._info: SessionInfo | None = None

    def start(self) -> Profiler:
        start(
            self.interval_ms,
            self.output_path,
            self.memory_limit_mb,
            take_over_sigprof=self.take_over_sigprof,
            backend=self.backend,
            mode=self.mode,
            native=self.native,
        )
        self._info = _state.current
        self._running = True
        return self

    def stop(self) -> Profile:
        if not self._running:
            raise RuntimeError("this Profiler is not running")
        try:
            self.profile = stop()
        finally:
            # Only once the session really ended (a Ctrl-C can interrupt
            # stop() before it did: then it is still this Profiler's to stop).
            if _state.current is not self._info:
                self._running = False
        return self.profile

    def pause(self) -> bool:
        return self._running and pause()

    def resume(self) -> bool:
        return self._running and resume()

    def __enter__(self) -> Profiler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        # The block is over: the session ends here even if a Ctrl-C
        # interrupts the first attempt to stop it; the interrupt is then
        # re-raised, once.
        interrupted: BaseException | None = None
        for _ in range(3):
            if not self._running:
                break
            try:
                self.stop()
            except BaseException as exc:
                interrupted = exc
        if interrupted is not None:
            raise interrupted


@overload
def profile(func: F) -> F: ...
@overload
def profile(
    func: None = None,
    *,
    interval_ms: float = 10,
    output_path: str | os.PathLike[str] | None = None,
    mode: str = "cpu",
    native: bool | None = None,
) -> Callable[[F], F]: ...


def profile(
    func: Callable[..., Any] | None = None,
    *,
    interval_ms: float = 10,
    output_path: str | os.PathLike[str] | None = None,
    mode: str = "cpu",
    native: bool | None = None,
) -> Any:
    """Decorator: profile every call of the function.

    ``@profile`` or ``@profile(interval_ms=5, output_path="out.html")``. The
    last call's profile is on ``wrapper.last_profile``. If another session
    is already running, the call simply runs inside it.

    A generator (or async generator) function is profiled over its whole
    iteration: the session starts when the first item is asked for, is
    paused while the consumer has an item (the consumer's own work is not
    in the profile), and ends when the generator is exhausted or closed.
    """
    interval = check_interval(interval_ms)
    path = check_output_path(output_path)
    mode = check_mode(mode)
    native = check_native(native)
    check_interval_for_mode(interval, mode)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        import functools
        import inspect

        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
                gen = fn(*args, **kwargs)
                if is_active():
                    return (yield from gen)
                prof = Profiler(interval, path, mode=mode, native=native)
                prof.start()
                try:
                    return (yield from _paused_while_suspended(gen, prof))
                finally:
                    if prof._running:
                        prof.stop()
                    gen_wrapper.last_profile = prof.profile  # type: ignore[attr-defined]

            gen_wrapper.last_profile = None  # type: ignore[attr-defined]
            return gen_wrapper

        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def agen_wrapper(*args: Any, **kwargs: Any) -> Any:
                agen = fn(*args, **kwargs)
                prof = None if is_active() else Profiler(interval, path, mode=mode, native=native)
                if prof is not None:
                    prof.start()
                try:
                    # async generators have no "yield from": delegate by hand
                    try:
                        item = await agen.__anext__()
                    except StopAsyncIteration:
                        return
                    while True:
                        paused = prof is not None and prof.pause()
                        try:
                            sent = yield item
                        except GeneratorExit:
                            if paused:
                                prof.resume()
                            await agen.aclose()
                            raise
                        except BaseException as exc:
                            if paused:
                                prof.resume()
                            try:
                                item = await agen.athrow(exc)
                            except StopAsyncIteration:
                                return
                        else:
                            if paused:
                                prof.resume()
                            try:
                                item = await agen.asend(sent)
                            except StopAsyncIteration:
                                return
                finally:
                    if prof is not None:
                        if prof._running:
                            prof.stop()
                        agen_wrapper.last_profile = prof.profile  # type: ignore[attr-defined]

            agen_wrapper.last_profile = None  # type: ignore[attr-defined]
            return agen_wrapper

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                if is_active():
                    return await fn(*args, **kwargs)
                prof = Profiler(interval, path, mode=mode, native=native)
                try:
                    with prof:
                        result = await fn(*args, **kwargs)
                finally:
                    if prof._running:
                        prof.stop()
                    async_wrapper.last_profile = prof.profile  # type: ignore[attr-defined]
                return result

            async_wrapper.last_profile = None  # type: ignore[attr-defined]
            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if is_active():
                return fn(*args, **kwargs)
            prof = Profiler(interval, path, mode=mode, native=native)
            try:
                with prof:
                    return fn(*args, **kwargs)
            finally:
                # A Ctrl-C landing as __exit__ is entered skips its body:
                # the session still ends with the call.
                if prof._running:
                    prof.stop()
                wrapper.last_profile = prof.profile  # type: ignore[attr-defined]

        wrapper.last_profile = None  # type: ignore[attr-defined]
        return wrapper

    if func is not None:
        if not callable(func):
            raise ValueError(f"profile() decorates a function, got {func!r}")
        return decorate(func)
    return decorate


def _paused_while_suspended(gen: Any, prof: Profiler) -> Any:
    """``yield from gen`` with ``prof`` paused whenever ``gen`` is suspended
    at a yield (so only the generator's own running time is sampled)."""
    try:
        item = next(gen)
    except StopIteration as done:
        return done.value
    while True:
        paused = prof.pause()
        try:
            sent = yield item
        except GeneratorExit:
            if paused:
                prof.resume()
            gen.close()
            raise
        except BaseException as exc:
            if paused:
                prof.resume()
            try:
                item = gen.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            if paused:
                prof.resume()
            try:
                item = gen.send(sent)
            except StopIteration as done:
                return done.value
