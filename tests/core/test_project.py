"""The project folder: create/open, schema migration from a stored v1 file, concurrent writers, copies and relinks."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sslinspect import fsutil
from sslinspect.errors import ProjectError
from sslinspect.project import PROJECT_FILE, SCHEMA_VERSION, Project, check_class_name, migrate
from tests.conftest import REPO, subprocess_env
from tests.core.image_cases import bgr_image, encode, write

FIXTURES = Path(__file__).parent / "fixtures"


def test_create_then_open_roundtrip(tmp_path: Path) -> None:
    p = Project.create(tmp_path / "line3.sslproj")
    assert (p.name, p.classes) == ("line3", ["good"])
    assert (p.root / "project.sqlite").is_file() and (p.root / "runs").is_dir()
    p.close()
    q = Project.open(tmp_path / "line3.sslproj")
    assert q.data["schema_version"] == SCHEMA_VERSION
    with pytest.raises(ProjectError, match="a project already exists here"):
        Project.create(tmp_path / "line3.sslproj")


def test_v1_project_is_migrated_and_the_old_file_kept(tmp_path: Path) -> None:
    root = tmp_path / "old.sslproj"
    shutil.copytree(FIXTURES / "project_v1", root)
    original = (root / PROJECT_FILE).read_bytes()
    p = Project.open(root)
    assert p.name == "line3 (prototype)"
    assert p.sources[0].path == "images" and p.sources[1].path == "/mnt/line3/cam2"
    assert p.source_dir(1) == root / "images"
    assert p.classes == ["good", "scratch", "dent"] and p.class_colors()["good"] == "#3fa34d"
    assert p.latest("pretrain") == root / "runs/pretrain/20251102-091500-simclr" and p.latest("fewshot") is None
    on_disk = json.loads((root / PROJECT_FILE).read_text())
    assert on_disk["schema_version"] == 2 and "image_dirs" not in on_disk and "latest_pretrain" not in on_disk
    assert (root / "project.json.v1.bak").read_bytes() == original
    stamp = (root / PROJECT_FILE).stat().st_ino
    Project.open(root)  # already migrated: not rewritten
    assert (root / PROJECT_FILE).stat().st_ino == stamp


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"schema_version": 99}', "schema_version 99 is newer than this SSL Inspect"),
        ('{"name": "x"}', "missing or invalid schema_version"),
        ('{"schema_version": "2"}', "missing or invalid schema_version"),
        ("[1, 2]", "not a JSON object"),
        ('{"schema_version": 2,', "unreadable"),
        ("", "unreadable"),
    ],
)
def test_bad_project_files_give_one_line_errors(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / PROJECT_FILE).write_text(content)
    with pytest.raises(ProjectError, match=message) as err:
        Project.open(tmp_path)
    assert "\n" not in str(err.value)


def test_migrate_refuses_unknown_versions() -> None:
    with pytest.raises(ProjectError, match="schema_version 3 is newer"):
        migrate({"schema_version": 3})


def test_another_writers_changes_are_seen_without_reload(tmp_path: Path) -> None:
    gui = Project.create(tmp_path / "p")
    worker = Project.open(tmp_path / "p")
    worker.set_latest("pretrain", worker.root / "runs" / "pretrain" / "r1")
    worker.add_classes(["scratch"])
    assert gui.latest("pretrain") == gui.root / "runs" / "pretrain" / "r1"
    assert gui.classes == ["good", "scratch"]
    gui.add_classes(["dent"])  # the locked read-modify-write keeps the worker's change
    assert Project.open(tmp_path / "p").classes == ["good", "scratch", "dent"]


_ADD_CLASSES = """
import sys
from sslinspect.project import Project
p = Project.open(sys.argv[1])
for i in range(25):
    p.add_classes([f"{sys.argv[2]}{i}"])
"""


def test_concurrent_processes_lose_no_update(tmp_path: Path) -> None:
    Project.create(tmp_path / "p").close()
    procs = [
        subprocess.Popen([sys.executable, "-c", _ADD_CLASSES, str(tmp_path / "p"), tag], env=subprocess_env(), cwd=REPO)
        for tag in ("a", "b")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    classes = Project.open(tmp_path / "p").classes
    assert len(classes) == 51 and {f"a{i}" for i in range(25)} | {f"b{i}" for i in range(25)} <= set(classes)


def test_failed_save_keeps_the_previous_project_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = Project.create(tmp_path / "p")
    before = (p.root / PROJECT_FILE).read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fsutil.os, "fsync", disk_full)
    with pytest.raises(ProjectError) as err:
        p.add_classes(["scratch"])
    assert str(err.value) == f"{p.root / PROJECT_FILE}: cannot save (disk full); the previous version is kept"
    monkeypatch.undo()
    assert (p.root / PROJECT_FILE).read_bytes() == before
    assert not [f for f in p.root.iterdir() if f.name.endswith(".tmp")]
    assert Project.open(p.root).classes == ["good"]


def test_copied_project_opens_with_sources_inside_it_relative(tmp_path: Path) -> None:
    root = tmp_path / "a" / "p.sslproj"
    p = Project.create(root)
    write(root / "images" / "x.png", encode(".png", bgr_image()))
    src = p.add_source(root / "images")
    assert src.path == "images"
    run = p.new_run_dir("pretrain", "simclr")
    p.set_latest("pretrain", run)
    p.close()
    copy = tmp_path / "b" / "moved.sslproj"
    shutil.copytree(root, copy)
    shutil.rmtree(root)
    q = Project.open(copy)
    assert q.source_dir(src.id) == copy / "images"
    assert q.latest("pretrain") == copy / "runs" / "pretrain" / run.name


def test_relink_source_keeps_images_and_labels(tmp_path: Path) -> None:
    from sslinspect.data.scan import scan_project

    old = tmp_path / "D" / "line3"
    write(old / "x.png", encode(".png", bgr_image()))
    p = Project.create(tmp_path / "p")
    src = p.add_source(old)
    scan_project(p, workers=1)
    image_id = p.store.images()[0].id
    p.store.set_label(image_id, "scratch")
    new = tmp_path / "E" / "line3"
    shutil.move(old.parent, new.parent)
    assert p.relink_source(src.id, new).path == str(new)
    result = scan_project(p, workers=1)
    assert (result.ok, result.new, result.unchanged) == (1, 0, 1)
    assert p.store.labels() == {image_id: "scratch"}
    with pytest.raises(ProjectError, match="no image source with id 9"):
        p.relink_source(9, new)


@pytest.mark.parametrize("bad", ["", " good", "a,b", "a/b", "x\ty", "z" * 65])
def test_invalid_class_names(bad: str) -> None:
    with pytest.raises(ProjectError, match="invalid class name"):
        check_class_name(bad)


def test_rename_class_merges_labels(tmp_path: Path) -> None:
    from sslinspect.data.scan import scan_project

    for i in range(2):
        write(tmp_path / "img" / f"{i}.png", encode(".png", bgr_image(seed=i)))
    p = Project.create(tmp_path / "p")
    p.add_source(tmp_path / "img")
    scan_project(p, workers=1)
    a, b = (r.id for r in p.store.images())
    p.add_classes(["scratch", "scratches"])
    p.store.set_labels([(a, "scratch"), (b, "scratches")])
    p.rename_class("scratches", "scratch")
    assert p.classes == ["good", "scratch"] and p.store.label_counts() == {"scratch": 2}
    with pytest.raises(ProjectError, match="cannot be renamed"):
        p.rename_class("good", "ok")
