"""Scanning real, messy folders: every bad file is listed with its reason and the scan goes on; rescans keep labels."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from sslinspect.cancel import EventToken
from sslinspect.config import DataConfig
from sslinspect.data.scan import scan_project
from sslinspect.errors import Cancelled
from sslinspect.events import CollectingReporter, Log, Progress
from sslinspect.project import Project
from tests.core.image_cases import MESSY_BAD, MESSY_GOOD, bgr_image, encode, write, write_messy_folder


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    return write_messy_folder(tmp_path / "line3")


def _project(tmp_path: Path, *folders: Path) -> Project:
    project = Project.create(tmp_path / "p.sslproj")
    for f in folders:
        project.add_source(f)
    return project


def _by_name(errors: list[tuple[str, str]]) -> dict[str, str]:
    return {Path(p).name: reason for p, reason in errors}


def test_messy_folder_every_bad_file_reported_with_reason(tmp_path: Path, messy: Path) -> None:
    project = _project(tmp_path, messy)
    rep = CollectingReporter()
    result = scan_project(project, report=rep, workers=2)
    assert result.ok == len(MESSY_GOOD)
    errors = _by_name(result.errors)
    assert set(errors) == set(MESSY_BAD)  # the hidden AppleDouble file is skipped, not reported
    for name, reason in MESSY_BAD.items():
        assert errors[name].startswith(reason), (name, errors[name])
    warnings = [e.message for e in rep.of_type(Log) if isinstance(e, Log) and e.level == "WARNING"]
    assert f"{messy / 'zero.png'}: empty file (0 bytes)" in warnings
    assert all("\n" not in w for w in warnings)
    assert (str(messy / "png_bytes.jpg"), "PNG data with a .jpg name (read as PNG)") in result.notes
    progress = [e for e in rep.of_type(Progress) if isinstance(e, Progress)]
    assert progress[-1].step == progress[-1].total == len(MESSY_GOOD) + len(MESSY_BAD)
    rows = {r.relpath: r for r in project.store.images(status="ok")}
    assert rows["deep16.png"].bit_depth == 16 and rows["alpha.png"].channels == 4
    assert rows["one_pixel.png"].width == 1 and "Space in name ä ö 日本.png" in rows and "UPPER.PNG" in rows
    assert "sub dir/nested.tiff" in rows


def test_hidden_files_are_scanned_only_when_asked(tmp_path: Path, messy: Path) -> None:
    project = _project(tmp_path, messy)
    result = scan_project(project, DataConfig(include_hidden=True), workers=1)
    assert _by_name(result.errors)["._plain.png"] == "not an image (unrecognised file signature)"


def test_pixel_limit_applies_and_failed_files_are_retried_on_rescan(tmp_path: Path, messy: Path) -> None:
    project = _project(tmp_path, messy)
    first = scan_project(project, DataConfig(max_pixels=500), workers=1)
    assert _by_name(first.errors)["plain.png"].endswith("exceeds the limit of 500")
    second = scan_project(project, workers=1)  # same files, default limit: the refused ones are decoded again
    assert second.ok == len(MESSY_GOOD) and "plain.png" not in _by_name(second.errors)


def test_symlink_loops_double_links_and_broken_links(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    write(root / "a" / "x.png", encode(".png", bgr_image()))
    (root / "a" / "loop").symlink_to(root, target_is_directory=True)  # a → loop → root → a → ...
    (root / "again").symlink_to(root / "a", target_is_directory=True)  # same folder twice
    (root / "self.png").symlink_to(root / "self.png")  # a link to itself
    (root / "dangling.png").symlink_to(root / "gone.png")
    project = _project(tmp_path, root)
    result = scan_project(project, workers=1)
    errors = dict(result.errors)
    assert result.ok == 1
    assert errors[str(root / "a" / "loop")] == "symbolic link loop (points back to a parent folder; skipped)"
    assert errors[str(root / "again")] == f"same folder as {root / 'a'} (scanned once)"
    assert errors[str(root / "dangling.png")] == "broken or looping symbolic link"
    assert errors[str(root / "self.png")] == "unreadable (Too many levels of symbolic links)"


def test_unreadable_file_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With chmod 000; as root (which ignores modes) the PermissionError the OS would raise is injected."""
    root = tmp_path / "imgs"
    write(root / "ok.png", encode(".png", bgr_image()))
    locked = write(root / "locked.png", encode(".png", bgr_image(seed=1)))
    closed = root / "closed"
    write(closed / "inside.png", encode(".png", bgr_image(seed=2)))
    locked.chmod(0)
    closed.chmod(0)
    try:
        if os.geteuid() == 0:
            real_open, real_scandir = os.open, os.scandir

            def open_(file: str | Path, flags: int, *args: int, **kwargs: int) -> int:  # the bounded read's open
                if Path(file).name == "locked.png":
                    raise PermissionError(errno.EACCES, "Permission denied", str(file))
                return real_open(file, flags, *args, **kwargs)

            def scandir(path: str | Path = ".") -> object:
                if Path(path).name == "closed":
                    raise PermissionError(errno.EACCES, "Permission denied", str(path))
                return real_scandir(path)

            monkeypatch.setattr(os, "open", open_)
            monkeypatch.setattr(os, "scandir", scandir)
        result = scan_project(_project(tmp_path, root), workers=1)
    finally:
        locked.chmod(0o644)
        closed.chmod(0o755)
    errors = dict(result.errors)
    assert result.ok == 1
    assert errors[str(locked)] == "permission denied"
    assert errors[str(closed)] == "folder unreadable (Permission denied)"


def test_file_name_that_is_not_utf8_is_reported_not_fatal(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    write(root / "fine.png", encode(".png", bgr_image()))
    bad = os.fsencode(root) + b"/caf\xe9.png"  # Latin-1 bytes from an old Windows share
    with open(bad, "wb") as fh:  # noqa: PTH123 - a bytes path on purpose
        fh.write(encode(".png", bgr_image(seed=1)))
    result = scan_project(_project(tmp_path, root), workers=1)
    assert result.ok == 1
    assert result.errors == [(f"{root}/caf\\xe9.png", "name is not valid UTF-8 (rename it to scan it)")]


def test_duplicates_are_reported_and_labelled_once(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    data = encode(".png", bgr_image())
    write(root / "a.png", data)
    write(root / "copy of a.png", data)
    write(root / "b.png", encode(".png", bgr_image(seed=1)))
    project = _project(tmp_path, root)
    result = scan_project(project, workers=1)
    assert result.ok == 3 and result.duplicates == 1
    assert (str(root / "copy of a.png"), f"same content as {root / 'a.png'} (used and labelled once)") in result.notes
    assert [r.relpath for r in project.store.images()] == ["a.png", "b.png"]
    dup = project.store.find(1, "copy of a.png")
    first = project.store.find(1, "a.png")
    assert dup is not None and first is not None
    project.store.set_label(dup.id, "scratch")
    assert project.store.labels() == {first.id: "scratch"}


def test_rescan_picks_up_new_changed_moved_and_deleted_files_and_keeps_labels(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    for i in range(4):
        write(root / f"{i}.png", encode(".png", bgr_image(seed=i)))
    project = _project(tmp_path, root)
    scan_project(project, workers=1)
    ids = {r.relpath: r.id for r in project.store.images()}
    store = project.store
    given = {"0.png": "good", "1.png": "scratch", "2.png": "dent", "3.png": "good"}
    store.set_labels([(ids[name], label) for name, label in given.items()])

    write(root / "new.png", encode(".png", bgr_image(seed=10)))
    (root / "moved").mkdir()
    (root / "1.png").rename(root / "moved" / "one.png")
    write(root / "2.png", encode(".png", bgr_image(seed=20)))  # overwritten: other content
    os.utime(root / "2.png", ns=(1, 1))  # and an mtime that differs for sure
    (root / "3.png").unlink()

    result = scan_project(project, workers=1)
    assert (result.ok, result.new, result.unchanged, result.missing) == (4, 2, 1, 2)  # 1.png moved, 3.png gone
    labels = {store.image(i).relpath: lab for i, lab in store.labels().items()}  # type: ignore[union-attr]
    assert labels == {"0.png": "good", "moved/one.png": "scratch", "2.png": "dent", "3.png": "good"}
    assert store.image(ids["3.png"]).status == "missing"  # type: ignore[union-attr]
    notes = dict(result.notes)
    assert notes[str(root / "moved" / "one.png")] == f"label 'scratch' followed the image from {root / '1.png'}"
    assert notes[str(root / "2.png")] == "file changed since it was labelled 'dent'; check the label"
    assert result.relabelled == 1

    write(root / "3.png", encode(".png", bgr_image(seed=3)))  # the deleted file comes back
    again = scan_project(project, workers=1)
    assert again.missing == 0 and store.image(ids["3.png"]).status == "ok"  # type: ignore[union-attr]
    assert store.labels()[ids["3.png"]] == "good"


def test_missing_source_folder_is_reported_and_its_labels_kept(tmp_path: Path) -> None:
    root = tmp_path / "usb"
    write(root / "a.png", encode(".png", bgr_image()))
    project = _project(tmp_path, root)
    scan_project(project, workers=1)
    image_id = project.store.images()[0].id
    project.store.set_label(image_id, "scratch")
    shutil.move(root, tmp_path / "elsewhere")  # drive unplugged
    result = scan_project(project, workers=1)
    assert result.errors == [(str(root), "image folder not found (moved or unplugged?)")]
    assert project.store.image(image_id).status == "ok"  # type: ignore[union-attr]
    assert project.store.labels() == {image_id: "scratch"}


def test_cancelled_scan_keeps_what_it_did_and_a_rescan_completes(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    for i in range(150):
        write(root / f"{i:03d}.png", encode(".png", bgr_image(8, 8, seed=i)))
    project = _project(tmp_path, root)
    token = EventToken()

    def cancel_after_first_batch(event: object) -> None:
        if isinstance(event, Progress) and event.step > 0:
            token.cancel()

    with pytest.raises(Cancelled, match="scan cancelled after 64 of 150 files"):
        scan_project(project, report=cancel_after_first_batch, cancel=token, workers=1)
    assert project.store.counts()["ok"] == 64
    result = scan_project(project, workers=1)
    assert (result.ok, result.unchanged, result.new) == (150, 64, 86)


def test_scan_keeps_the_original_when_its_copy_sorts_first(tmp_path: Path) -> None:
    # issue 12: "x - Copy.png" sorts before "x.png", so it was scanned first and kept; the original was dropped
    root = tmp_path / "imgs"
    data = encode(".png", bgr_image())
    write(root / "x.png", data)
    write(root / "x - Copy.png", data)
    write(root / "y.png", encode(".png", bgr_image(seed=1)))
    os.utime(root / "x.png", ns=(1_600_000_000 * 10**9,) * 2)
    os.utime(root / "x - Copy.png", ns=(1_700_000_000 * 10**9,) * 2)  # copied later
    project = _project(tmp_path, root)
    result = scan_project(project, workers=1)
    assert (result.ok, result.duplicates, result.unique) == (3, 1, 2)
    assert [r.relpath for r in project.store.images()] == ["x.png", "y.png"]
    assert (str(root / "x - Copy.png"), f"same content as {root / 'x.png'} (used and labelled once)") in result.notes
