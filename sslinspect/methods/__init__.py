"""The explicit registry of self-supervised methods.

The names live in the torch-free :data:`sslinspect.catalog.METHODS` (papers, summaries, which backbones fit) so
configs and the CLI can list methods quickly; :func:`load_method` imports the method's module and returns its
:class:`~sslinspect.methods.base.MethodSpec`. ``docs/methods.md`` says when to use which.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from sslinspect.catalog import BACKBONES, METHODS
from sslinspect.errors import ConfigError

if TYPE_CHECKING:
    from sslinspect.config import PretrainConfig
    from sslinspect.methods.base import MethodSpec


def load_method(name: str) -> MethodSpec:
    """Import and return the spec of method ``name``.

    Raises:
        KeyError: for an unknown method.
    """
    info = METHODS[name]
    spec: MethodSpec = importlib.import_module(info.module).SPEC
    return spec


def check_config(cfg: PretrainConfig) -> None:
    """Refuse method/backbone/size combinations that cannot work, before anything is built.

    Raises:
        ConfigError: naming the option to change.
    """
    info, bb = METHODS[cfg.method], BACKBONES[cfg.backbone]
    if bb.family not in info.backbones:
        fits = ", ".join(name for name, b in BACKBONES.items() if b.family in info.backbones)
        raise ConfigError(f"pretrain.backbone: {cfg.method} does not work with {cfg.backbone}; use one of {fits}")
    if bb.family == "vit" and cfg.image_size % 16:
        raise ConfigError(f"pretrain.image_size must be a multiple of 16 for {cfg.backbone}; got {cfg.image_size}")
