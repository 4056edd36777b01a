"""Issue 12, "fits the line": the whole wizard is usable at 1024×700 (a panel PC): the window can be that small,
no page needs sideways scrolling, and no visible widget sticks out of its parent (is cut off). Also: the glossary
under Help, and a tooltip on every metric and setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractScrollArea,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLabel,
    QLineEdit,
    QSlider,
    QWidget,
)

from app.glossary import GLOSSARY, GlossaryDialog
from app.main_window import PANEL_PC
from tests.app.conftest import write_fewshot_run, write_pretrain_run, write_stub_model

pytestmark = pytest.mark.gui


def _scrolled_content(w: QWidget) -> bool:
    """Inside the viewport of a scroll area (a grid, a table, a page): scrolled there by design."""
    p = w.parentWidget()
    while p is not None:
        gp = p.parentWidget()
        if isinstance(gp, QAbstractScrollArea) and p is gp.viewport():
            return True
        p = gp
    return False


def clipped(root: QWidget) -> list[str]:
    """Visible widgets that stick out of their visible parent (outside scrolled content)."""
    out = []
    for w in root.findChildren(QWidget):
        parent = w.parentWidget()
        if not w.isVisible() or w.isWindow() or parent is None or _scrolled_content(w):
            continue
        r, pr = w.geometry(), parent.rect()
        if r.width() <= 0 or r.height() <= 0:
            continue
        if r.right() > pr.right() + 1 or r.bottom() > pr.bottom() + 1 or r.left() < -1 or r.top() < -1:
            out.append(f"{type(w).__name__}({w.objectName() or w.accessibleName()}) {r} in {pr}")
    return out


def squeezed(page: QWidget) -> list[str]:
    """Visible word-wrapped labels shorter than their text needs at their width (the last lines cut off)."""
    return [
        repr(lab.text()[:40])
        for lab in page.findChildren(QLabel)
        if lab.isVisible() and lab.wordWrap() and lab.text() and lab.height() < lab.heightForWidth(lab.width())
    ]


@pytest.fixture
def full_project(scanned_project: Path) -> Path:
    write_pretrain_run(scanned_project)
    write_fewshot_run(scanned_project)
    write_stub_model(scanned_project / "exports" / "model" / "model.onnx")
    return scanned_project


def test_the_whole_wizard_fits_1024x700(window: Any, controller: Any, full_project: Path, qtbot: Any) -> None:
    w, h = PANEL_PC
    hint = window.minimumSizeHint()
    assert hint.width() <= w and hint.height() <= h, f"window cannot shrink to {w}×{h}: {hint}"
    window.resize(w, h)
    assert controller.open_project(full_project)
    for i in range(len(window.pages)):
        assert window.go_to(i), f"step {i} not reachable"
        for _ in range(3):  # layouts settle over a few posted events
            QApplication.processEvents()
        assert (window.width(), window.height()) == (w, h)
        area = window.page_area(i)
        if area is not None:
            assert area.horizontalScrollBar().maximum() == 0, f"{window.pages[i].title}: needs sideways scrolling"
        assert clipped(window) == [], window.pages[i].title
        assert squeezed(window.pages[i]) == [], window.pages[i].title


def test_help_has_a_glossary(window: Any, qtbot: Any) -> None:
    names = [a.text() for m in window.menuBar().actions() for a in (m.menu().actions() if m.menu() else [])]
    assert "&Glossary" in names
    dialog = window.show_glossary()
    assert isinstance(dialog, GlossaryDialog) and dialog.isVisible()
    text = dialog.browser.toPlainText()
    for term in ("AUROC", "embedding spread", "effective rank", "k-NN accuracy", "memory bank", "CV folds"):
        assert term in text and term in GLOSSARY
    dialog.close()


SETTING_TYPES = (QAbstractSpinBox, QComboBox, QSlider, QLineEdit)


def test_every_metric_and_setting_has_a_tooltip(window: Any, controller: Any, full_project: Path) -> None:
    """Walk every page's settings (spin boxes, combos, sliders, text fields), plots and result labels."""
    assert controller.open_project(full_project)
    missing = []
    for i, page in enumerate(window.pages):
        assert window.go_to(i)
        QApplication.processEvents()
        for wdg in page.findChildren(QWidget):
            if not wdg.isVisibleTo(page) or isinstance(wdg, QAbstractButton):
                continue
            is_setting = isinstance(wdg, SETTING_TYPES) and not isinstance(wdg.parentWidget(), QAbstractSpinBox)
            is_metric = type(wdg).__name__ == "MetricPlot"
            if (is_setting or is_metric) and not _has_tip(wdg):
                missing.append(f"{page.title}: {type(wdg).__name__} {wdg.accessibleName() or wdg.objectName()}")
    fit = window.pages[4]
    missing += [f"Fit result {k}" for k, lab in fit.values.items() if not lab.toolTip()]
    assert missing == [], missing


def _has_tip(w: QWidget) -> bool:
    p: QWidget | None = w
    for _ in range(2):  # a combo's line edit, a form row: the tooltip may sit on the editor's owner
        if p is None:
            return False
        if p.toolTip():
            return True
        p = p.parentWidget()
    return False
