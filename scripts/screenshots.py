"""Render every wizard page of the desktop app with the demo project to ``docs/screenshots/*.png`` (offscreen).

The demo project is built and trained through the app itself, exactly as a user would click through it: "Open demo
project", Start pretraining (the quick preset; ``--tiny`` for a seconds-long run), Fit, Export, and "Test on a
folder" with the demo's held-out test images. Work files stay in ``--work`` so a second run only re-renders.

    python scripts/screenshots.py                      # light theme, 100 %
    python scripts/screenshots.py --theme dark --only pretrain
    QT_SCALE_FACTOR=2 python scripts/screenshots.py --out /tmp/shots-200 --only label
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from PySide6.QtCore import QEventLoop, QSettings, QThreadPool  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from app.controller import AppController  # noqa: E402
from app.main_window import MainWindow  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.theme import app_icon, apply_theme  # noqa: E402
from app.widgets.fit_types import TypingView  # noqa: E402
from app.widgets.thumbnails import ThumbnailProvider  # noqa: E402

PAGES = ("project", "images", "pretrain", "label", "fit", "export")
PANEL = (1024, 700)  # the panel-PC size: one extra shot per page family proves the wizard fits it


def pump(app: QApplication, seconds: float) -> None:
    """Run the event loop for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        time.sleep(0.01)


def wait_job(app: QApplication, controller: AppController, what: str, timeout: float = 1800) -> None:
    """Run the event loop until the current job ends; stop the script if it failed."""
    t0 = time.monotonic()
    while controller.is_busy():
        pump(app, 0.2)
        if time.monotonic() - t0 > timeout:
            controller.cancel_job()
            raise SystemExit(f"{what}: no result after {timeout:.0f} s")
    job = controller.job
    if job is not None and job.status != "ok" and job.stage != "predict":
        raise SystemExit(f"{what} {job.status}: {job.error_message}\n{job.error_details[-2000:]}")
    print(f"{what}: {job.status if job else '?'} after {time.monotonic() - t0:.0f} s", flush=True)


def settle(app: QApplication, window: MainWindow) -> None:
    """Let lazy thumbnails, sorting workers and plot redraws finish."""
    for _ in range(50):
        pump(app, 0.1)
        busy = QThreadPool.globalInstance().activeThreadCount() > 0
        pending = any(p._queue for p in window.findChildren(ThumbnailProvider))
        if not busy and not pending:
            break
    pump(app, 0.3)


def shoot_running(app: QApplication, window: MainWindow, controller: AppController, out: Path, suffix: str) -> None:
    """While pretraining runs: the status line with its time left and the progress bar, at the panel-PC size."""
    page = window.pages[2]
    t0 = time.monotonic()
    while controller.is_busy() and "ETA" not in page.status_label.text() and time.monotonic() - t0 < 600:  # type: ignore[attr-defined]
        pump(app, 0.2)
    if not controller.is_busy():
        return
    pump(app, 3.0)  # a few reports more: the speed, and so the time left, has settled
    size = window.size()
    window.resize(*PANEL)
    shoot(app, window, out, f"3-pretrain-running-{PANEL[0]}x{PANEL[1]}", suffix)
    window.resize(size)


def show_worst_type_cell(view: TypingView) -> None:
    """Click the defect-type confusion's fullest off-diagonal cell (the commonest mix-up; else the fullest cell)."""
    conf = np.array(view.typing.get("confusion") or [[0]], dtype=float)
    if not conf.any():
        return
    off = conf * (1 - np.eye(len(conf)))
    row, col = np.unravel_index(int(np.argmax(off if off.any() else conf)), conf.shape)
    view.table.confusion.setCurrentCell(int(row), int(col))
    view.show_cell(int(row), int(col))


def train_demo(
    app: QApplication, window: MainWindow, controller: AppController, tiny: bool, out: Path, suffix: str
) -> None:
    """Open the demo project and bring it to an exported, tested model through the app's own pages."""
    if window.pages[0].open_demo() is not None:  # type: ignore[attr-defined]
        wait_job(app, controller, "demo project")
    st = controller.status
    assert st is not None and controller.project is not None
    if st.checkpoint is None:
        window.go_to(2)
        page = window.pages[2]
        page.preset.setCurrentIndex(1)  # "Quick check (a few minutes)"
        if tiny:
            page.form.editor("backbone").setCurrentText("tiny_cnn")
            page.form.editor("epochs").setValue(6)
        page.start()  # type: ignore[attr-defined]
        shoot_running(app, window, controller, out, suffix)
        wait_job(app, controller, "pretraining")
    if controller.refresh_status() and controller.status and controller.status.fewshot_run is None:
        window.go_to(4)
        window.pages[4].fit()  # type: ignore[attr-defined]
        wait_job(app, controller, "fitting")
    export = window.pages[5]
    if controller.status and controller.status.export is None:
        window.go_to(5)
        export.export()  # type: ignore[attr-defined]
        wait_job(app, controller, "export")
    window.go_to(5)
    test_dir = controller.demo_dir / "data" / "metal" / "test"
    export.test_folder(test_dir)  # type: ignore[attr-defined]
    wait_job(app, controller, "test on a folder")


def shoot(app: QApplication, window: MainWindow, out: Path, name: str, suffix: str) -> None:
    """Grab the window into ``out/name+suffix.png``."""
    settle(app, window)
    path = out / f"{name}{suffix}.png"
    window.grab().save(str(path))
    print(f"wrote {path}", flush=True)


def render(app: QApplication, window: MainWindow, out: Path, only: set[str], suffix: str) -> None:
    """Visit each page in its most telling state and save it."""
    pages = dict(zip(PAGES, window.pages, strict=True))
    for i, name in enumerate(PAGES):
        if only and name not in only:
            continue
        assert window.go_to(i), f"step {name} is not reachable"
        page = pages[name]
        if name == "images":
            page.tabs.setCurrentIndex(0)  # type: ignore[attr-defined]
        if name == "pretrain":
            page.tabs.setCurrentIndex(0)  # type: ignore[attr-defined]
            shoot(app, window, out, f"{i + 1}-{name}", suffix)
            page.plots.set_advanced(True)  # type: ignore[attr-defined]
            shoot(app, window, out, f"{i + 1}-{name}-advanced", suffix)
            page.plots.set_advanced(False)  # type: ignore[attr-defined]
            page.tabs.setCurrentIndex(1)  # type: ignore[attr-defined]
            shoot(app, window, out, f"{i + 1}-{name}-map", suffix)
            continue
        if name == "label":
            page.tabs.setCurrentIndex(0)  # type: ignore[attr-defined]
            page.sort.setCurrentIndex(0)  # type: ignore[attr-defined]
            settle(app, window)
            grid = page.grid  # type: ignore[attr-defined]
            grid.select_keys(grid.keys()[:1])
            shoot(app, window, out, f"{i + 1}-{name}", suffix)
            page.tabs.setCurrentIndex(1)  # type: ignore[attr-defined]
            settle(app, window)
            shoot(app, window, out, f"{i + 1}-{name}-map", suffix)
            page.tabs.setCurrentIndex(2)  # type: ignore[attr-defined]
            settle(app, window)
            shoot(app, window, out, f"{i + 1}-{name}-suggested", suffix)
            page.tabs.setCurrentIndex(0)  # type: ignore[attr-defined]
            continue
        if name == "fit":
            page.threshold_panel.advanced.setChecked(True)  # type: ignore[attr-defined]
            show_worst_type_cell(page.typing_view)  # type: ignore[attr-defined]
            for k, tab in enumerate(("", "-anomaly", "-uncertain")):
                page.tabs.setCurrentIndex(k)  # type: ignore[attr-defined]
                settle(app, window)
                area = window.page_area(i)
                assert area is not None
                bar = area.verticalScrollBar()
                bar.setValue(bar.maximum() if tab == "-anomaly" else 0)  # the curves sit below the histogram
                shoot(app, window, out, f"{i + 1}-{name}{tab}", suffix)
                bar.setValue(0)
            heat = page.uncertain_view.heat_check  # type: ignore[attr-defined]
            heat.setChecked(True)
            settle(app, window)
            shoot(app, window, out, f"{i + 1}-{name}-heatmaps", suffix)
            heat.setChecked(False)
            page.threshold_panel.advanced.setChecked(False)  # type: ignore[attr-defined]
            page.tabs.setCurrentIndex(0)  # type: ignore[attr-defined]
            continue
        shoot(app, window, out, f"{i + 1}-{name}", suffix)


def main(argv: list[str] | None = None) -> int:
    """Build (once) and render."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    ap.add_argument("--work", type=Path, default=REPO / "build" / "screenshots", help="demo data, project, settings")
    ap.add_argument("--theme", choices=["light", "dark"], default="light")
    ap.add_argument("--only", action="append", choices=PAGES, default=[], help="render only these pages")
    ap.add_argument("--tiny", action="store_true", help="a seconds-long pretraining (tiny CNN) instead of ResNet-18")
    ap.add_argument("--size", default="1440x900", help="window size in logical pixels")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the worker processes")
    args = ap.parse_args(argv)
    os.environ["SSLINSPECT_THEME"] = args.theme
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)

    app = QApplication(sys.argv[:1])
    app.setApplicationName("SSL Inspect")
    apply_theme(app)
    app.setWindowIcon(app_icon())
    qs = QSettings(str(args.work / "settings.ini"), QSettings.Format.IniFormat)
    qs.setValue("jobs/threads", args.threads)
    controller = AppController(Settings(qs))
    controller.demo_dir = args.work / "demo"
    controller.message.connect(lambda level, text: print(f"  {level}: {text}") if level != "INFO" else None)
    window = MainWindow(controller)
    w, h = (int(v) for v in args.size.split("x"))
    window.resize(w, h)
    window.show()
    pump(app, 0.5)
    suffix = "" if args.theme == "light" else "-dark"
    train_demo(app, window, controller, args.tiny, args.out, suffix)
    render(app, window, args.out, set(args.only), suffix)
    if not args.only:
        size = window.size()
        window.resize(*PANEL)
        for i in (2, 4, 5):  # the busiest pages, on a 1024×700 panel PC
            window.go_to(i)
            if i == 2:
                window.pages[2].tabs.setCurrentIndex(0)  # type: ignore[attr-defined]  # the training curves
            shoot(app, window, args.out, f"{i + 1}-{PAGES[i]}-{PANEL[0]}x{PANEL[1]}", suffix)
        window.resize(size)
    window.shutdown()
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
