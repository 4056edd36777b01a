"""The SQLite store: durable labels, concurrent writers (threads and processes), full disks and bad files."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from sslinspect.errors import ProjectError
from sslinspect.store import ImageStore, looks_like_copy


def _store_with_images(path: Path, n: int, *, same_content: tuple[int, ...] = ()) -> ImageStore:
    store = ImageStore(path)
    store.upsert_images(
        {
            "source": 1,
            "relpath": f"{i:04d}.png",
            "size": 1,
            "mtime_ns": 1,
            "status": "ok",
            "sha256": "same" if i in same_content else f"sha{i}",
        }
        for i in range(n)
    )
    store.refresh_duplicates()
    return store


def test_bad_database_files_are_refused_with_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "project.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ProjectError, match="not a usable project database"):
        ImageStore(junk)
    newer = tmp_path / "newer.sqlite"
    ImageStore(newer).close()
    with sqlite3.connect(newer) as con:
        con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    con.close()
    with pytest.raises(ProjectError, match="database schema 99 is newer"):
        ImageStore(newer)


def test_labels_are_durable_settings(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "p.sqlite")
    assert store._rows("PRAGMA journal_mode")[0][0] == "wal"
    assert store._rows("PRAGMA synchronous")[0][0] == 2  # FULL: committed labels survive a power cut
    store.close()


def test_unknown_image_id_is_a_clear_error_and_nothing_is_written(tmp_path: Path) -> None:
    store = _store_with_images(tmp_path / "p.sqlite", 2)
    with pytest.raises(ProjectError, match="no image with id 99 to label"):
        store.set_labels([(1, "good"), (99, "scratch")])
    assert store.labels() == {}  # one transaction: all or nothing


def test_full_database_keeps_committed_labels(tmp_path: Path) -> None:
    """``max_page_count`` makes SQLite hit its real SQLITE_FULL path ("database or disk is full")."""
    store = _store_with_images(tmp_path / "p.sqlite", 50)
    store.set_label(1, "good")
    pages = store._rows("PRAGMA page_count")[0][0]
    store._con.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(ProjectError) as err:
        store.set_labels([(i, "scratch-" + "x" * 60) for i in range(2, 51)] * 20)
    assert str(err.value) == f"{tmp_path / 'p.sqlite'}: cannot save (the disk is full; free some space and try again)"
    assert store.labels() == {1: "good"}
    store._con.execute("PRAGMA max_page_count=1073741823")
    store.set_label(2, "dent")  # usable again once there is room
    assert store._rows("PRAGMA integrity_check")[0][0] == "ok"
    assert store.labels() == {1: "good", 2: "dent"}


def test_threads_sharing_one_store_do_not_interleave_transactions(tmp_path: Path) -> None:
    store = _store_with_images(tmp_path / "p.sqlite", 200)
    errors: list[BaseException] = []

    def label(start: int) -> None:
        try:
            for i in range(start, 201, 4):
                store.set_label(i, f"class{start}")
                store.labels()
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=label, args=(s,)) for s in (1, 2, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and len(store.labels()) == 200


_WRITER = """
import sys
from sslinspect.store import ImageStore, looks_like_copy
store = ImageStore(sys.argv[1])
start = int(sys.argv[2])
for i in range(start, 301, 2):
    store.set_label(i, "p" + sys.argv[2])
print("done", flush=True)
"""


def test_two_processes_write_labels_at_once(tmp_path: Path) -> None:
    """The GUI and a worker both write: WAL + busy timeout, no 'database is locked', nothing lost."""
    from tests.reliability.procs import start_python

    _store_with_images(tmp_path / "p.sqlite", 300).close()
    procs = [start_python(_WRITER, str(tmp_path / "p.sqlite"), s) for s in ("1", "2")]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    labels = ImageStore(tmp_path / "p.sqlite").labels()
    assert len(labels) == 300 and labels[1] == "p1" and labels[2] == "p2"


def test_labels_on_duplicates_move_to_the_first_copy_or_are_reported(tmp_path: Path) -> None:
    store = _store_with_images(tmp_path / "p.sqlite", 4)
    store.set_labels([(2, "good"), (3, "scratch")])
    # files 2 and 3 are overwritten with the content of file 1: they become its duplicates
    store.upsert_images(
        {"source": 1, "relpath": f"{i:04d}.png", "size": 2, "mtime_ns": 2, "status": "ok", "sha256": "sha0"}
        for i in (1, 2)
    )
    store.refresh_duplicates()
    changes = store.reconcile_labels()
    assert [(c.kind, c.image_id, c.other_id, c.label) for c in changes] == [
        ("merged", 1, 2, "good"),
        ("conflict", 1, 3, "scratch"),
        ("content_changed", 1, None, "good"),  # both labels were given to the files' earlier content
        ("content_changed", 3, None, "scratch"),
    ]
    assert store.labels() == {1: "good", 3: "scratch"}  # the conflicting label is kept, not silently dropped


def test_the_original_is_kept_not_the_first_scanned_copy(tmp_path: Path) -> None:
    # issue 12: ids follow scan order, and "x - Copy.png" sorts (and is scanned) before "x.png": the copy was kept
    store = ImageStore(tmp_path / "p.sqlite")
    rows = [
        ("a - Copy.png", 200, "a"),  # a `cp`-style copy: newer than its original
        ("a.png", 100, "a"),
        ("b (1).png", 100, "b"),  # an Explorer-style copy keeps the time: the name decides
        ("b.png", 100, "b"),
        ("backup/c.png", 100, "c"),  # same name and time, in a backup folder
        ("c.png", 100, "c"),
        ("line2/deep/d.png", 100, "d"),  # nothing copy-like: the shorter path, then path order
        ("line1/d.png", 100, "d"),
        ("line0/d.png", 100, "d"),
    ]
    store.upsert_images(
        {"source": 1, "relpath": rel, "size": 1, "mtime_ns": t, "status": "ok", "sha256": sha} for rel, t, sha in rows
    )
    assert store.refresh_duplicates() == 5
    kept = sorted(r.relpath for r in store.images())
    assert kept == ["a.png", "b.png", "c.png", "line0/d.png"]
    ids = {r.relpath: r.id for r in store.images(unique=False)}
    assert store.duplicate_pairs() == sorted(
        (ids[dup], ids[orig])
        for dup, orig in [
            ("a - Copy.png", "a.png"),
            ("b (1).png", "b.png"),
            ("backup/c.png", "c.png"),
            ("line2/deep/d.png", "line0/d.png"),
            ("line1/d.png", "line0/d.png"),
        ]
    )
    counts = store.counts()
    assert (counts["ok"], counts["duplicates"], counts["unique"]) == (9, 5, 4)


def test_a_label_on_the_copy_moves_to_the_original_when_it_appears(tmp_path: Path) -> None:
    store = _store_with_images(tmp_path / "p.sqlite", 0)
    row = {"source": 1, "size": 1, "status": "ok", "sha256": "x"}
    store.upsert_images([{**row, "relpath": "x - Copy.png", "mtime_ns": 200}])
    store.refresh_duplicates()
    copy_id = store.images()[0].id
    store.set_label(copy_id, "scratch")  # labelled while the copy was the only one
    store.upsert_images([{**row, "relpath": "x.png", "mtime_ns": 100}])
    assert store.refresh_duplicates() == 1
    changes = store.reconcile_labels()
    original = store.find(1, "x.png")
    assert original is not None and [r.id for r in store.images()] == [original.id]
    assert [(c.kind, c.image_id, c.other_id, c.label) for c in changes] == [("merged", original.id, copy_id, "scratch")]
    assert store.labels() == {original.id: "scratch"}  # the label followed the content, none lost
    store.set_label(copy_id, "dent")  # labelling the copy labels the original
    assert store.labels() == {original.id: "dent"}


@pytest.mark.parametrize(
    ("name", "copy"),
    [
        ("a - Copy.png", True),
        ("a - Copy (2).png", True),
        ("Copy of a.png", True),
        ("Copy (2) of a.png", True),
        ("a copy 2.png", True),
        ("a (1).png", True),
        ("a_copy2.png", True),
        ("a.bak.png", True),
        ("a~.png", True),
        ("Backups/a.png", True),
        ("line 3 - Copy/a.png", True),
        ("a.png", False),
        ("photocopy.png", False),
        ("2024-01-01 12.00.png", False),
        ("line3/cam2/a.png", False),
    ],
)
def test_copy_like_names(name: str, copy: bool) -> None:
    assert looks_like_copy(name) is copy
