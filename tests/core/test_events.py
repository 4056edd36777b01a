"""Events: JSON-lines encoding, strict decoding of what a killed or foreign process may leave, run folders."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sslinspect.errors import Cancelled
from sslinspect.events import (
    EVENT_TYPES,
    Artifact,
    Event,
    Finished,
    JsonlReporter,
    Log,
    Metric,
    Progress,
    Started,
    decode_event,
    encode_event,
    null_reporter,
)
from sslinspect.runs import open_run, read_events, read_status

EVENTS: list[Event] = [
    Started(stage="pretrain", run_id="r1", total_steps=10),
    Progress(stage="scan", step=3, total=9, message="ünïcode ✓"),
    Metric(stage="pretrain", name="loss", value=0.25, epoch=1, step=4),
    Metric(stage="pretrain", name="loss", value=math.nan),
    Artifact(kind="checkpoint", path="runs/pretrain/r1/checkpoints/last.pt"),
    Log(level="WARNING", message="a.png: truncated PNG (file ends early)"),
    Finished(stage="export", status="failed", error_type="ExportError", error_message="x.onnx: parity"),
]


@pytest.mark.parametrize("event", EVENTS)
def test_encode_decode_roundtrip(event: Event) -> None:
    line = encode_event(event)
    assert "\n" not in line
    back = decode_event(line)
    assert type(back) is type(event)
    if isinstance(event, Metric) and math.isnan(event.value):
        assert isinstance(back, Metric) and math.isnan(back.value)
    else:
        assert back == event


@pytest.mark.parametrize(
    "line",
    [
        '{"type": "Progress", "stage": "scan", "st',  # torn by a kill
        '{"type": "Metric", "stage": "pretrain"}',  # fields missing
        '{"type": "Metric", "stage": "p", "name": "loss", "value": "high"}',
        '{"type": "Progress", "stage": "s", "step": true, "total": 3}',
        '{"type": "Finished", "stage": "s", "status": "exploded"}',
        '{"type": "Log", "level": 3, "message": "x"}',
        '{"type": "Nope"}',
        "[1, 2]",
        "null",
        "[" * 50_000,
    ],
)
def test_bad_lines_raise_value_error(line: str) -> None:
    with pytest.raises(ValueError):
        decode_event(line)


def test_unknown_fields_from_a_newer_version_are_ignored() -> None:
    assert decode_event('{"type": "Log", "level": "INFO", "message": "m", "color": "red"}') == Log(
        level="INFO", message="m"
    )


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200) | st.builds(json.dumps, st.dictionaries(st.text(max_size=10), st.integers() | st.text())))
def test_any_line_decodes_or_raises_value_error(line: str) -> None:
    try:
        event = decode_event(line)
    except ValueError:
        return
    assert type(event) in EVENT_TYPES.values()


def test_jsonl_reporter_writes_one_flushed_line_per_event() -> None:
    buf = io.StringIO()
    rep = JsonlReporter(buf)
    for e in EVENTS:
        rep(e)
    lines = buf.getvalue().splitlines()
    assert len(lines) == len(EVENTS) and all(json.loads(ln)["type"] for ln in lines)


def test_run_folder_records_start_finish_and_status(tmp_path: Path) -> None:
    run_dir = tmp_path / "r1"
    with open_run("pretrain", run_dir, {"a": 1}, report=null_reporter) as run:
        run.report(Log(level="INFO", message="hello"))
    assert [type(e).__name__ for e in read_events(run_dir)] == ["Started", "Log", "Finished"]
    assert read_status(run_dir)["state"] == "ok"
    with pytest.raises(Cancelled), open_run("pretrain", tmp_path / "r2", {}, report=null_reporter):
        raise Cancelled("stop")
    assert read_status(tmp_path / "r2")["state"] == "cancelled"
    assert read_events(tmp_path / "r2")[-1] == Finished(
        stage="pretrain", status="cancelled", error_type="Cancelled", error_message="stop"
    )


def test_resumed_run_after_a_torn_last_line_keeps_every_new_event(tmp_path: Path) -> None:
    run_dir = tmp_path / "r1"
    with open_run("pretrain", run_dir, {}, report=null_reporter):
        pass
    with (run_dir / "events.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"type": "Metric", "stage": "pretrain", "na')  # the killed process's last, torn line
    with open_run("pretrain", run_dir, {}, report=null_reporter, resume=True):
        pass
    kinds = [type(e).__name__ for e in read_events(run_dir)]
    assert kinds == ["Started", "Finished", "Started", "Finished"]


def test_status_of_a_killed_run_reads_interrupted(tmp_path: Path) -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(child.stdout)
    with open_run("pretrain", tmp_path / "r", {}, report=null_reporter) as run:
        assert read_status(run.dir)["state"] == "running"  # this process is alive
        run.set_status("running", pid=dead_pid)  # as if the run's process had been killed
        assert read_status(run.dir)["state"] == "interrupted"
        run.set_status("running", pid=os.getpid())
    assert read_status(tmp_path / "nowhere") == {"state": "unknown"}
