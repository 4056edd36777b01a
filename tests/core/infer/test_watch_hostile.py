"""``predict --watch`` under careless and hostile use (issue 14): renamed frames, path spellings, two watchers,
outputs inside the input, wrong targets, ``--poll 0``, a stalling camera, and a property test of the whole.

The model is a small hand-built ONNX graph (tests/reliability/tiny_onnx.py); the watcher is driven poll by poll
with an explicit clock where timing matters, so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import csv
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sslinspect.errors import ConfigError
from sslinspect.infer.onnx_predictor import Predictor
from sslinspect.infer.watch import Watcher, state_path
from sslinspect.infer.watch_state import Identity
from tests.conftest import REPO, run_cli, subprocess_env
from tests.reliability import tiny_onnx


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    return Predictor(tiny_onnx.model(tmp_path_factory.mktemp("model") / "m.onnx"), device="cpu")


def _rows(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(out.read_text().splitlines())) if out.exists() else []


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, timeout=timeout)


def _camera_write(path: Path, value: int, width: int = tiny_onnx.SIZE) -> None:
    """Write a frame the way cameras do: a hidden temporary file, renamed into place."""
    tmp = path.with_name(f".{path.name}.part")
    tiny_onnx.image(tmp, value, width)  # another width: a frame whose identity cannot collide with an earlier one
    tmp.replace(path)


def _settle(*watchers: Watcher, start: float = 100.0, rounds: int = 4) -> float:
    """Poll until nothing is pending (the clock jumps past the settle time between rounds)."""
    now = start
    for _ in range(rounds):
        for w in watchers:
            w.poll(now)
        now += 10.0
    return now


def test_a_new_frame_renamed_over_a_scored_name_is_scored(predictor: Predictor, tmp_path: Path) -> None:
    cam, out = tmp_path / "cam", tmp_path / "r.csv"
    cam.mkdir()
    _camera_write(cam / "frame.png", 10)
    w = Watcher(predictor, cam, out)
    _settle(w)
    _camera_write(cam / "frame.png", 250)  # same name, new frame (it used to be ignored: the state kept the path)
    _settle(w, start=200)
    w.close()
    assert [r["decision"] for r in _rows(out)] == ["OK", "NG"]


def test_the_same_folder_spelled_two_ways_is_scored_once(
    predictor: Predictor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cam, out = tmp_path / "cam", tmp_path / "r.csv"
    cam.mkdir()
    for i in range(3):
        _camera_write(cam / f"{i}.png", 20 + i)
    monkeypatch.chdir(tmp_path)
    first = Watcher(predictor, Path("cam"), Path("r.csv"))
    _settle(first)
    first.close()
    (tmp_path / "link").symlink_to(cam)
    second = Watcher(predictor, tmp_path / "link", out)  # `/abs/link` → the same folder
    _settle(second)
    second.close()
    assert len(_rows(out)) == 3
    assert {Path(r["path"]).parent for r in _rows(out)} == {cam.resolve()}


def test_a_folder_named_with_glob_characters_is_that_folder(predictor: Predictor, tmp_path: Path) -> None:
    """`--watch 'line[3]'` used to watch `line3` (or say "no file matches this pattern")."""
    tiny_onnx.image(tmp_path / "line[3]" / "real.png")
    tiny_onnx.image(tmp_path / "line3" / "decoy.png")
    w = Watcher(predictor, tmp_path / "line[3]", tmp_path / "r.csv")
    _settle(w)
    w.close()
    assert [Path(r["path"]).name for r in _rows(tmp_path / "r.csv")] == ["real.png"]


def test_a_frame_moved_or_linked_within_the_folder_is_not_scored_again(predictor: Predictor, tmp_path: Path) -> None:
    cam, out = tmp_path / "cam", tmp_path / "r.csv"
    cam.mkdir()
    _camera_write(cam / "a.png", 30)
    w = Watcher(predictor, cam, out)
    _settle(w)
    (cam / "sorted").mkdir()
    (cam / "a.png").rename(cam / "sorted" / "a.png")
    os.link(cam / "sorted" / "a.png", cam / "hardlink.png")
    _settle(w, start=200)
    w.close()
    assert len(_rows(out)) == 1


def test_two_watcher_processes_on_one_output_write_each_row_once(tmp_path: Path) -> None:
    """The issue's probe: two `predict --watch` on one --out wrote 74 rows for 37 files."""
    model = tiny_onnx.model(tmp_path / "m.onnx")
    cam, out = tmp_path / "cam", tmp_path / "r.csv"
    for i in range(37):
        tiny_onnx.image(cam / f"{i:02d}.png", i)
    args = ["predict", str(model), "--watch", str(cam), "--out", str(out), "--poll", "0.05", "--idle-exit", "1"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "sslinspect", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(),
            cwd=REPO,
        )
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    rows = _rows(out)
    assert len(rows) == 37 and len({r["path"] for r in rows}) == 37


@pytest.mark.parametrize(
    ("target", "extra", "message"),
    [
        ("missing", [], "missing: no such folder to watch"),
        ("file.png", [], "file.png: not a folder (--watch takes the folder the camera writes to)"),
        ("cam", ["--heatmaps", "cam/maps"], "cam/maps: the heatmaps folder must not be inside the watched folder"),
        ("cam", ["--poll", "0"], "argument --poll: must be > 0, got '0'"),
        ("cam", ["--poll", "-1"], "argument --poll: must be > 0, got '-1'"),
        ("cam", ["--idle-exit", "-1"], "argument --idle-exit: must be ≥ 0, got '-1'"),
    ],
)
def test_wrong_watch_targets_exit_2_with_one_line(tmp_path: Path, target: str, extra: list[str], message: str) -> None:
    """They used to exit 0 silently, wait forever, busy-loop (`--poll 0`) or feed heatmaps back in."""
    model = tiny_onnx.model(tmp_path / "m.onnx")
    (tmp_path / "cam").mkdir()
    tiny_onnx.image(tmp_path / "file.png")
    extra = [str(tmp_path / e) if e.startswith("cam/") else e for e in extra]
    r = _cli(
        "predict", str(model), "--watch", str(tmp_path / target), "--out", str(tmp_path / "r.csv"), "--idle-exit",
        "1", *extra,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    assert message in errors[0]


def test_output_inside_the_watched_folder_is_refused(predictor: Predictor, tmp_path: Path) -> None:
    (tmp_path / "cam").mkdir()
    with pytest.raises(ConfigError, match="the output must not be inside the watched folder"):
        Watcher(predictor, tmp_path / "cam", tmp_path / "cam" / "r.csv")


def test_a_camera_stalling_mid_file_is_scored_once_without_an_error(predictor: Predictor, tmp_path: Path) -> None:
    """The issue's probe: a 1.2 s stall mid-file gave two error records and exit 1, then the frame was scored."""
    cam, out = tmp_path / "cam", tmp_path / "r.jsonl"
    cam.mkdir()
    data = tiny_onnx.image(tmp_path / "whole.png", 200).read_bytes()
    frame = cam / "frame.png"
    frame.write_bytes(data[: len(data) // 2])  # the camera stalls here
    w = Watcher(predictor, cam, out, settle_s=2.0)
    for now in (0.0, 0.4, 0.8, 1.2):  # stands still over two polls: read, unreadable, held back
        w.poll(now)
    assert w.busy and not out.read_text()
    with frame.open("ab") as fh:  # the camera resumes
        fh.write(data[len(data) // 2 :])
    for now in (1.6, 2.0, 2.4, 6.0):
        w.poll(now)
    w.close()
    lines = out.read_text().splitlines()
    assert len(lines) == 1 and '"decision": "NG"' in lines[0] and "error" not in lines[0]
    assert w.result.failed == [] and w.result.processed == 1


def test_a_frame_that_stays_broken_is_recorded_failed_once(predictor: Predictor, tmp_path: Path) -> None:
    cam, out = tmp_path / "cam", tmp_path / "r.jsonl"
    cam.mkdir()
    (cam / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30))
    w = Watcher(predictor, cam, out, settle_s=2.0)
    for now in (0.0, 0.5, 1.0, 2.0, 3.5, 5.0, 9.0):
        w.poll(now)
    w.close()
    assert len(out.read_text().splitlines()) == 1 and '"error"' in out.read_text()
    assert [p for p, _ in w.result.failed] == [str(cam / "broken.png")]
    restarted = Watcher(predictor, cam, out, settle_s=2.0)
    _settle(restarted)
    restarted.close()
    assert restarted.result.failed == [] and len(out.read_text().splitlines()) == 1


# -- the property: any interleaving of camera writes, partial writes, renames, deletes, restarts, two watchers
NAMES = ("a.png", "b.png", "sub/c.png")
OPS = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(NAMES)),
    st.tuples(st.just("partial"), st.sampled_from(NAMES)),
    st.tuples(st.just("finish"), st.sampled_from(NAMES)),
    st.tuples(st.just("move"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
    st.tuples(st.just("delete"), st.sampled_from(NAMES)),
    st.tuples(st.just("poll"), st.sampled_from((0, 1))),
    st.tuples(st.just("poll"), st.sampled_from((0, 1)), st.just("twice")),  # a frame standing still: scored
    st.tuples(st.just("restart"), st.sampled_from((0, 1))),
)


class _Camera:
    """The folder and what the test knows about each file in it: complete frames and partial ones."""

    def __init__(self, root: Path) -> None:
        self.root, self.version = root, 0
        self.complete: set[Identity] = set()
        self.partial: dict[str, bytes] = {}  # name → the bytes still to come

    def apply(self, op: tuple[object, ...]) -> None:
        kind, name = op[0], str(op[1])
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind in ("write", "partial"):
            self.version += 1
            _camera_write(path, 40 + 3 * self.version, width=tiny_onnx.SIZE + self.version)
            self.partial.pop(name, None)
            if kind == "partial":  # a frame written in place, stalled half-way
                data = path.read_bytes()
                path.unlink()
                path.write_bytes(data[: len(data) // 2])
                self.partial[name] = data[len(data) // 2 :]
        elif kind == "finish" and name in self.partial:
            with path.open("ab") as fh:
                fh.write(self.partial.pop(name))
        elif kind == "move" and path.exists() and op[2] != name:
            target = self.root / str(op[2])
            target.parent.mkdir(parents=True, exist_ok=True)
            path.replace(target)
            self.partial.pop(str(op[2]), None)
            if name in self.partial:
                self.partial[str(op[2])] = self.partial.pop(name)
        elif kind == "delete" and path.exists():
            path.unlink()
            self.partial.pop(name, None)
        for n in NAMES:
            ident = Identity.of(self.root / n)
            if ident is not None and n not in self.partial:
                self.complete.add(ident)


def _check_exactly_once(camera: _Camera, out: Path) -> None:
    with sqlite3.connect(state_path(out)) as con:
        rows = con.execute("SELECT path, dev, ino, size, mtime_ns, status FROM frames").fetchall()
    ok = [Identity(*r[1:5]) for r in rows if r[5] == "ok"]
    failed = {Identity(*r[1:5]) for r in rows if r[5] == "failed"}
    assert not [i for i, n in Counter(ok).items() if n > 1], "a frame was scored twice"
    assert set(ok) <= camera.complete, "a partial frame was scored"
    assert not failed & camera.complete, "a complete frame was recorded as failed"
    written = _rows(out)  # scored rows, plus one row with an `error` per frame recorded as failed (as predict does)
    assert sorted(r["path"] for r in written if not r.get("error")) == sorted(r[0] for r in rows if r[5] == "ok"), (
        "rows lost or doubled"
    )
    assert sorted(r["path"] for r in written if r.get("error")) == sorted(r[0] for r in rows if r[5] == "failed")
    for name in NAMES:  # after settling, every frame in the folder has its one record
        ident = Identity.of(camera.root / name)
        if ident is not None:
            assert ident in (failed if name in camera.partial else set(ok)), f"{name} was never handled"


def _run_interleaving(predictor: Predictor, root: Path, ops: list[tuple[object, ...]]) -> None:
    cam, out = root / "cam", root / "out" / "r.csv"
    cam.mkdir(parents=True)
    (root / "link").symlink_to(cam)
    folders = (cam, root / "link")  # the second watcher spells the folder another way
    camera = _Camera(cam)
    watchers = [Watcher(predictor, folders[i], out, settle_s=3.0) for i in (0, 1)]
    now = 0.0
    try:
        for op in ops:
            now += 1.0
            if op[0] == "poll":
                for _ in range(len(op) - 1):
                    watchers[int(str(op[1]))].poll(now)
                    now += 1.0
            elif op[0] == "restart":
                i = int(str(op[1]))
                watchers[i].close()
                watchers[i] = Watcher(predictor, folders[i], out, settle_s=3.0)
            else:
                camera.apply(op)
        _settle(*watchers, start=now + 1.0)
    finally:
        for w in watchers:
            w.close()
    _check_exactly_once(camera, out)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, max_size=30))
@example(ops=[("write", "b.png"), ("poll", 0, "twice"), ("move", "b.png", "a.png")])  # found by the long variant
@example(ops=[("partial", "a.png"), ("poll", 0, "twice"), ("poll", 1, "twice"), ("finish", "a.png")])
@example(ops=[("write", "a.png"), ("poll", 0, "twice"), ("restart", 0), ("write", "a.png"), ("poll", 1, "twice")])
def test_each_completed_frame_is_scored_exactly_once(
    predictor: Predictor, tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[object, ...]]
) -> None:
    _run_interleaving(predictor, tmp_path_factory.mktemp("watch"), ops)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, max_size=80))
def test_each_completed_frame_is_scored_exactly_once_long(
    predictor: Predictor, tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[object, ...]]
) -> None:
    _run_interleaving(predictor, tmp_path_factory.mktemp("watch"), ops)
