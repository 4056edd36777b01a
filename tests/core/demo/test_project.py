"""The demo project the app opens in one click: generated, scanned, labelled; reopening keeps user labels."""

from __future__ import annotations

from pathlib import Path

import pytest

from sslinspect import api
from sslinspect.errors import ProjectError
from sslinspect.events import CollectingReporter, Progress


def test_demo_project_is_scanned_and_labelled_and_reopens(tmp_path: Path) -> None:
    rep = CollectingReporter()
    project = api.open_demo_project(tmp_path, report=rep)
    st = api.project_status(project)
    assert project.data["demo"] is True and st.images == 600 and st.unreadable == 0
    assert st.labels == dict.fromkeys(["contamination", "crack", "good", "scratch", "spot"], 5)
    assert any(isinstance(e, Progress) and e.stage == "demo" for e in rep.events)
    relabelled = next(iter(project.store.labels()))  # one of the example labels
    project.store.set_label(relabelled, "other")
    project.close()
    again = api.open_demo_project(tmp_path)
    assert again.store.labels()[relabelled] == "other"
    assert len(again.sources) == 1
    again.close()


def test_demo_project_refuses_to_take_over_a_user_project(tmp_path: Path) -> None:
    api.create_project(tmp_path / "metal.sslproj").close()
    with pytest.raises(ProjectError, match="not a demo project"):
        api.open_demo_project(tmp_path)
