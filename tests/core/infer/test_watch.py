"""``predict --watch``: each new file once, across a killed process and a restart; bad frames do not stop it."""

from __future__ import annotations

import csv
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sslinspect.infer.watch import WatchState, state_path
from sslinspect.infer.watch_state import FrameRow, Identity
from tests.conftest import REPO, subprocess_env


def _wait_for(cond: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 90) -> None:
    """Wait until ``cond()`` holds (a condition, not a duration); fail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def _rows(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(out.read_text().splitlines())) if out.exists() else []


def _watch(model: Path, folder: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "sslinspect", "predict", str(model), "--watch", str(folder), "--out", str(out)]
    return subprocess.Popen(
        [*cmd, "--poll", "0.1", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
        cwd=REPO,
    )


def test_watch_survives_a_kill_and_never_reprocesses(trained_project: Path, demo_data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = trained_project / "exports" / "model" / "model.onnx"
    camera, out = tmp_path / "camera", tmp_path / "results.csv"
    camera.mkdir()
    images = sorted(demo_data.test_dir.glob("*.png"))
    for p in images[:3]:
        shutil.copy(p, camera / p.name)
    first = _watch(model, camera, out)
    try:
        _wait_for(lambda: len(_rows(out)) == 3, first)
    finally:
        first.kill()  # no clean shutdown: like a power cut
        first.communicate()
    with out.open("a") as fh:
        fh.write(str(camera / "torn-row-of-a-killed-append.png") + ",goo")  # a half-written tail
    for p in images[3:5]:
        shutil.copy(p, camera / p.name)
    (camera / "bad_frame.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    second = _watch(model, camera, out, "--idle-exit", "1", "--settle", "0.3")
    _, err = second.communicate(timeout=120)
    assert second.returncode == 1, err  # the bad frame is a failure, listed
    assert f"error: {camera / 'bad_frame.png'}" in err
    rows = _rows(out)
    frames = [str(camera / p.name) for p in images[:5]]
    assert sorted(r["path"] for r in rows) == sorted([*frames, str(camera / "bad_frame.png")])
    assert all(r["decision"] in ("OK", "review", "NG") and not r["error"] for r in rows if r["path"] in frames)
    assert [r["error"] != "" for r in rows if r["path"] not in frames] == [True]  # the bad frame's row, as in JSONL
    with sqlite3.connect(state_path(out)) as con:
        status = dict(con.execute("SELECT path, status FROM frames").fetchall())
    assert status[str(camera / "bad_frame.png")] == "failed" and len(status) == 6
    third = _watch(model, camera, out, "--idle-exit", "0.5")
    stdout, err = third.communicate(timeout=120)
    assert third.returncode == 0, err
    assert "0 new image(s)" in stdout and "(6 known from earlier runs)" in stdout
    assert _rows(out) == rows  # nothing processed twice


def test_output_is_repaired_from_the_state(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    state = WatchState(state_path(out))
    ident = Identity(1, 1, 1, 1)
    state.record([FrameRow("a.png", ident, "ok", "", "a.png,1\r\n"), FrameRow("b.png", ident, "failed", "truncated")])
    assert state.sync_output(out, "path,x\r\n") == 1
    out.write_bytes(out.read_bytes() + b"c.png,2")  # a tail nobody recorded
    state.record([FrameRow("d.png", ident, "ok", "", "d.png,4\r\n")])
    state.sync_output(out, "path,x\r\n")
    state.close()
    assert out.read_text().splitlines() == ["path,x", "a.png,1", "d.png,4"]
