"""The wizard page base class: a title, a one-paragraph explanation, and a completeness flag for Next."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QSplitter, QVBoxLayout, QWidget

from app.controller import AppController
from app.jobs import Job
from app.widgets.config_form import ConfigForm
from sslinspect.api import to_dict
from sslinspect.errors import SSLInspectError


class _Columns(QSplitter):
    """A horizontal splitter that reports the height its columns' wrapped text needs (QSplitter does not), so a page
    in a scroll area on a narrow screen grows instead of cutting the last lines of a label."""

    def hasHeightForWidth(self) -> bool:
        """Columns with word-wrapped text need more height when narrower."""
        return True

    def heightForWidth(self, width: int) -> int:
        """The tallest column at its current width."""
        heights = [0]
        for i in range(self.count()):
            w = self.widget(i)
            if w is None or w.isHidden():
                continue
            h = w.heightForWidth(w.width()) if w.hasHeightForWidth() and w.width() > 0 else -1
            heights.append(max(h, w.minimumSizeHint().height()))
        return max(heights)


class Page(QWidget):
    """One wizard step. Subclasses put their widgets in ``self.body`` and override :meth:`is_complete`.

    Signals:
        completeness_changed: :meth:`is_complete` may return something else now.
    """

    completeness_changed = Signal()
    title = ""
    explanation = ""
    #: the page's scroll area re-measures its wrapped text whenever its layout changes (pages without live plots)
    wrapped_text_height = False
    #: the page sits in a scroll area (small screens); a page with live plots that fits 1024×700 by itself opts out:
    #: a scroll area re-measures its page at every layout change, which stalls a stream of plot updates
    scrolls = True

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.setObjectName(type(self).__name__)
        outer = QVBoxLayout(self)
        heading = QLabel(self.title)
        heading.setObjectName("pageTitle")
        font = heading.font()
        font.setPointSizeF(font.pointSizeF() * 1.45)
        font.setBold(True)
        heading.setFont(font)
        heading.setAccessibleName(self.title)
        intro = QLabel(self.explanation)
        intro.setObjectName("pageIntro")
        intro.setWordWrap(True)
        intro.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        outer.addWidget(heading)
        outer.addWidget(intro)
        self.body = QVBoxLayout()
        outer.addLayout(self.body, 1)
        controller.status_changed.connect(lambda _status: self.completeness_changed.emit())

    def is_complete(self) -> bool:
        """Whether the user may go on to the next step."""
        return True

    def on_enter(self) -> None:
        """Called when the page becomes the current step."""

    def on_leave(self) -> None:
        """Called when another step is shown."""

    def add_columns(self, left: QWidget, right: QWidget, stretch: tuple[int, int] = (1, 3)) -> QSplitter:
        """Put ``left`` and ``right`` side by side (a splitter the user can drag) as the page's body."""
        split = (_Columns if self.wrapped_text_height else QSplitter)(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(0, stretch[0])
        split.setStretchFactor(1, stretch[1])
        self.body.addWidget(split, 1)
        return split

    def run_form_job(
        self, command: str, args: list[str], form: ConfigForm, section: str, *, title: str, stage: str | None = None
    ) -> Job | None:
        """Run ``sslinspect <command> PROJECT <args>`` with the form's validated config as ``--config`` section."""
        p = self.controller.project
        if p is None:
            return None
        try:
            cfg = form.value()
        except SSLInspectError as exc:
            self.controller.error_occurred.emit(str(exc), "")
            return None
        return self.controller.run_worker(
            [command, str(p.root), *args], stage=stage or command, title=title, config={section: to_dict(cfg)}
        )
