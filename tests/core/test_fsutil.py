"""Atomic writes (also under a real ``kill -9``), file permissions, the cross-process lock, OS error wording."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sslinspect import fsutil
from sslinspect.fsutil import atomic_path, atomic_write_bytes, describe_os_error, file_lock
from tests.conftest import REPO, subprocess_env


def test_exception_inside_the_block_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old model")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half a new mod")
        raise RuntimeError("export failed")
    assert target.read_bytes() == b"old model"
    assert [f.name for f in tmp_path.iterdir()] == ["model.onnx"]


def test_disk_full_during_write_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "project.json"
    target.write_text("{}")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsutil.os, "fsync", full)
    with pytest.raises(OSError) as err:
        atomic_write_bytes(target, b'{"new": 1}')
    assert describe_os_error(err.value) == "disk full"
    assert target.read_text() == "{}" and [f.name for f in tmp_path.iterdir()] == ["project.json"]


def test_new_files_get_normal_permissions_and_replaced_files_keep_theirs(tmp_path: Path) -> None:
    new = tmp_path / "new.onnx"
    atomic_write_bytes(new, b"x")
    assert new.stat().st_mode & 0o777 == 0o666 & ~fsutil._UMASK  # not mkstemp's 0600
    kept = tmp_path / "kept.json"
    kept.write_bytes(b"x")
    kept.chmod(0o640)
    atomic_write_bytes(kept, b"y")
    assert kept.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize(
    ("code", "text"),
    [(errno.ENOSPC, "disk full"), (errno.EROFS, "read-only file system"), (errno.EACCES, "permission denied")],
)
def test_describe_os_error(code: int, text: str) -> None:
    assert describe_os_error(OSError(code, os.strerror(code))) == text


_HALF_WRITER = """
import sys
from sslinspect.fsutil import atomic_path
with atomic_path(sys.argv[1]) as tmp, open(tmp, "wb") as fh:
    fh.write(b"new version, first half ")
    fh.flush()
    print("half", flush=True)
    sys.stdin.readline()  # killed here
    fh.write(b"and second half")
"""


def test_kill_9_in_the_middle_of_a_write_keeps_the_previous_file(tmp_path: Path) -> None:
    """Deterministic: the writer is SIGKILLed after half of the new content is on disk."""
    target = tmp_path / "project.json"
    target.write_bytes(b"previous version")
    proc = subprocess.Popen(
        [sys.executable, "-c", _HALF_WRITER, str(target)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
        cwd=REPO,
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline() == "half\n"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    proc.stdout.close()
    proc.stdin.close()
    assert target.read_bytes() == b"previous version"


_WRITER = """
import hashlib, os, sys
from sslinspect.fsutil import atomic_write_bytes
target, n = sys.argv[1], 0
while True:
    n += 1
    body = os.urandom(4 << 20)  # 4 MB: most of the loop's time is spent writing
    atomic_write_bytes(target, hashlib.sha256(body).digest() + body)
    if n == 2:
        print("ready", flush=True)
"""


def test_kill_9_during_writes_never_leaves_a_torn_file(tmp_path: Path) -> None:
    """A real SIGKILL at arbitrary moments of a write loop: the target is always a complete, valid version."""
    target = tmp_path / "state.bin"
    for delay in (0.0, 0.017, 0.043):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(target)],
            stdout=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
            cwd=REPO,
        )
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        data = target.read_bytes()
        assert len(data) == 32 + (4 << 20) and hashlib.sha256(data[32:]).digest() == data[:32]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "state.bin"]
    assert all(n.startswith(".state.bin.") and n.endswith(".tmp") for n in leftovers)  # never read by anything


_LOCKER = """
import sys, time
from sslinspect.fsutil import file_lock
with file_lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_file_lock_excludes_another_process(tmp_path: Path) -> None:
    import fcntl

    lock = tmp_path / ".project.lock"
    proc = subprocess.Popen(
        [sys.executable, "-c", _LOCKER, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
        cwd=REPO,
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline() == "locked\n"
    with lock.open("a+b") as fh:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc.stdin.write("\n")
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # free once the holder is gone
    proc.stdout.close()
    with file_lock(lock):
        pass
