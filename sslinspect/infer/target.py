"""Where predict results go: a regular file (replaced atomically), standard output, or a refusal that says why.

An atomic replace swaps a new file in with a rename, which would turn a symlink, a device or a FIFO into a regular
file and silently destroy what was there. So only a regular file (or a new name) is replaced; anything else is
refused with a one-line message, and ``-`` writes straight through to standard output (the Unix convention). The
inputs being scored, the model and a project's own files are never overwritten.
"""

from __future__ import annotations

import contextlib
import stat
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

from sslinspect.errors import ConfigError
from sslinspect.fsutil import atomic_path
from sslinspect.imageio import IMAGE_EXTENSIONS
from sslinspect.project import PROJECT_FILE

#: ``--out -``: write the results to standard output.
STDOUT = "-"
#: Suffixes of files predict never replaces: images and models are inputs, never result files.
_PROTECTED_SUFFIXES = frozenset({*IMAGE_EXTENSIONS, ".onnx"})


def is_stdout(target: str | Path | None) -> bool:
    """Whether ``target`` names standard output (``-``)."""
    return target is not None and str(target) == STDOUT


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def check_target(target: Path, *, protected: Iterable[Path] = (), what: str = "output") -> None:
    """Refuse a ``target`` that an atomic replace would damage, with a one-line message naming it.

    Args:
        target: The file results are to be written to.
        protected: Files that must never be overwritten (the model, the images being scored).
        what: How the message names the target (e.g. ``--out``).

    Raises:
        ConfigError: if ``target`` is a folder, a symlink, a device/FIFO/socket, one of ``protected``, an image or
            model file, or a project's own file.
    """
    target = Path(target)
    try:
        st = target.lstat()
    except FileNotFoundError:
        return  # a new file: nothing to protect
    except OSError as exc:
        raise ConfigError(f"{target}: cannot use this {what} ({exc.strerror or exc})") from exc
    hint = f"give a file name, or '{STDOUT}' to write to standard output"
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{target}: is a folder; {what} must be a file ({hint})")
    if stat.S_ISLNK(st.st_mode):
        raise ConfigError(f"{target}: is a symbolic link; refusing to replace it ({hint}, or pass the link's target)")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{target}: is not a regular file (device, FIFO or socket); refusing to replace it ({hint})")
    if any(_same_file(target, p) for p in protected):
        raise ConfigError(f"{target}: is one of the files being read; refusing to overwrite it")
    if target.suffix.lower() in _PROTECTED_SUFFIXES:
        raise ConfigError(f"{target}: is an image or model file; refusing to overwrite it with results")
    if target.name.startswith("project.") and (target.parent / PROJECT_FILE).is_file():
        raise ConfigError(f"{target}: belongs to an SSL Inspect project; refusing to overwrite it")


def check_folder(folder: Path, *, what: str = "heatmaps") -> None:
    """Refuse a ``folder`` for heatmaps etc. that exists and is not a folder.

    Raises:
        ConfigError: naming ``folder``.
    """
    folder = Path(folder)
    if (folder.exists() or folder.is_symlink()) and not folder.is_dir():
        raise ConfigError(f"{folder}: is not a folder; {what} must go into a folder")


@contextlib.contextmanager
def open_results(target: str | Path | None, *, protected: Iterable[Path] = ()) -> Iterator[TextIO | None]:
    """A text stream for the results: ``None`` → nothing, ``-`` → stdout, else ``target`` replaced atomically.

    The file appears at ``target`` only once complete; stdout is written as results come and is not closed.

    Raises:
        ConfigError: see :func:`check_target` (checked before anything is written).
    """
    if target is None:
        yield None
        return
    if is_stdout(target):
        yield sys.stdout
        sys.stdout.flush()
        return
    path = Path(target)
    check_target(path, protected=protected, what="--out")
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        yield fh
