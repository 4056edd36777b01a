"""The terminal progress bar fits the terminal and shows rate and ETA; ``--method`` picks its own backbone."""

from __future__ import annotations

import argparse
import io

import pytest

from sslinspect.commands import _recommended_backbone
from sslinspect.config import PretrainConfig
from sslinspect.events import Progress
from sslinspect.progress import ProgressBar, render


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("columns", [40, 80, 132])
def test_bar_lines_never_reach_the_last_column(columns: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    now = [0.0]
    stream = _Tty()
    bar = ProgressBar(stream, clock=lambda: now[0])
    for step in range(0, 101, 10):
        now[0] = step / 5  # 5 steps per second
        bar(Progress(stage="pretrain", step=step, total=100, message="loss 4.1234 " + "x" * 200))
    lines = stream.getvalue().replace("\n", "\r").split("\r")
    drawn = [line for line in lines if line]
    assert drawn and all(len(line) == columns - 1 for line in drawn)
    assert "5.0/s" in drawn[-2] and "ETA 0:02" in drawn[-2]  # 10 steps left at 5/s
    assert stream.getvalue().endswith("\n")


def test_render_keeps_rate_and_eta_before_the_message() -> None:
    line = render("predict", 30, 120, "3 defect(s)", 12.0, 80)
    assert "25.0%" in line and "12.0/s" in line and "ETA 0:08" in line and "3 defect(s)" in line
    assert line.index("ETA") < line.index("defect")


def test_method_without_backbone_gets_its_recommended_one(caplog: pytest.LogCaptureFixture) -> None:
    cfg = PretrainConfig(method="mae")
    with caplog.at_level("INFO", logger="sslinspect"):
        chosen = _recommended_backbone(cfg, argparse.Namespace(backbone=None))
    assert chosen.backbone == "vit_small" and "recommended backbone vit_small" in caplog.text
    explicit = PretrainConfig(method="simclr", backbone="resnet50")
    assert _recommended_backbone(explicit, argparse.Namespace(backbone="resnet50")) == explicit
