"""Writing an output file the way the user meant it.

A profile goes where ``open(path, "wb")`` would put it:

* a new file or an existing regular file is written to a temporary file in
  the same directory and renamed into place, so a failed save never leaves a
  partial file (an existing file keeps its permissions; a new one gets
  ``0o666`` less the umask, as ``open`` gives);
* a symbolic link is followed: its target is written, the link stays;
* anything else (a character device such as ``/dev/null`` or
  ``/dev/stdout``, a FIFO, a socket) is opened and written through; it is
  never replaced by a regular file.

Every error is an ``OSError`` whose message and ``filename`` are the user's
path, never a temporary name.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile

__all__ = ["check_output_path_text", "check_output_target", "write_output"]


def _umask() -> int:
    # /proc/self/status has it without changing it (os.umask would, for a
    # moment, for every thread of the program).
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _error(exc: OSError, path: str) -> OSError:
    """``exc`` about the user's path (never a temporary name)."""
    return OSError(exc.errno, exc.strerror or str(exc), path)


def _existing(path: str) -> os.stat_result | None:
    """What ``path`` leads to (symbolic links followed), None if nothing."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def check_output_path_text(path: str) -> None:
    if "\0" in path:
        raise ValueError(f"output path contains a NUL character: {path!r}")


def write_output(path: str | os.PathLike[str], data: bytes) -> str:
    """Write ``data`` to ``path`` (see the module docstring) and return the
    path as given."""
    target = os.fspath(path)
    if isinstance(target, bytes):
        target = os.fsdecode(target)
    check_output_path_text(target)
    try:
        st = _existing(target)
    except OSError as exc:
        raise _error(exc, target) from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            raise _error(OSError(errno.EISDIR, os.strerror(errno.EISDIR)), target)
        # A device, FIFO or socket: write through it.
        try:
            with open(target, "wb") as fh:
                fh.write(data)
        except OSError as exc:
            raise _error(exc, target) from None
        return target
    real = os.path.realpath(target)
    directory = os.path.dirname(real)
    mode = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask()
    try:
        fd, tmp = tempfile.mkstemp(prefix=".spprof-", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise _error(exc, target) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, real)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise _error(exc, target) from None
        raise
    return target


def check_output_target(path: str) -> str | None:
    """Before a run: why ``path`` could not take a profile, or None. Tries
    what :func:`write_output` will do without leaving anything behind (a
    FIFO is not opened: that would wait for a reader)."""
    if "\0" in path:
        return "the path contains a NUL character"
    try:
        st = _existing(path)
    except OSError as exc:
        return exc.strerror or str(exc)
    if st is not None and stat.S_ISDIR(st.st_mode):
        return "it is a directory (give a file name)"
    if st is not None and not stat.S_ISREG(st.st_mode):
        if stat.S_ISFIFO(st.st_mode) or os.access(path, os.W_OK):
            return None
        return "permission denied"
    directory = os.path.dirname(os.path.realpath(path))
    if not os.path.isdir(directory):
        return f"output directory does not exist: {directory}"
    try:
        fd, probe = tempfile.mkstemp(prefix=".spprof-", suffix=".tmp", dir=directory)
    except OSError as exc:
        return f"cannot write to output directory: {directory}: {exc.strerror or exc}"
    os.close(fd)
    os.unlink(probe)
    return None
