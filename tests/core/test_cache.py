"""The decoded-image cache: reuse across builds, and never an index that describes another array (kill -9)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sslinspect.data.cache import build_cache
from sslinspect.data.scan import scan_project
from sslinspect.events import CollectingReporter, Progress
from sslinspect.imageio import read_image, resize_square
from sslinspect.project import Project
from tests.core.image_cases import bgr_image, encode, write
from tests.reliability.procs import kill_on_open, run_python, was_killed


def _project(tmp_path: Path, n: int) -> Project:
    for i in range(n):
        write(tmp_path / "img" / f"{i}.png", encode(".png", bgr_image(40, 48, seed=i)))
    p = Project.create(tmp_path / "p.sslproj")
    p.add_source(tmp_path / "img")
    scan_project(p, workers=1)
    return p


def _assert_rows_match_files(p: Project, size: int) -> None:
    cache = build_cache(p, size, workers=1)
    for row, image_id in enumerate(cache.ids):
        rec = p.store.image(image_id)
        assert rec is not None
        rgb, _ = read_image(p.image_path(rec.source, rec.relpath))
        assert np.array_equal(cache.images[row], resize_square(rgb, size)), rec.relpath


def test_second_build_decodes_nothing_and_a_rescan_decodes_only_new_files(tmp_path: Path) -> None:
    p = _project(tmp_path, 6)
    build_cache(p, 32, workers=1)
    rep = CollectingReporter()
    build_cache(p, 32, report=rep, workers=1)
    assert not rep.of_type(Progress)  # cache hit
    write(tmp_path / "img" / "new.png", encode(".png", bgr_image(40, 48, seed=99)))
    scan_project(p, workers=1)
    rep = CollectingReporter()
    cache = build_cache(p, 32, report=rep, workers=1)
    assert len(cache) == 7 and rep.of_type(Progress)[0].total == 1  # type: ignore[union-attr]
    assert len(list((p.root / "cache").glob("u8_32-*.npy"))) == 1  # the replaced array is removed
    _assert_rows_match_files(p, 32)


_BUILD = """
import sys
from sslinspect.data.cache import build_cache
from sslinspect.project import Project
build_cache(Project.open(sys.argv[1]), 32, workers=1)
"""


def test_kill_between_array_and_index_never_serves_wrong_images(tmp_path: Path) -> None:
    p = _project(tmp_path, 6)
    build_cache(p, 32, workers=1)
    (tmp_path / "img" / "2.png").unlink()  # same number of images, other layout
    write(tmp_path / "img" / "9.png", encode(".png", bgr_image(40, 48, seed=9)))
    scan_project(p, workers=1)
    index_before = (p.root / "cache" / "u8_32.json").read_bytes()
    child = run_python(kill_on_open(".u8_32.json.") + _BUILD, args=[str(p.root)])
    assert was_killed(child), child.stderr  # killed while creating the new index, after the new array was written
    assert (p.root / "cache" / "u8_32.json").read_bytes() == index_before
    assert len(list((p.root / "cache").glob("u8_32-*.npy"))) == 2  # the killed build's array is unused
    _assert_rows_match_files(p, 32)
    assert json.loads((p.root / "cache" / "u8_32.json").read_text())["ids"] == [r.id for r in p.store.images()]


def test_index_pointing_outside_the_cache_folder_is_ignored(tmp_path: Path) -> None:
    p = _project(tmp_path, 3)
    build_cache(p, 32, workers=1)
    idx = p.root / "cache" / "u8_32.json"
    meta = json.loads(idx.read_text())
    meta["file"] = "../../../../etc/passwd"
    idx.write_text(json.dumps(meta))
    _assert_rows_match_files(p, 32)  # rebuilt, not read from the named path
