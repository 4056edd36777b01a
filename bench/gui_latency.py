"""GUI responsiveness: event-loop stalls while a pretraining job streams events into the live plots, and the
embedding map / thumbnail grid with 100,000 points or images. Prints JSON (also written with ``--out``).

Stalls are measured with a QTimer heartbeat (every 5 ms): each gap beyond the interval is time the event loop could
not run. The same heartbeat runs first with the window idle (the baseline of this machine and run), then while

- ``stream``: a worker *process* writes pretraining events as JSON lines as fast as a real run reports them at its
  highest setting (every step; 9 metrics + progress per step, 50 steps/s) plus an embedding-map snapshot of 2,000
  points every 2 s; the app reads, decodes and plots them through the same ProcessJob / page code as a real run;
- ``real``: a real ``sslinspect pretrain`` worker (tiny CNN, 32 px, metrics every step) competes for the CPU.

    python bench/gui_latency.py                 # both, ~2 minutes
    python bench/gui_latency.py --modes stream --seconds 10
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("SSLINSPECT_THEME", "light")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PySide6 import __version__ as pyside_version  # noqa: E402
from PySide6.QtCore import QEventLoop, QPointF, QSettings, QTimer, qVersion  # noqa: E402
from PySide6.QtWidgets import QApplication, QComboBox, QLineEdit, QSpinBox  # noqa: E402

from app.controller import AppController  # noqa: E402
from app.jobs import ProcessJob  # noqa: E402
from app.main_window import MainWindow  # noqa: E402
from app.pages.pretrain_page import PretrainPage  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.theme import apply_theme  # noqa: E402
from app.widgets.embedding_map import EmbeddingMap  # noqa: E402
from app.widgets.image_grid import ImageGrid  # noqa: E402
from app.widgets.thumbnails import ThumbnailProvider  # noqa: E402
from bench.machine import describe as describe_machine  # noqa: E402

HEARTBEAT_MS = 5
METRICS = ("loss", "lr", "images_per_s", "data_wait", "emb_std", "eff_rank", "alignment", "uniformity", "knn_acc")

# The stand-in worker: the same JSON lines a pretraining worker writes, at a fixed rate, plus map snapshots.
STREAM_CODE = r"""
import json, sys, time
import numpy as np
from pathlib import Path
from sslinspect.events import Artifact, Finished, Metric, Progress, Started, encode_event
root, run, seconds, rate, ids = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
ids = np.load(ids)
names = sys.argv[6].split(",")
out = sys.stdout
def emit(e):
    out.write(encode_event(e) + "\n")
emit(Started(stage="pretrain", run_id=run, total_steps=int(seconds * rate)))
t0, step, last_map = time.monotonic(), 0, 0.0
rng = np.random.default_rng(0)
while time.monotonic() - t0 < seconds:
    step += 1
    for n in names:
        emit(Metric(stage="pretrain", name=n, value=float(1 / step + rng.random() * 0.01), epoch=1, step=step))
    emit(Progress(stage="pretrain", step=step, total=int(seconds * rate), message=f"epoch 1/1 loss {1/step:.4f}"))
    out.flush()
    now = time.monotonic() - t0
    if now - last_map >= 2.0:
        last_map = now
        path = root / "runs" / "pretrain" / run / "embedding_map" / f"epoch_{step:04d}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            np.savez(fh, ids=ids, xy=rng.normal(size=(len(ids), 2)).astype("float32"), epoch=np.array(step))
        emit(Artifact(kind="embedding_map", path=str(path.relative_to(root))))
        out.flush()
    time.sleep(max(0.0, step / rate - (time.monotonic() - t0)))
emit(Finished(stage="pretrain", status="ok"))
"""


class StreamJob(ProcessJob):
    """A ProcessJob whose child is the stand-in event stream instead of ``python -m sslinspect``."""

    def __init__(self, script_args: list[str], control: Path) -> None:
        super().__init__([], control_dir=control, stage="pretrain", title="Pretraining (event stream)")
        self.script_args = script_args

    def arguments(self) -> list[str]:
        return ["-c", STREAM_CODE, *self.script_args]


def pump(app: QApplication, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)


class Heartbeat:
    """Records the gaps between ticks of a precise QTimer."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self._last = 0.0
        self.timer = QTimer()
        self.timer.setTimerType(self.timer.timerType().PreciseTimer)
        self.timer.setInterval(HEARTBEAT_MS)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last:
            self.gaps.append((now - self._last) * 1000)
        self._last = now

    def run(self, until: Callable[[], bool], timeout: float) -> dict[str, float]:
        """Run a real event loop (as the app's) until ``until()`` or ``timeout``; return the stall statistics."""
        self.gaps, self._last = [], 0.0
        loop = QEventLoop()
        t0 = time.monotonic()
        check = QTimer()
        check.setInterval(100)
        check.timeout.connect(lambda: loop.quit() if until() or time.monotonic() - t0 > timeout else None)
        check.start()
        self.timer.start()
        loop.exec()
        self.timer.stop()
        check.stop()
        stalls = np.maximum(np.array(self.gaps) - HEARTBEAT_MS, 0.0)
        return {
            "seconds": round(time.monotonic() - t0, 1),
            "ticks": len(self.gaps),
            "stall_p50_ms": round(float(np.percentile(stalls, 50)), 2),
            "stall_p99_ms": round(float(np.percentile(stalls, 99)), 2),
            "stall_max_ms": round(float(stalls.max()), 2),
        }


def make_project(tmp: Path) -> Path:
    from sslinspect import api
    from sslinspect.demo.dataset import generate_demo

    ds = generate_demo(tmp / "data", n_images=600, size=64, n_test_per_class=0, seed=0)
    root = tmp / "bench.sslproj"
    with api.create_project(root, images=[ds.unlabeled_dir]) as p:
        api.scan_images(p)
        api.import_labels(p, ds.labels_csv)
    return root


def stream_events(app: QApplication, window: MainWindow, ctl: AppController, root: Path, seconds: float) -> dict:
    page = window.pages[2]
    assert isinstance(page, PretrainPage)
    project = ctl.project
    assert project is not None
    ids_file = root / ".control" / "ids.npy"
    ids_file.parent.mkdir(exist_ok=True)
    np.save(ids_file, np.array([r.id for r in project.store.images()], np.int64)[:2000])
    run = project.new_run_dir("pretrain", "stream").name
    rate = 50.0
    job = StreamJob(
        [str(root), run, str(seconds), str(rate), str(ids_file), ",".join(METRICS)], root / ".control" / "s"
    )
    received = []
    job.event_received.connect(lambda e: received.append(1))
    page.plots.reset()
    ctl.start_job(job)
    res = Heartbeat().run(lambda: not job.is_running(), seconds + 60)
    loss = page.plots.plot_for("loss")
    assert loss is not None
    loss_points = len(loss.series_data(page.plots.series_for("loss"))[0])
    return {
        **res,
        "events": len(received),
        "events_per_s": round(len(received) / max(res["seconds"], 1e-9)),
        "loss_points_plotted": loss_points,
        "map_points": page.map.view.count,
        "status": job.status,
    }


def real_pretrain(app: QApplication, window: MainWindow, ctl: AppController, seconds: float) -> dict:
    page = window.pages[2]
    assert isinstance(page, PretrainPage)
    form = page.form
    page.preset.setCurrentIndex(1)
    cast(QComboBox, form.editor("backbone")).setCurrentText("tiny_cnn")
    cast(QSpinBox, form.editor("image_size")).setValue(32)
    cast(QSpinBox, form.editor("batch_size")).setValue(32)
    cast(QSpinBox, form.editor("epochs")).setValue(1000)
    cast(QLineEdit, form.editor("max_minutes")).setText(f"{seconds / 60:.3f}")
    received = []
    job = page.start()
    assert job is not None
    job.event_received.connect(lambda e: received.append(1))
    res = Heartbeat().run(lambda: not job.is_running(), seconds + 240)
    loss = page.plots.plot_for("loss")
    assert loss is not None
    return {
        **res,
        "events": len(received),
        "events_per_s": round(len(received) / max(res["seconds"], 1e-9)),
        "loss_points_plotted": len(loss.series_data(page.plots.series_for("loss"))[0]),
        "status": job.status,
        "error": job.error_message,
    }


def timed(fn: Callable[[], object], repeat: int = 1) -> float:
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return round((time.perf_counter() - t) * 1000 / repeat, 2)


def big_map(app: QApplication, n: int) -> dict:
    provider = ThumbnailProvider(64)
    provider.set_source(lambda key: None)
    m = EmbeddingMap(provider)
    m.resize(1000, 700)
    m.show()
    pump(app, 0.3)
    rng = np.random.default_rng(0)
    ids = np.arange(n, dtype=np.int64)
    xy = np.concatenate([rng.normal(c, 0.5, (n // 4, 2)) for c in (-2, 0, 2, 4)]).astype(np.float32)
    classes = {"good": "#3fa34d", "crack": "#e6194b", "scratch": "#4363d8"}
    labels = {int(i): ("crack" if i % 50 == 0 else "good") for i in range(0, n, 10)}
    out: dict[str, float] = {"points": n}
    out["set_points_ms"] = timed(lambda: m.set_map(ids, xy))
    out["recolour_by_label_ms"] = timed(lambda: m.set_labels(labels, classes))
    view = m.view
    vb = view._vb
    out["full_redraw_ms"] = timed(view.repaint_now, repeat=5)

    def zoom_and_draw() -> None:
        vb.scaleBy((0.8, 0.8))
        view.repaint_now()

    out["zoom_redraw_ms"] = timed(zoom_and_draw, repeat=5)
    vb.autoRange()
    pts = rng.uniform(-3, 5, (1000, 2))
    out["hover_pick_ms"] = timed(lambda: [view.pick(float(x), float(y)) for x, y in pts], repeat=1) / len(pts)
    out["hover_pick_ms"] = round(out["hover_pick_ms"], 3)
    scene_pos = view._pw.mapToScene(view._pw.viewport().rect().center())  # a benchmark may look inside

    def hover() -> None:
        view._on_scene_mouse_moved(QPointF(scene_pos))
        view._do_hover()

    out["hover_event_ms"] = timed(hover, 50)
    poly = np.array([[-1, -1], [1.5, -1], [1.5, 1.5], [-1, 1.5]], float)
    out["lasso_select_ms"] = timed(lambda: view.select_polygon(poly))
    out["selected"] = len(view.selection())
    m.close()
    provider.shutdown()
    return out


def big_grid(app: QApplication, n: int) -> dict:
    provider = ThumbnailProvider(96)
    provider.set_source(lambda key: None)
    grid = ImageGrid(provider)
    grid.resize(1000, 700)
    grid.show()
    pump(app, 0.2)
    out = {"images": n, "set_keys_ms": timed(lambda: grid.set_keys(list(range(n))))}
    pump(app, 1.0)
    bar = grid.verticalScrollBar()

    def page_down() -> None:
        bar.setValue(bar.value() + bar.pageStep())
        grid.viewport().repaint()

    out["scroll_page_redraw_ms"] = timed(page_down, repeat=20)
    grid.close()
    provider.shutdown()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", nargs="+", default=["stream", "real"], choices=["stream", "real"])
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each streaming phase")
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    app = QApplication(sys.argv[:1])
    apply_theme(app)
    result: dict = {
        "machine": describe_machine(qt=qVersion(), pyside6=pyside_version, qpa=os.environ["QT_QPA_PLATFORM"]),
        "heartbeat_ms": HEARTBEAT_MS,
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = make_project(Path(tmp))
        ctl = AppController(Settings(QSettings(str(Path(tmp) / "s.ini"), QSettings.Format.IniFormat)))
        window = MainWindow(ctl)
        window.resize(1440, 900)
        window.show()
        ctl.open_project(root)
        window.go_to(2)
        pump(app, 1.0)
        t_end = time.monotonic() + 5
        result["idle"] = Heartbeat().run(lambda: time.monotonic() > t_end, 10)
        if "stream" in args.modes:
            result["stream"] = stream_events(app, window, ctl, root, args.seconds)
        if "real" in args.modes:
            result["real_pretrain"] = real_pretrain(app, window, ctl, args.seconds)
        window.shutdown()
        window.close()
        ctl.shutdown()
    result["embedding_map"] = big_map(app, args.points)
    result["thumbnail_grid"] = big_grid(app, args.points)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
