"""Bounded reads of files a user (or an attacker) named: regular files only, size checked before reading.

``/dev/zero`` as a config, a FIFO as a label CSV or an image, a socket or a folder: each is refused with a short
reason instead of being read until the kernel kills the process, or hanging on a FIFO nobody writes to. The file is
opened non-blocking (opening a FIFO never waits for a writer), then checked through the open descriptor (no race
between the check and the read), and at most ``limit + 1`` bytes are read (a file growing while it is read cannot
get past the limit either).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["FileRefused", "file_kind", "read_bounded"]


class FileRefused(Exception):
    """A file that must not be read: ``reason`` says why (``a FIFO, not a regular file``, ``too large ...``)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        """Refuse ``path`` for ``reason``."""
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def file_kind(mode: int) -> str:
    """``a folder``, ``a FIFO``, ``a device``, ... for a ``st_mode`` that is not a regular file."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _mb(n: float) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KB"


def read_bounded(path: str | Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``, refused when it is not one or holds more than ``limit`` bytes.

    Raises:
        FileRefused: for a folder, FIFO, device or socket, or a file larger than ``limit``.
        OSError: when the file cannot be opened or read (missing, permission denied, ...).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:
        raise FileRefused(path, "is a folder") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise FileRefused(path, "is a folder")
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused(path, f"is {file_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise FileRefused(path, f"too large ({_mb(st.st_size)} > {_mb(limit)})")
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            block = os.read(fd, min(1 << 20, limit + 1 - total))
            if not block:
                break
            chunks.append(block)
            total += len(block)
        if total > limit:  # it grew while being read
            raise FileRefused(path, f"too large (more than {_mb(limit)})")
        return b"".join(chunks)
    finally:
        os.close(fd)
