"""The explicit registry of self-supervised methods.

``METHODS`` is torch-free (names, papers, summaries) so configs and the CLI can list methods quickly;
:func:`load_method` imports the method's module and returns its :class:`~sslinspect.methods.base.MethodSpec`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sslinspect.methods.base import MethodSpec


@dataclass(frozen=True, slots=True)
class MethodInfo:
    """What a method is, before importing it."""

    name: str
    module: str
    family: str
    summary: str
    paper: str


METHODS: dict[str, MethodInfo] = {
    "simclr": MethodInfo(
        "simclr",
        "sslinspect.methods.simclr",
        "contrastive",
        "SimCLR: two views, NT-Xent loss against the other images of the batch.",
        "Chen et al., 2020, https://arxiv.org/abs/2002.05709",
    ),
    "byol": MethodInfo(
        "byol",
        "sslinspect.methods.byol",
        "non-contrastive",
        "BYOL: an online network predicts a momentum target network; no negatives needed.",
        "Grill et al., 2020, https://arxiv.org/abs/2006.07733",
    ),
    "barlowtwins": MethodInfo(
        "barlowtwins",
        "sslinspect.methods.barlowtwins",
        "non-contrastive",
        "Barlow Twins: cross-correlation of the two views' embeddings driven to the identity.",
        "Zbontar et al., 2021, https://arxiv.org/abs/2103.03230",
    ),
}


def load_method(name: str) -> MethodSpec:
    """Import and return the spec of method ``name``.

    Raises:
        KeyError: for an unknown method.
    """
    info = METHODS[name]
    spec: MethodSpec = importlib.import_module(info.module).SPEC
    return spec
