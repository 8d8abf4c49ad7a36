"""Saving a profile writes where ``open(path, "wb")`` would, and never
replaces what the user has at the path with something else: devices and
FIFOs are written through, symbolic links followed, regular files replaced
atomically; errors name the user's path. Device nodes are made with mknod
in a scratch folder (never under /dev)."""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import spprof
from spprof import Frame, Profile, Sample

from conftest import child_kwargs

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def profile() -> Profile:
    main, hot = Frame("main", "app.py", 1), Frame("hot", "app.py", 2)
    return Profile(T0, T0 + timedelta(seconds=1), 10, [Sample(1, 1, "MainThread", (main, hot), 3)])


COLLAPSED = profile().render("collapsed").decode()


def need_mknod() -> None:
    if os.geteuid() != 0:
        pytest.skip("making device nodes needs root")


def test_character_device_is_written_through_not_replaced(tmp_path: Path) -> None:
    need_mknod()
    node = tmp_path / "null"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # like /dev/null
    profile().save(node, format="collapsed")
    st = os.lstat(node)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert sorted(os.listdir(tmp_path)) == ["null"]  # no temporary file left


def test_full_device_raises_oserror_naming_the_users_path(tmp_path: Path) -> None:
    need_mknod()
    node = tmp_path / "full"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 7))  # like /dev/full
    with pytest.raises(OSError) as info:
        profile().save(node, format="collapsed")
    assert info.value.errno == errno.ENOSPC
    assert str(node) in str(info.value) and info.value.filename == str(node)
    assert stat.S_ISCHR(os.lstat(node).st_mode)


def test_symlink_target_gets_the_profile_and_the_link_stays(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "out.collapsed"
    target.write_text("old\n")
    os.chmod(target, 0o600)
    link = tmp_path / "link.collapsed"
    link.symlink_to(target)
    profile().save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == COLLAPSED
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600  # its permissions kept
    # A dangling link: its target is created.
    dangling = tmp_path / "dangling.collapsed"
    dangling.symlink_to(tmp_path / "real" / "new.collapsed")
    profile().save(dangling)
    assert dangling.is_symlink() and (tmp_path / "real" / "new.collapsed").read_text() == COLLAPSED


def test_fifo_reader_gets_the_profile(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.collapsed"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    profile().save(fifo)
    reader.join(30)
    assert got == [COLLAPSED.encode()]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_new_file_gets_the_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        out = profile().save(tmp_path / "new.collapsed")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640
    assert Path(out).read_text() == COLLAPSED


def test_error_names_the_users_path_not_a_temporary_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "out.json"
    with pytest.raises(OSError) as info:
        profile().save(missing)
    assert str(missing) in str(info.value) and ".spprof-" not in str(info.value)


def test_output_path_with_nul_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="NUL"):
        spprof.start(output_path="out\0.json")
    assert not spprof.is_active()


def test_cli_rate_above_10000_is_refused(tmp_path: Path) -> None:
    import subprocess

    (tmp_path / "t.py").write_text("pass\n")
    for rate in ("10001", "15000", "1e9", "0.5"):
        proc = subprocess.run([sys.executable, "-m", "spprof", "run", "-r", rate, "t.py"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60,
                              **child_kwargs())
        assert proc.returncode == 2, (rate, proc.stderr)
        assert "bad rate" in proc.stderr and "1 to 10000" in proc.stderr


def test_cli_stdout_on_a_full_device_keeps_a_copy(tmp_path: Path) -> None:
    """``spprof run -o - > full``: the profile cannot go to standard output;
    it is saved to a temporary file, stderr says where, and the exit status
    is the one a failed save always gives (2 when the target succeeded)."""
    import subprocess

    need_mknod()
    node = tmp_path / "full"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    (tmp_path / "t.py").write_text(
        "import time\nend = time.thread_time() + 0.1\nwhile time.thread_time() < end:\n    pass\n")
    with open(node, "wb") as out:
        proc = subprocess.run([sys.executable, "-m", "spprof", "run", "-f", "collapsed", "-o", "-",
                               "t.py"], cwd=tmp_path, stdout=out, stderr=subprocess.PIPE,
                              text=True, timeout=120, **child_kwargs())
    assert proc.returncode == 2, proc.stderr
    assert "could not write standard output: No space left on device" in proc.stderr, proc.stderr
    saved = proc.stderr.split("profile saved to ")[1].split(" instead")[0]
    try:
        assert ";" in Path(saved).read_text()  # a collapsed profile
    finally:
        os.unlink(saved)
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
