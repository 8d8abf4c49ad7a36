"""``spprof run``: run a script or module in this interpreter under the profiler."""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import os
import runpy
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from types import TracebackType

from .. import _session
from .._coverage import coverage_lines
from .._model import Profile, Stack
from ..writers import get_writer
from ._options import (
    STDOUT,
    RunConfig,
    UsageError,
    add_run_options,
    file_safe,
    split_run_argv,
    target_name,
    validate_run,
)

USAGE = (
    "spprof run [options] script.py [args...]\n"
    "       spprof run [options] -m module [args...]"
)

DESCRIPTION = (
    "Run a Python script or module under the profiler and write the profile when it "
    "ends (also on an exception, sys.exit, Ctrl-C, SIGTERM or SIGHUP). Everything after "
    "the script or module name is passed to it untouched."
)

EXIT_INTERRUPTED = 130  # what a shell reports for a SIGINT death
EXIT_USAGE = 2
# Signals that end the target as Ctrl-C does (the profile is written), with
# spprof then exiting 128 + the signal number, as a shell reports the death.
EXIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def configure(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a script or module under the profiler",
        usage=USAGE,
        description=DESCRIPTION,
        allow_abbrev=False,
    )
    add_run_options(parser)
    parser.set_defaults(handler=execute)


split_argv = split_run_argv


def execute(ns: argparse.Namespace, target_args: list[str]) -> int:
    return run(validate_run(ns, target_args))


def run(config: RunConfig) -> int:
    """Run the target as ``python script.py`` / ``python -m module`` would,
    profiled; return the exit code spprof should end with."""
    if config.module is not None:
        path0 = os.getcwd()
        argv0 = config.module  # runpy replaces it with the module's file
    else:
        assert config.script is not None
        path0 = _script_path0(config.script)
        argv0 = config.script

    pid = os.getpid()
    runner_files = _runner_filenames()
    try:
        with _target_environment([argv0, *config.target_args], path0):
            runner = (
                _module_runner(config.module) if config.module else _script_runner(config.script)
            )
            # A session of spprof's own, which the target's use of the API
            # (spprof.start/stop, Profiler, @profile) neither sees nor stops:
            # the target's sessions run inside it.
            _session.host_start(
                config.interval_ms,
                config.memory_limit_mb,
                trim=functools.partial(_without_runner_frames, runner=runner_files),
                mode=config.mode,
                backend=config.backend,
                native=config.native,
            )
            code = EXIT_INTERRUPTED
            try:
                code = _run_target(runner)
            finally:
                if os.getpid() == pid:
                    with _exit_signals_deferred():
                        profile = _session.host_stop()
        if os.getpid() != pid:
            # A child the target forked (os.fork) returned from the target's
            # code: the session and the profile are the parent's; the child
            # ends with the target's status, as it would under python.
            return code
        profile = _without_runner_frames(profile, runner_files)
        if not config.idle:
            profile = profile.without_idle()
        with _exit_signals_deferred():
            code = _write(profile, config, code)
        if _pending_signal is not None:
            # SIGTERM/SIGHUP while spprof was stopping or writing: the
            # profile is written, now end as the signal asked.
            return 128 + _pending_signal
        return code
    finally:
        _release_exit_signals()
        if os.getpid() == pid:
            # a session of the target's still running goes on from here
            _session.host_release()


# -- running the target ----------------------------------------------------------------


def _script_path0(script: str) -> str:
    # python puts the script's real directory first (a directory or zip
    # target is itself the entry; runpy.run_path inserts it)
    if os.path.isfile(script) and not _is_zip(script):
        return os.path.dirname(os.path.realpath(script))
    return os.path.abspath(script)


def _is_zip(path: str) -> bool:
    import zipfile

    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def _script_runner(script: str | None) -> Callable[[], object]:
    assert script is not None
    return lambda: runpy.run_path(script, run_name="__main__")


def _module_runner(module: str) -> Callable[[], object]:
    """Find the module now, so that a typo is a one-line usage error and an
    ImportError raised by the module's own code later is a traceback."""
    try:
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.submodule_search_locations is not None:
            main_spec = importlib.util.find_spec(module + ".__main__")
            if main_spec is None:
                raise UsageError(
                    f"{module} is a package without a __main__ module "
                    f"(run one of its modules, e.g. -m {module}.something)"
                )
    except (ImportError, ValueError) as exc:
        if isinstance(exc, UsageError):
            raise
        spec = None
    if spec is None:
        raise UsageError(
            f"module not found: {module} (check the name, and run from the directory "
            "that contains it or add it to PYTHONPATH)"
        )
    return lambda: runpy.run_module(module, run_name="__main__", alter_sys=True)


@contextlib.contextmanager
def _target_environment(argv: list[str], path0: str) -> Iterator[None]:
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = list(argv)
    # Replace, not prepend: spprof's own entry (its launcher directory or
    # the cwd of "python -m spprof") must not be importable to the target
    # unless python would make it so.
    if sys.path:
        sys.path[0] = path0
    else:
        sys.path.append(path0)
    try:
        yield
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path


def _run_target(runner: Callable[[], object]) -> int:
    """Exit code of the target, decided the way the interpreter decides it."""
    try:
        with _target_running_now():
            runner()
    except SystemExit as exc:
        return _exit_code(exc.code)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except _ExitSignal as exc:
        return 128 + exc.signum
    except BaseException as exc:  # anything else is an uncaught exception to python too
        tb = _target_traceback(exc.__traceback__)
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        return 1
    return 0


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return int(code)
    print(code, file=sys.stderr)
    return 1


_RUNNER_MODULES = frozenset({__name__, "runpy"})


def _target_traceback(tb: TracebackType | None) -> TracebackType | None:
    # Drop spprof's and runpy's frames so the report starts in the target,
    # as it would under python itself.
    first = tb
    while tb is not None and tb.tb_frame.f_globals.get("__name__") in _RUNNER_MODULES:
        tb = tb.tb_next
    return tb if tb is not None else first


class _ExitSignal(BaseException):
    """SIGTERM or SIGHUP, raised in the target's main thread the way Python
    raises KeyboardInterrupt for SIGINT: ``finally`` blocks and context
    managers run, ``except Exception`` does not catch it, and the profile is
    written."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = int(signum)


def _on_exit_signal(signum: int, frame: object) -> None:
    # While the target's code runs, end it; afterwards (spprof is stopping
    # or writing) remember the signal and exit with it once written.
    global _pending_signal
    if _target_running:
        raise _ExitSignal(signum)
    if _pending_signal is None:
        _pending_signal = signum


_target_running = False
_pending_signal: int | None = None
_taken: list[int] = []
_fork_hook_registered = False


def _restore_default_in_forked_child() -> None:
    # A child the target forks dies of these signals, as it would under python.
    _release_exit_signals()


def _take_exit_signals() -> None:
    """From the start of the target's code to the end of ``run()``, SIGTERM
    and SIGHUP at their default disposition go to ``_on_exit_signal``.

    A signal spprof was started with ignored (``nohup``) stays ignored, and
    a handler the target installs replaces spprof's exactly as it would
    replace the default, and is left in place."""
    global _fork_hook_registered, _pending_signal
    _pending_signal = None
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in EXIT_SIGNALS:
        try:
            if signal.getsignal(sig) == signal.SIG_DFL:
                signal.signal(sig, _on_exit_signal)
                _taken.append(sig)
        except (OSError, ValueError):
            pass
    if _taken and not _fork_hook_registered:
        os.register_at_fork(after_in_child=_restore_default_in_forked_child)
        _fork_hook_registered = True


def _release_exit_signals() -> None:
    while _taken:
        sig = _taken.pop()
        try:
            if signal.getsignal(sig) is _on_exit_signal:
                signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):
            pass


@contextlib.contextmanager
def _target_running_now() -> Iterator[None]:
    global _target_running
    _take_exit_signals()
    _target_running = True
    try:
        yield
    finally:
        _target_running = False


@contextlib.contextmanager
def _exit_signals_deferred() -> Iterator[None]:
    """Keep a second Ctrl-C, or a SIGTERM or SIGHUP that reaches a handler
    the target left behind, from abandoning the profile half-written.
    (spprof's own handler only records the signal at this point.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in (signal.SIGINT, *EXIT_SIGNALS):
        try:
            handler = signal.getsignal(sig)
            # None: a handler not installed from Python, which Python
            # could not put back; leave it alone.
            if handler is not None and handler is not _on_exit_signal:
                previous[sig] = signal.signal(sig, signal.SIG_IGN)
        except (OSError, ValueError):
            pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- the profile ---------------------------------------------------------------------


def _runner_filenames() -> frozenset[str]:
    """Files of the frames that sit between the interpreter and the target's
    code in the main thread: the launcher, spprof itself (its CLI, starting
    and stopping), runpy, and what they call on the way (contextlib,
    importlib's bootstrap)."""
    import importlib._bootstrap
    import importlib._bootstrap_external

    names = {
        runpy.run_path.__code__.co_filename,
        runpy.__file__ or "",
        contextlib.contextmanager.__code__.co_filename,
        importlib._bootstrap._find_and_load.__code__.co_filename,
        importlib._bootstrap_external.spec_from_file_location.__code__.co_filename,
    }
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for directory, _, files in os.walk(package):
        names.update(os.path.join(directory, f) for f in files if f.endswith(".py"))
    frame = sys._getframe()
    while frame is not None:
        names.add(frame.f_code.co_filename)
        frame = frame.f_back
    return frozenset(names)


def _without_runner_frames(profile: Profile, runner: frozenset[str]) -> Profile:
    """The profile with the runner's frames (``runner``: their files, see
    ``_runner_filenames``) cut from the root of the main thread's stacks, so
    flame graphs start at the target's ``<module>``. Stacks made only of
    runner frames (spprof starting or stopping) stay."""

    def cut(stack: Stack) -> Stack:
        n = 0
        while n < len(stack) and stack[n].filename in runner:
            n += 1
        return stack[n:] if 0 < n < len(stack) else stack

    return profile._with_stacks(cut)


def _write(profile: Profile, config: RunConfig, code: int) -> int:
    _flush(sys.stdout)
    options = {"merge_threads": config.merge_threads, "threads": config.threads}
    if config.output == STDOUT:
        data = profile.render(config.format, **options)
        out = sys.stdout
        try:
            if hasattr(out, "buffer"):
                out.buffer.write(data)
                out.buffer.flush()
            else:
                out.write(data.decode("utf-8", "replace"))
                out.flush()
        except OSError as exc:
            _discard_stdout()
            return _write_fallback(profile, config, code, exc)
        _summary(profile, config, "<stdout>")
        return code
    try:
        profile.save(config.output, format=config.format, **options)
    except OSError as exc:
        return _write_fallback(profile, config, code, exc)
    _summary(profile, config, config.output)
    return code


def _discard_stdout() -> None:
    """Standard output refused the profile (a full device, a closed pipe):
    what is still buffered for it would fail again when Python flushes it at
    exit (status 120). The profile is kept elsewhere; point descriptor 1 at
    /dev/null so that flush succeeds."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 1)
        finally:
            os.close(null)
    except OSError:
        pass


def _write_fallback(profile: Profile, config: RunConfig, code: int, error: OSError) -> int:
    """The output went away or turned unwritable while the target ran: keep
    the profile anyway, in the temp directory, and say where."""
    failed = code if code != 0 else EXIT_USAGE
    reason = error.strerror or str(error)
    where = "standard output" if config.output == STDOUT else config.output
    try:
        fd, fallback = tempfile.mkstemp(
            prefix=f"spprof-{file_safe(target_name(config.script, config.module))}-",
            suffix=get_writer(config.format).extension,
        )
        os.close(fd)
        profile.save(
            fallback, format=config.format, merge_threads=config.merge_threads, threads=config.threads
        )
    except OSError as exc2:
        _error(
            f"could not write the profile to {where} ({reason}) nor to "
            f"{tempfile.gettempdir()} ({exc2.strerror or exc2}) (free some space or "
            "choose another -o path)"
        )
        return failed
    _error(f"could not write {where}: {reason}; profile saved to {fallback} instead")
    return failed


def _summary(profile: Profile, config: RunConfig, where: str) -> None:
    if config.quiet:
        return
    print(format_summary(profile, where), file=sys.stderr)
    _flush(sys.stderr)


def format_summary(profile: Profile, where: str) -> str:
    stats = profile.stats
    overruns = getattr(stats, "timer_overruns", 0)
    threads = len(profile.thread_ids)
    first = (
        f"spprof: {profile.total_duration_ms / 1000:.2f} s, "
        f"{profile.sample_count:,} sample{'s' if profile.sample_count != 1 else ''} "
        f"({profile.effective_rate_hz:.1f} Hz), "
        f"{profile.dropped_count:,} dropped, {overruns:,} overrun{'s' if overruns != 1 else ''}, "
        f"{threads} thread{'s' if threads != 1 else ''}{_backend(stats)} -> {where}"
    )
    notes = list(coverage_lines(profile))
    note = (getattr(stats, "raw", None) or {}).get("backend_note")
    if note:
        notes.append(f"{note}; sampled with timer_create (one sample per scheduler tick at most, "
                     "weighted by the expirations it stands for)")
    # The coverage first: the line naming the output stays the last one.
    return "\n".join([f"spprof: {line}" for line in notes] + [first])


def _backend(stats: object) -> str:
    backend = getattr(stats, "backend", None)
    return f", {backend}" if backend else ""


def _error(message: str) -> None:
    print(f"spprof: error: {message}", file=sys.stderr)
    _flush(sys.stderr)


def _flush(stream: object) -> None:
    try:
        stream.flush()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        pass


__all__ = ["configure", "execute", "format_summary", "run", "split_argv"]
