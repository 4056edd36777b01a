"""GUI test fixtures: offscreen Qt, isolated settings, a FakeJob replaying scripted events, fabricated run folders,
and an autouse guard that fails a test leaving a thread, thread-pool task or process running."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything creates a QApplication

import csv
import json
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QObject, QProcess, QSettings, QThread, QThreadPool, QTimer

from app.controller import AppController
from app.jobs.base import Job, JobStatus
from app.settings import Settings
from sslinspect import api
from sslinspect.events import Event, Finished, Metric, Progress, Started, encode_event


# -- the guard --------------------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def no_dangling_threads_or_processes(qapp: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail a test that leaves a QThread, a QThreadPool task or a QProcess running (napari's guard, plus QProcess)."""
    threads: list[weakref.ref[QThread]] = []
    procs: list[weakref.ref[QProcess]] = []
    thread_start, proc_start = QThread.start, QProcess.start

    def start_thread(self: QThread, *args: Any) -> None:
        threads.append(weakref.ref(self))
        thread_start(self, *args)

    def start_process(self: QProcess, *args: Any) -> None:
        procs.append(weakref.ref(self))
        proc_start(self, *args)

    monkeypatch.setattr(QThread, "start", start_thread)
    monkeypatch.setattr(QProcess, "start", start_process)
    yield
    pool = QThreadPool.globalInstance()
    # A worker that already delivered its result may still be returning from run(): allow it a moment.
    pool.waitForDone(2000)
    problems = []
    if pool.activeThreadCount():
        problems.append(f"{pool.activeThreadCount()} QThreadPool task(s) still running")
    problems += [f"QThread {t!r} still running" for ref in threads if (t := ref()) is not None and t.isRunning()]
    running = [p for ref in procs if (p := ref()) is not None and p.state() != QProcess.ProcessState.NotRunning]
    problems += [f"QProcess {p.program()} {' '.join(p.arguments()[:3])} still running" for p in running]
    for p in running:
        p.kill()
        p.waitForFinished(5000)
    pool.waitForDone(10_000)
    if problems:
        pytest.fail("left running after the test: " + "; ".join(problems))


@pytest.fixture(autouse=True)
def _no_torch_device_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pretrain page asks a child Python (with torch) for the device; GUI tests answer for it."""
    from app.jobs import device

    monkeypatch.setattr(device, "probe_device", lambda timeout=0: device.DeviceInfo("cpu (test)", False))


# -- the fake job -----------------------------------------------------------------------------------------------------
class FakeJob(Job):
    """Replays scripted events with a QTimer, as a worker would send them; then finishes with ``status``.

    ``before_finish`` runs just before the end (tests use it to write the files a real worker would write).
    """

    def __init__(
        self,
        command: list[str],
        stage: str,
        title: str,
        events: list[Event],
        *,
        status: JobStatus = "ok",
        interval_ms: int = 1,
        before_finish: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(stage, title)
        self.command = command
        self.events = list(events)
        self.final_status: JobStatus = status
        self.before_finish = before_finish
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._next)
        self._i = 0

    @property
    def can_pause(self) -> bool:
        return True

    def start(self) -> None:
        self._begin()
        self._timer.start()

    def _next(self) -> None:
        if self._paused:
            return
        if self._i < len(self.events):
            self._emit_event(self.events[self._i])
            self._i += 1
            return
        self._timer.stop()
        if self.before_finish is not None:
            self.before_finish()
        self._end(self.final_status, "scripted failure" if self.final_status == "failed" else "", "details")

    def cancel(self) -> None:
        super().cancel()
        if self.is_running():
            self._timer.stop()
            self._emit_event(Finished(stage=self.stage, status="cancelled"))
            self._end("cancelled", "cancelled")

    def wait(self, msecs: int) -> bool:
        return not self.is_running()


class FakeWorkers(QObject):
    """Replaces ``controller.job_factory``: scripts per command name, and a record of every job made."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: dict[str, dict[str, Any]] = {}
        self.jobs: list[FakeJob] = []

    def script(self, command: str, events: list[Event], **kwargs: Any) -> None:
        """Use ``events`` (and FakeJob options) for the next jobs running ``command``."""
        self.scripts[command] = {"events": events, **kwargs}

    def __call__(self, command: list[str], control: Path, stage: str, title: str) -> Job:
        spec = self.scripts.get(command[0], {"events": []})
        job = FakeJob(command, stage, title, **spec)
        self.jobs.append(job)
        return job


# -- fixtures ---------------------------------------------------------------------------------------------------------
@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings in a temporary INI file (never the user's)."""
    return Settings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))


@pytest.fixture
def controller(settings: Settings, tmp_path: Path) -> Iterator[AppController]:
    """A controller whose demo folder is temporary."""
    c = AppController(settings)
    c.demo_dir = tmp_path / "demo"
    yield c
    c.shutdown(5000)


@pytest.fixture
def fake_workers(controller: AppController) -> FakeWorkers:
    """Worker jobs replay scripts instead of running the CLI."""
    fw = FakeWorkers()
    controller.job_factory = fw
    return fw


@pytest.fixture
def window(controller: AppController, qtbot: Any) -> Iterator[Any]:
    """The main window (shown offscreen)."""
    from app.main_window import MainWindow

    w = MainWindow(controller)
    w.show()
    yield w
    w.shutdown()  # stops a job a failed test left running, so closing does not ask
    w.close()
    w.deleteLater()


@pytest.fixture
def scanned_project(tmp_path: Path, tiny_image_folder: Path) -> Path:
    """A project over 36 tiny images, scanned, with 2 labels."""
    root = tmp_path / "gui.sslproj"
    with api.create_project(root, images=[tiny_image_folder]) as p:
        api.scan_images(p)
        ids = [r.id for r in p.store.images()]
        p.add_classes(["disc"])
        p.store.set_label(ids[0], "disc")
        p.store.set_label(ids[20], "good")
    return root


def write_pretrain_run(root: Path, *, steps: int = 20, state: str = "ok") -> Path:
    """A pretraining run folder as the worker leaves it: events.jsonl, status.json, checkpoint, embedding map."""
    with api.open_project(root) as p:
        run = p.new_run_dir("pretrain", "simclr")
        ids = np.array([r.id for r in p.store.images()], np.int64)
        p.set_latest("pretrain", run)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.pt").write_bytes(b"not a real checkpoint")
    (run / "status.json").write_text(json.dumps({"state": state}), encoding="utf-8")
    events: list[Event] = [Started(stage="pretrain", run_id=run.name, total_steps=steps)]
    for s in range(1, steps + 1):
        events += [
            Metric(stage="pretrain", name="loss", value=5.0 - s * 0.1, step=s, epoch=1),
            Metric(stage="pretrain", name="lr", value=0.1, step=s, epoch=1),
        ]
    (run / "events.jsonl").write_text("".join(encode_event(e) + "\n" for e in events), encoding="utf-8")
    write_map(run / "embedding_map" / "latest.npz", ids)
    return run


def write_map(path: Path, ids: np.ndarray, epoch: int = 1) -> None:
    """An embedding-map snapshot file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    xy = np.random.default_rng(epoch).normal(size=(len(ids), 2)).astype(np.float32)
    with path.open("wb") as fh:
        np.savez(fh, ids=ids, xy=xy, epoch=np.array(epoch))


def write_fewshot_run(root: Path, *, classes: tuple[str, ...] = ("good", "disc")) -> Path:
    """A few-shot run folder as `sslinspect train` writes it (scores, metrics with CV report, embeddings)."""
    with api.open_project(root) as p:
        run = p.new_run_dir("fewshot", "simclr")
        ids = np.array([r.id for r in p.store.images()], np.int64)
        labels = p.store.labels()
        p.set_latest("fewshot", run)
    rng = np.random.default_rng(0)
    n = len(ids)
    anomaly = np.linspace(0.0, 1.0, n)[::-1].copy()  # image id order = most unusual first
    conf = np.linspace(0.5, 0.99, n)
    with (run / "scores.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id", "relpath", "anomaly_score", "label", "confidence", *[f"p_{c}" for c in classes]])
        for i, a, c in zip(ids.tolist(), anomaly, conf, strict=True):
            w.writerow([i, f"{i}.png", f"{a:.6f}", classes[0], f"{c:.5f}", f"{c:.5f}", f"{1 - c:.5f}"])
    cv = {
        "kind": "prototype",
        "folds": 2,
        "balanced_accuracy": 0.75,
        "accuracy": 0.8,
        "confusion": [[3, 1], [0, 2]],
        "per_class": {
            "good": {"precision": 1.0, "recall": 0.75, "f1": 0.86, "support": 4},
            "disc": {"precision": 0.67, "recall": 1.0, "f1": 0.8, "support": 2},
        },
        "oof_pred": [],
        "oof_proba": [],
    }
    metrics = {
        "classes": list(classes),
        "classifier": "prototype",
        "candidates": {"prototype": 0.75},
        "cv": cv,
        "threshold": 0.9,
        "threshold_percentile": 97.0,
        "anomaly_auroc_labelled": 1.0,
        "labelled": len(labels),
        "bank_size": n,
        "images": n,
        "dropped_classes": {},
    }
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    (run / "head.npz").write_bytes(b"")
    emb = rng.normal(size=(n, 16)).astype(np.float32)
    np.save(run / "embeddings.npy", emb / np.linalg.norm(emb, axis=1, keepdims=True))
    np.save(run / "embedding_ids.npy", ids)
    return run


def progress_events(stage: str, n: int) -> list[Event]:
    """``n`` Progress events of ``stage``."""
    return [Progress(stage=stage, step=i, total=n, message=f"step {i}") for i in range(1, n + 1)]


def write_stub_model(path: Path, *, size: int = 32, threshold: float = 0.45, passed: bool = True) -> Path:
    """A small real ONNX model with SSL Inspect's interface (uint8 NHWC in; probabilities, score, decision out) and
    its sidecar: the anomaly score is the mean brightness, so tests know what ONNX Runtime will answer."""
    import onnx
    from onnx import TensorProto, helper

    classes = ["good", "disc"]
    nodes = [
        helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["f", "axes"], ["m"], keepdims=0),
        helper.make_node("Div", ["m", "c255"], ["anomaly_score"]),
        helper.make_node("Unsqueeze", ["anomaly_score", "one"], ["s1"]),
        helper.make_node("Sub", ["c1", "s1"], ["g1"]),
        helper.make_node("Concat", ["g1", "s1"], ["probabilities"], axis=1),
        helper.make_node("GreaterOrEqual", ["anomaly_score", "threshold"], ["is_defect"]),
    ]
    inits = [
        helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3]),
        helper.make_tensor("c255", TensorProto.FLOAT, [], [255.0]),
        helper.make_tensor("one", TensorProto.INT64, [1], [1]),
        helper.make_tensor("c1", TensorProto.FLOAT, [], [1.0]),
    ]
    graph = helper.make_graph(
        nodes,
        "stub",
        [
            helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", size, size, 3]),
            helper.make_tensor_value_info("threshold", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("anomaly_score", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("is_defect", TensorProto.BOOL, ["N"]),
        ],
        inits,
    )
    meta = {
        "format": "sslinspect.onnx/1",
        "classes": classes,
        "threshold": threshold,
        "image_size": size,
        "input": {"name": "images"},
        "threshold_input": "threshold",
        "outputs": ["probabilities", "anomaly_score", "is_defect"],
        "precision": "fp32",
        "provenance": {"method": "simclr", "backbone": "tiny_cnn"},
    }
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    helper.set_model_props(model, {"sslinspect": json.dumps(meta)})
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    parity = {
        "images": 16,
        "max_abs_diff_probabilities": 1e-7,
        "max_abs_diff_anomaly_score": 2e-7,
        "decisions_agree": True,
        "atol": 0.001,
        "provider": "CPUExecutionProvider",
        "passed": passed,
    }
    path.with_suffix(".json").write_text(json.dumps({**meta, "sha256": "ab" * 32, "parity": parity}), encoding="utf-8")
    return path
