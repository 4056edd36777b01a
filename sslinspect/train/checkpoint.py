"""Self-describing checkpoints: state dicts plus everything needed to rebuild the model, loaded with
``weights_only=True`` (no code in the file can run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sslinspect.errors import CheckpointError
from sslinspect.fsutil import atomic_path

FORMAT = "sslinspect.checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus format tags) atomically: a crash mid-write never replaces the previous file."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **payload}, tmp)


def load_checkpoint(path: Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: if missing, truncated, unsafe (a pickle with code), or not ours.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: unreadable or unsafe checkpoint ({torch_load_reason(exc)})") from exc
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an SSL Inspect checkpoint")
    if int(obj.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {obj['format_version']} is newer than this SSL Inspect")
    for key in ("backbone", "image_size", "backbone_state"):
        if key not in obj:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}")
    return obj


def torch_load_reason(exc: BaseException) -> str:
    """The informative line of a ``torch.load`` failure (its messages are long and advise unsafe loading)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in lines:
        if "Unsupported global" in ln or "WeightsUnpickler error" in ln:
            return "refused: it contains Python objects that could run code; " + ln.split(":", 1)[-1].strip()[:160]
    return lines[0][:160] if lines else type(exc).__name__


def build_backbone_from_checkpoint(ckpt: dict[str, Any]) -> torch.nn.Module:
    """Rebuild the pretrained backbone of a checkpoint, in eval mode, on CPU.

    Raises:
        CheckpointError: if the stored weights do not fit the stored architecture.
    """
    from sslinspect.backbones import BACKBONES, build_backbone

    name = str(ckpt["backbone"])
    if name not in BACKBONES:
        raise CheckpointError(f"checkpoint names unknown backbone {name!r}")
    net = build_backbone(name, int(ckpt["image_size"]))
    try:
        net.load_state_dict(ckpt["backbone_state"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit {name}: {str(exc).splitlines()[0][:200]}") from exc
    return net.eval()
