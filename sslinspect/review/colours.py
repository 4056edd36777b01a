"""Class colours of a project (``#rrggbb``), as the label and review views show them."""

from __future__ import annotations

import re
from typing import Any

from sslinspect.errors import ProjectError
from sslinspect.project import Project

_COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")


def set_class_color(project: Project, name: str, color: str) -> None:
    """Give class ``name`` the colour ``#rrggbb``.

    Raises:
        ProjectError: for an unknown class or a malformed colour.
    """
    if not _COLOR_RE.match(color):
        raise ProjectError(f"invalid colour {color!r}: use #rrggbb")
    if name not in project.classes:
        raise ProjectError(f"unknown class {name!r}")

    def _set(d: dict[str, Any]) -> None:
        for c in d["classes"]:
            if c["name"] == name:
                c["color"] = color.lower()

    project.update(_set)
