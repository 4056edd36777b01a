"""The training loop through ``api.pretrain`` on real images: cancel, pause, time budget, resume, health events."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from sslinspect import api
from sslinspect.cancel import EventToken
from sslinspect.config import PretrainConfig
from sslinspect.errors import Cancelled, CheckpointError
from sslinspect.events import CollectingReporter, Event, Finished, Log, Metric, Progress
from sslinspect.model.checkpoint import load_checkpoint
from sslinspect.project import Project
from sslinspect.runs import CHECKPOINT, read_events
from tests.core.train.conftest import label_images

STEPS_PER_EPOCH = 36 // 8  # tiny folder: 36 images, batch 8


class CancelAfter:
    """A reporter that cancels ``token`` once a Progress event reports ``steps`` steps done."""

    def __init__(self, token: EventToken, steps: int) -> None:
        self.token, self.steps = token, steps
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, Progress) and event.stage == "pretrain" and event.step >= self.steps:
            self.token.cancel()


class PauseForPolls:
    """Paused from the first check on, released after the loop has polled it ``polls`` more times while paused."""

    def __init__(self, polls: int) -> None:
        self.left = polls
        self.polls_while_paused = 0

    def is_cancelled(self) -> bool:
        return False

    def is_paused(self) -> bool:
        if self.left > 0:
            self.left -= 1
            self.polls_while_paused += 1
            return True
        return False


def logs_at(events: list[Event], message: str) -> int:
    return next(k for k, e in enumerate(events) if isinstance(e, Log) and e.message == message)


def metric_names(events: list[Event]) -> set[str]:
    return {e.name for e in events if isinstance(e, Metric)}


def test_cancel_after_k_steps_keeps_checkpoint_and_finishes_cancelled(
    tiny_project: Project, tiny_pretrain: PretrainConfig
) -> None:
    token = EventToken()
    reporter = CancelAfter(token, 3)
    cfg = replace(tiny_pretrain, epochs=3, log_every=1)
    with pytest.raises(Cancelled, match="cancelled after 0 epoch"):
        api.pretrain(tiny_project, cfg, report=reporter, cancel=token)
    run = tiny_project.latest("pretrain")
    assert run is not None
    ckpt = load_checkpoint(run / CHECKPOINT)
    assert ckpt["epochs_done"] == 0  # the interrupted epoch restarts on resume
    steps = [e.step for e in reporter.events if isinstance(e, Progress) and e.stage == "pretrain"]
    assert max(steps) == 3
    last = read_events(run)[-1]
    assert isinstance(last, Finished) and last.status == "cancelled"
    assert json.loads((run / "status.json").read_text())["state"] == "cancelled"


def test_pause_holds_the_loop_until_released(tiny_project: Project, tiny_pretrain: PretrainConfig) -> None:
    token = PauseForPolls(3)
    reporter = CollectingReporter()
    result = api.pretrain(tiny_project, tiny_pretrain, report=reporter, cancel=token)
    assert result.status == "completed" and result.steps == STEPS_PER_EPOCH
    logs = [e.message for e in reporter.events if isinstance(e, Log)]
    assert "paused" in logs and "resumed" in logs
    i, j = (logs_at(reporter.events, m) for m in ("paused", "resumed"))
    assert i < j and not any(isinstance(e, Progress | Metric) for e in reporter.events[i:j])
    assert token.polls_while_paused == 3


def test_time_budget_stops_with_a_checkpoint(tiny_project: Project, tiny_pretrain: PretrainConfig) -> None:
    cfg = replace(tiny_pretrain, epochs=5, max_minutes=1e-6)
    reporter = CollectingReporter()
    result = api.pretrain(tiny_project, cfg, report=reporter)
    assert result.status == "time_budget" and result.steps == 1 and result.epochs_done == 0
    assert (tiny_project.root / result.checkpoint).is_file()
    assert any(isinstance(e, Log) and "time budget" in e.message for e in reporter.events)


def test_resume_after_cancel_equals_an_uninterrupted_run(tiny_project: Project, tiny_pretrain: PretrainConfig) -> None:
    cfg = replace(tiny_pretrain, epochs=2, log_every=1)
    whole = api.pretrain(tiny_project, cfg)
    token = EventToken()
    with pytest.raises(Cancelled):  # cancelled on the last step of epoch 1: the epoch counts
        api.pretrain(tiny_project, cfg, report=CancelAfter(token, STEPS_PER_EPOCH), cancel=token)
    stopped = load_checkpoint(tiny_project.latest("pretrain") / CHECKPOINT)  # type: ignore[operator]
    assert stopped["epochs_done"] == 1 and stopped["optimizer_state"]["state"]
    resumed = api.pretrain(tiny_project, cfg, resume=True)
    assert resumed.run_dir != whole.run_dir and resumed.epochs_done == 2 and resumed.steps == 2 * STEPS_PER_EPOCH
    a = load_checkpoint(tiny_project.root / whole.checkpoint)
    b = load_checkpoint(tiny_project.root / resumed.checkpoint)
    for key, value in a["model_state"].items():
        torch.testing.assert_close(b["model_state"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    exp_avg = [s["exp_avg"] for s in a["optimizer_state"]["state"].values()]
    exp_avg_b = [s["exp_avg"] for s in b["optimizer_state"]["state"].values()]
    for x, y in zip(exp_avg, exp_avg_b, strict=True):
        torch.testing.assert_close(y, x, rtol=1e-5, atol=1e-7)
    assert a["last_loss"] == pytest.approx(b["last_loss"], rel=1e-5)


def test_health_metrics_are_written_to_events(tiny_project: Project, tiny_pretrain: PretrainConfig) -> None:
    result = api.pretrain(tiny_project, tiny_pretrain)
    events = read_events(tiny_project.root / result.run_dir)
    names = metric_names(events)
    want = {"loss", "lr", "images_per_s", "data_wait", "eta_s", "emb_std", "eff_rank", "alignment", "uniformity"}
    assert want | {"epoch_loss"} <= names
    assert "knn_acc" not in names  # no labels yet
    assert any(isinstance(e, Log) and "k-NN monitor off" in e.message for e in events)
    values = {e.name: e.value for e in events if isinstance(e, Metric)}
    assert 0 < values["emb_std"] <= 1.5 and 1 <= values["eff_rank"] <= 8
    assert 0 <= values["alignment"] <= 4 and values["uniformity"] <= 0 and 0 <= values["data_wait"] <= 1


def test_knn_monitor_reports_accuracy_once_labelled(
    tiny_project: Project, tiny_pretrain: PretrainConfig, tiny_image_folder: Path
) -> None:
    label_images(tiny_project, tiny_image_folder, per_class=4)
    cfg = replace(tiny_pretrain, epochs=2)
    reporter = CollectingReporter()
    api.pretrain(tiny_project, cfg, report=reporter)
    knn = [e for e in reporter.events if isinstance(e, Metric) and e.name == "knn_acc"]
    assert [e.epoch for e in knn] == [1, 2]
    assert all(e.value > 0.6 for e in knn)  # 3 colour/shape classes: chance is 1/3


def test_a_cuda_error_while_resuming_keeps_its_own_message(
    tiny_project: Project, tiny_pretrain: PretrainConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.pretrain(tiny_project, tiny_pretrain)
    from sslinspect.methods.simclr import SimCLR

    def fault(*args: object, **kwargs: object) -> None:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(SimCLR, "forward", fault)
    with pytest.raises(RuntimeError, match=r"^CUDA error: an illegal memory access") as err:
        api.pretrain(tiny_project, replace(tiny_pretrain, epochs=2), resume=True)
    assert not isinstance(err.value, CheckpointError)  # not "cannot resume": the checkpoint was fine


def test_time_left_follows_the_time_budget_not_the_epochs(tiny_project: Project, tiny_pretrain: PretrainConfig) -> None:
    """Issue 12: the Quick-check preset (a 3-minute budget) showed "24 min left" from its 200 epochs."""
    budget_s = 0.6
    cfg = replace(tiny_pretrain, epochs=1000, max_minutes=budget_s / 60, log_every=1)
    reporter = CollectingReporter()
    result = api.pretrain(tiny_project, cfg, report=reporter)
    assert result.status == "time_budget"
    etas = [e.value for e in reporter.events if isinstance(e, Metric) and e.name == "eta_s"]
    progress = [e for e in reporter.events if isinstance(e, Progress) and e.stage == "pretrain"]
    assert etas and max(etas) <= budget_s  # 1000 epochs would take far longer
    assert all("time limit; 1000 epochs would take" in e.message for e in progress)
    assert all(e.total < 1000 * STEPS_PER_EPOCH for e in progress)  # the bar ends where the budget does


def test_learning_rate_anneals_within_the_time_budget(tiny_project: Project, tiny_pretrain: PretrainConfig) -> None:
    """A budget that ends the run long before its epochs still decays the learning rate (cosine over the budget),
    instead of stopping at the peak of a 1000-epoch schedule; the checkpoint records how far the schedule got."""
    cfg = replace(tiny_pretrain, epochs=1000, warmup_epochs=0, max_minutes=2.0 / 60, log_every=1)
    reporter = CollectingReporter()
    result = api.pretrain(tiny_project, cfg, report=reporter)
    assert result.status == "time_budget"
    lrs = [e.value for e in reporter.events if isinstance(e, Metric) and e.name == "lr"]
    assert len(lrs) >= 3
    assert all(b <= a for a, b in itertools.pairwise(lrs))  # never rises again
    assert lrs[-1] < 0.5 * lrs[0]  # the 1000-epoch cosine alone would still be at ~100 %
    ckpt = load_checkpoint(tiny_project.root / result.checkpoint)
    assert ckpt["time_progress"] == pytest.approx(1.0)


def test_the_defect_aware_method_leaves_labelled_defects_out_of_its_training(
    tiny_project: Project, tiny_pretrain: PretrainConfig, tiny_image_folder: Path
) -> None:
    """It teaches its images as normal: a labelled defect taught as normal would be missed. Good and unlabelled
    images stay."""
    csv = tiny_image_folder.parent / "labels.csv"
    names = {"disc": "good", "square": "scratch", "stripe": "stain"}
    rows = [f"{tiny_image_folder.name}/{k}/{k}_{i:02d}.png,{n}" for k, n in names.items() for i in range(4)]
    csv.write_text("path,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    assert api.import_labels(tiny_project, csv).imported == 12
    reporter = CollectingReporter()
    api.pretrain(tiny_project, replace(tiny_pretrain, method="synthdefect"), report=reporter)
    started = next(e.message for e in reporter.events if isinstance(e, Log) and e.message.startswith("pretraining"))
    assert "on 28 images (8 labelled defects left out" in started
    ckpt = load_checkpoint(tiny_project.latest("pretrain") / CHECKPOINT)  # type: ignore[operator]
    assert ckpt["images"] == 28
    reporter = CollectingReporter()
    api.pretrain(tiny_project, tiny_pretrain, report=reporter)  # a global method learns from every image
    started = next(e.message for e in reporter.events if isinstance(e, Log) and e.message.startswith("pretraining"))
    assert "on 36 images," in started
