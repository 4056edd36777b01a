"""A project is a folder: ``project.json`` (small, human-readable state), ``project.sqlite`` (image index and
labels), ``runs/`` (one folder per pretraining/training run) and ``exports/``.

Paths inside are stored relative to the project root, except image sources outside the project folder, so a copied
project opens anywhere (and :meth:`Project.relink_source` points a moved image folder at its new place). The GUI and a
worker process may both change ``project.json``: every change is a locked read-modify-write with an atomic replace,
and readers notice another process's change (the file's identity changed) and re-read it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sslinspect.errors import ProjectError
from sslinspect.fsutil import atomic_write_bytes, atomic_write_json, describe_os_error, file_lock, read_json
from sslinspect.names import GOOD, BadName, normalise_name
from sslinspect.store import ImageStore

# Bump rules: add a field with a default → no bump; rename/remove/retype a field → bump and add
# migrate_vN_to_vN+1 below plus a stored fixture of the old version under tests/core/fixtures/.
SCHEMA_VERSION = 2
PROJECT_FILE = "project.json"
DB_FILE = "project.sqlite"
LOCK_FILE = ".project.lock"
__all__ = ["GOOD", "Project"]

log = logging.getLogger(__name__)

_PALETTE = ("#3fa34d", "#e6194b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#9a6324")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def migrate_v1_to_v2(d: dict[str, Any]) -> dict[str, Any]:
    """v1 (prototype) kept ``image_dirs``, plain class names and ``latest_<stage>`` keys."""
    out = {k: v for k, v in d.items() if k not in ("image_dirs", "classes") and not k.startswith("latest_")}
    out["sources"] = [{"id": i + 1, "path": p} for i, p in enumerate(d.get("image_dirs", []))]
    out["classes"] = [{"name": c, "color": _PALETTE[i % len(_PALETTE)]} for i, c in enumerate(d.get("classes", []))]
    out["latest"] = {k.removeprefix("latest_"): v for k, v in d.items() if k.startswith("latest_") and v}
    out["schema_version"] = 2
    return out


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: migrate_v1_to_v2}


@contextlib.contextmanager
def _saving(what: Path) -> Iterator[None]:
    """Turn a file-system error while writing ``what`` into a one-line ProjectError (the old file is kept)."""
    try:
        yield
    except OSError as exc:
        raise ProjectError(f"{what}: cannot save ({describe_os_error(exc)}); the previous version is kept") from exc


def migrate(d: dict[str, Any], *, where: str = PROJECT_FILE) -> dict[str, Any]:
    """Bring a ``project.json`` dict up to :data:`SCHEMA_VERSION`.

    Raises:
        ProjectError: for a missing, unknown or newer schema version.
    """
    version = d.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise ProjectError(f"{where}: missing or invalid schema_version")
    if version > SCHEMA_VERSION:
        raise ProjectError(f"{where}: schema_version {version} is newer than this SSL Inspect ({SCHEMA_VERSION})")
    while version < SCHEMA_VERSION:
        d = MIGRATIONS[version](d)
        version = d["schema_version"]
    return d


@dataclass(frozen=True, slots=True)
class Source:
    """A folder of images the user added; ``path`` is relative to the project root when inside it."""

    id: int
    path: str


class Project:
    """An open project folder. Cheap to create; the database opens on first use."""

    def __init__(self, root: Path, data: dict[str, Any]) -> None:
        """Use :meth:`create` or :meth:`open` instead."""
        self.root = Path(root).resolve()
        self._data = data
        self._stamp = self._file_stamp()
        self._store: ImageStore | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, *, name: str | None = None) -> Project:
        """Create a new project folder (it may exist but must not hold a project yet).

        Raises:
            ProjectError: if a project already exists there or the folder is not writable.
        """
        root = Path(root).expanduser().resolve()
        if (root / PROJECT_FILE).exists():
            raise ProjectError(f"{root}: a project already exists here")
        try:
            root.mkdir(parents=True, exist_ok=True)
            for sub in ("runs", "exports"):
                (root / sub).mkdir(exist_ok=True)
            data = {
                "schema_version": SCHEMA_VERSION,
                "name": name or root.name.removesuffix(".sslproj"),
                "created": _now(),
                "sources": [],
                "classes": [{"name": GOOD, "color": _PALETTE[0]}],
                "latest": {},
            }
            atomic_write_json(root / PROJECT_FILE, data)
        except OSError as exc:
            raise ProjectError(f"{root}: cannot create project ({exc.strerror or exc})") from exc
        project = cls(root, data)
        project.store  # noqa: B018 - create the database now, so a new project is complete on disk
        return project

    @classmethod
    def open(cls, root: Path) -> Project:
        """Open an existing project, migrating an older ``project.json`` in place.

        Raises:
            ProjectError: if the folder holds no readable project.
        """
        root = Path(root).expanduser().resolve()
        path = root / PROJECT_FILE
        if not path.is_file():
            raise ProjectError(f"{root}: not an SSL Inspect project (no {PROJECT_FILE})")
        data = _read_project_file(path)
        if data.get("schema_version") != SCHEMA_VERSION:
            migrated = migrate(dict(data), where=str(path))  # raises for unknown or newer versions
            try:
                with _saving(path), file_lock(root / LOCK_FILE):
                    data = _read_project_file(path)  # another process may have migrated it meanwhile
                    old = data.get("schema_version")
                    if old != SCHEMA_VERSION:
                        data = migrate(data, where=str(path))
                        # keep the old file: an older SSL Inspect can still open the backup
                        atomic_write_bytes(root / f"{PROJECT_FILE}.v{old}.bak", path.read_bytes())
                        atomic_write_json(path, data)
            except ProjectError as exc:  # a read-only folder or a full disk: open it migrated in memory
                log.warning("%s (opened read-only)", exc)
                data = migrated
        return cls(root, data)

    def close(self) -> None:
        """Close the database connection."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Project:
        """Use as a context manager that closes the database."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the database."""
        self.close()

    # -- state --------------------------------------------------------------------------------------------------
    @property
    def store(self) -> ImageStore:
        """The image index and labels."""
        if self._store is None:
            self._store = ImageStore(self.root / DB_FILE)
        return self._store

    @property
    def name(self) -> str:
        """Display name."""
        return str(self._current().get("name", self.root.name))

    @property
    def data(self) -> dict[str, Any]:
        """A copy of ``project.json`` as currently on disk (re-read when another process changed it)."""
        return dict(self._current())

    def reload(self) -> None:
        """Re-read ``project.json`` now.

        Raises:
            ProjectError: if it became unreadable.
        """
        path = self.root / PROJECT_FILE
        stamp = self._file_stamp()
        self._data = migrate(_read_project_file(path), where=str(path))
        self._stamp = stamp

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = (self.root / PROJECT_FILE).stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)  # every save is a new file (atomic replace): a new inode

    def _current(self) -> dict[str, Any]:
        """``project.json`` as this process knows it, re-read first if another process replaced it."""
        stamp = self._file_stamp()
        if stamp is not None and stamp != self._stamp:
            with contextlib.suppress(ProjectError):  # unreadable now: keep what we had; the next save says why
                self.reload()
        return self._data

    def update(self, fn: Callable[[dict[str, Any]], None]) -> None:
        """Read-modify-write ``project.json`` under a file lock, then write it atomically.

        Raises:
            ProjectError: if it cannot be written (disk full, read-only folder); the file on disk is unchanged.
        """
        path = self.root / PROJECT_FILE
        with _saving(path), file_lock(self.root / LOCK_FILE):
            data = migrate(_read_project_file(path), where=str(path))
            fn(data)
            atomic_write_json(path, data)
            self._data = data
            self._stamp = self._file_stamp()

    # -- sources ------------------------------------------------------------------------------------------------
    @property
    def sources(self) -> list[Source]:
        """Image folders added to the project."""
        return [Source(int(s["id"]), str(s["path"])) for s in self._current().get("sources", [])]

    def source_dir(self, source: int | Source) -> Path:
        """Absolute folder of a source."""
        sid = source.id if isinstance(source, Source) else source
        for s in self.sources:
            if s.id == sid:
                return self.resolve(s.path)
        raise ProjectError(f"{self.root}: no image source with id {sid}")

    def add_source(self, folder: Path) -> Source:
        """Add an image folder (idempotent); stored relative when it lies inside the project.

        Raises:
            ProjectError: if ``folder`` is not a directory.
        """
        folder = Path(folder).expanduser().resolve()
        if not folder.is_dir():
            raise ProjectError(f"{folder}: not a folder")
        stored = self.relative(folder)
        result: list[Source] = []

        def _add(d: dict[str, Any]) -> None:
            for s in d["sources"]:
                if self.resolve(s["path"]) == folder:
                    result.append(Source(int(s["id"]), str(s["path"])))
                    return
            new_id = max((int(s["id"]) for s in d["sources"]), default=0) + 1
            d["sources"].append({"id": new_id, "path": stored})
            result.append(Source(new_id, stored))

        self.update(_add)
        return result[0]

    def relink_source(self, source_id: int, folder: Path) -> Source:
        """Point an image source at the folder where its images are now (another drive, machine or mount).

        Images are indexed relative to their source, so every image row and label carries over; scan afterwards.

        Raises:
            ProjectError: for an unknown source or a ``folder`` that is not a directory.
        """
        folder = Path(folder).expanduser().resolve()
        if not folder.is_dir():
            raise ProjectError(f"{folder}: not a folder")
        self.source_dir(source_id)  # raises for an unknown id
        stored = self.relative(folder)

        def _relink(d: dict[str, Any]) -> None:
            for s in d["sources"]:
                if int(s["id"]) == source_id:
                    s["path"] = stored

        self.update(_relink)
        return Source(source_id, stored)

    def remove_source(self, source_id: int) -> None:
        """Remove an image folder and forget its images (and their labels)."""
        self.update(lambda d: d.__setitem__("sources", [s for s in d["sources"] if int(s["id"]) != source_id]))
        self.store.delete_source(source_id)

    def image_path(self, source: int, relpath: str) -> Path:
        """Absolute path of an indexed image."""
        return self.source_dir(source) / relpath

    # -- classes ------------------------------------------------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        """Class names, ``good`` first."""
        return [str(c["name"]) for c in self._current().get("classes", [])]

    def class_colors(self) -> dict[str, str]:
        """``name -> '#rrggbb'``."""
        return {str(c["name"]): str(c.get("color", "#888888")) for c in self._current().get("classes", [])}

    def add_classes(self, names: list[str]) -> list[str]:
        """Add class names that are not there yet (order kept); returns the names as stored (NFC).

        Raises:
            ProjectError: for an invalid class name, or one that looks like an existing class without being it.
        """
        have_now = self.classes
        names = [check_class_name(n, have_now + list(names[:k])) for k, n in enumerate(names)]

        def _add(d: dict[str, Any]) -> None:
            have = {c["name"] for c in d["classes"]}
            for n in names:
                if n not in have:
                    d["classes"].append({"name": n, "color": _PALETTE[len(d["classes"]) % len(_PALETTE)]})
                    have.add(n)

        if set(names) - set(have_now):
            self.update(_add)
        return names

    def rename_class(self, old: str, new: str) -> None:
        """Rename ``old`` to ``new``; if ``new`` exists the two classes are merged."""
        new = check_class_name(new, [c for c in self.classes if c != old])
        if old == GOOD:
            raise ProjectError("the class 'good' cannot be renamed")

        def _rename(d: dict[str, Any]) -> None:
            names = [c["name"] for c in d["classes"]]
            if new in names:
                d["classes"] = [c for c in d["classes"] if c["name"] != old]
            else:
                for c in d["classes"]:
                    if c["name"] == old:
                        c["name"] = new

        self.store.rename_label(old, new)
        self.update(_rename)

    # -- runs ---------------------------------------------------------------------------------------------------
    def latest(self, stage: str) -> Path | None:
        """Folder of the latest run of ``stage`` (``pretrain``, ``fewshot``, ``export``), if any."""
        rel = self._current().get("latest", {}).get(stage)
        return self.resolve(rel) if rel else None

    def set_latest(self, stage: str, path: Path) -> None:
        """Point ``latest.<stage>`` at ``path``."""
        rel = self.relative(path)
        self.update(lambda d: d.setdefault("latest", {}).__setitem__(stage, rel))

    def new_run_dir(self, stage: str, tag: str) -> Path:
        """Create ``runs/<stage>/<YYYYmmdd-HHMMSS>-<tag>`` (suffixed if taken)."""
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", tag) or "run"
        base = self.root / "runs" / stage / f"{stamp}-{safe}"
        path, i = base, 1
        while True:
            try:
                path.mkdir(parents=True)
                return path
            except FileExistsError:
                i += 1
                path = base.with_name(f"{base.name}-{i}")
            except OSError as exc:
                raise ProjectError(f"{path}: cannot create the run folder ({describe_os_error(exc)})") from exc

    def runs(self, stage: str) -> list[Path]:
        """Run folders of ``stage``, oldest first."""
        d = self.root / "runs" / stage
        return sorted(p for p in d.iterdir() if p.is_dir()) if d.is_dir() else []

    # -- paths --------------------------------------------------------------------------------------------------
    def relative(self, path: Path) -> str:
        """POSIX path relative to the root when inside the project, else absolute."""
        path = Path(path).resolve()
        try:
            return path.relative_to(self.root).as_posix() or "."
        except ValueError:
            return str(path)

    def resolve(self, stored: str) -> Path:
        """Absolute path for a stored (relative or absolute) path."""
        p = Path(stored)
        return p if p.is_absolute() else self.root / p


def _read_project_file(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path)
    except FileNotFoundError:
        raise ProjectError(f"{path.parent}: not an SSL Inspect project (no {PROJECT_FILE})") from None
    except (OSError, ValueError) as exc:
        raise ProjectError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(data, dict):
        raise ProjectError(f"{path}: not a JSON object")
    return data


_CLASS_RE = re.compile(r"^[^\x00-\x1f\x7f,/\\]{1,64}$")


def check_class_name(name: str, existing: Iterable[str] = ()) -> str:
    """Return ``name`` (NFC-normalised) if it is a usable class name (see :mod:`sslinspect.names`).

    Raises:
        ProjectError: if it is empty, too long, holds control, invisible or bidirectional characters, commas,
            slashes, surrounding spaces or letters of mixed scripts, or looks like one of ``existing``.
    """
    stripped = name.strip()
    if not stripped or not _CLASS_RE.match(stripped) or stripped != name:
        raise ProjectError(f"invalid class name {name!r}: 1–64 characters, no commas, slashes or surrounding spaces")
    try:
        return normalise_name(stripped, existing)
    except BadName as exc:
        raise ProjectError(f"invalid class name {name!r}: {exc}") from None


def is_project(path: Path) -> bool:
    """True when ``path`` holds a ``project.json``."""
    return (Path(path) / PROJECT_FILE).is_file()
