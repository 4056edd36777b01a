"""Self-describing checkpoints: state dicts plus everything needed to rebuild the model, loaded with
``weights_only=True`` (no code in the file can run) and validated field by field before use, since a project
folder or a file handed over by someone else is untrusted input."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import torch

from sslinspect.catalog import BACKBONES
from sslinspect.errors import CheckpointError
from sslinspect.fsutil import atomic_path, describe_os_error
from sslinspect.model.backbones import build_backbone

FORMAT = "sslinspect.checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus format tags) atomically: a crash mid-write never replaces the previous file.

    Raises:
        CheckpointError: if the file system refuses (disk full, read-only); the previous checkpoint is kept.
    """
    try:
        with atomic_path(path) as tmp:
            torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **payload}, tmp)
    except OSError as exc:
        raise CheckpointError(
            f"{path}: cannot write checkpoint ({describe_os_error(exc)}); the previous checkpoint is kept"
        ) from exc
    except RuntimeError as exc:  # torch's writer reports a failed write (e.g. disk full) as RuntimeError
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: cannot write checkpoint ({first}); the previous checkpoint is kept") from exc


def load_checkpoint(path: Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: if missing, truncated, unsafe (a pickle with code), or not ours.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    obj = safe_torch_load(path, "unreadable or unsafe checkpoint", map_location=map_location)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an SSL Inspect checkpoint")
    version = obj.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: checkpoint has no valid format_version")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {version} is newer than this SSL Inspect")
    _validate(obj, path)
    return obj


#: Field → (expected type, required). State dicts are checked separately (every value a tensor).
_FIELDS: dict[str, tuple[type | tuple[type, ...], bool]] = {
    "backbone": (str, True),
    "image_size": (int, True),
    "method": (str, False),
    "epochs_done": (int, False),
    "feature_dim": (int, False),
    "config": (dict, False),
}
_STATES = ("backbone_state", "model_state")


def _validate(obj: dict[str, Any], path: Path) -> None:
    """Check types and ranges of the fields the code uses, so a crafted file fails here with a clear message."""
    for key, (tp, required) in _FIELDS.items():
        if key not in obj:
            if required:
                raise CheckpointError(f"{path}: checkpoint lacks {key!r}")
            continue
        value = obj[key]
        if not isinstance(value, tp) or isinstance(value, bool):
            raise CheckpointError(f"{path}: checkpoint field {key!r} has the wrong type ({type(value).__name__})")
    if obj["backbone"] not in BACKBONES:
        raise CheckpointError(f"{path}: checkpoint names unknown backbone {obj['backbone']!r}")
    if not 8 <= obj["image_size"] <= 4096:
        raise CheckpointError(f"{path}: checkpoint image size {obj['image_size']} is out of range")
    if obj.get("epochs_done", 0) < 0:
        raise CheckpointError(f"{path}: checkpoint epochs_done is negative")
    if "backbone_state" not in obj:
        raise CheckpointError(f"{path}: checkpoint lacks 'backbone_state'")
    for key in _STATES:
        state = obj.get(key)
        if key in obj and not (
            isinstance(state, dict)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
        ):
            raise CheckpointError(f"{path}: checkpoint field {key!r} is not a state dict of tensors")


def safe_torch_load(path: Path, problem: str, *, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never code from the file.

    Args:
        path: The file (untrusted).
        problem: How the error message describes a failure, e.g. ``"not a safe weights file"``.
        map_location: Passed to ``torch.load``.

    Raises:
        CheckpointError: ``"<path>: <problem> (<reason>)"`` for a corrupt, foreign or unsafe file.
    """
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols and suggests unsafe loading
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    # torch raises many types for hostile or corrupt files (UnpicklingError, RuntimeError, EOFError, ...)
    except Exception as exc:
        raise CheckpointError(f"{path}: {problem} ({torch_load_reason(exc)})") from exc


def torch_load_reason(exc: BaseException) -> str:
    """The informative part of a ``torch.load`` failure, in one line.

    torch's messages are long and suggest retrying with ``weights_only=False``, which would run the file's code: that
    advice is never shown.
    """
    text = " ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip())
    code = re.search(r"unsupported global:? (?:GLOBAL )?([\w.]+)", text, re.IGNORECASE)
    if code:
        return f"refused: it contains Python objects that could run code ({code.group(1)})"
    other = re.search(r"WeightsUnpickler error:\s*(.+?)(?: Check the documentation|$)", text)
    if other:
        return f"refused: not a plain tensor file ({other.group(1).strip()[:120]})"
    skip = ("weights only load failed", "check the documentation", "please file an issue", "re-running")
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if not ln.lower().startswith(skip) and "weights_only" not in ln]
    return useful[0][:160] if useful else type(exc).__name__


def build_backbone_from_checkpoint(ckpt: dict[str, Any]) -> torch.nn.Module:
    """Rebuild the pretrained backbone of a checkpoint, in eval mode, on CPU.

    Raises:
        CheckpointError: if the stored weights do not fit the stored architecture.
    """
    name = str(ckpt["backbone"])
    if name not in BACKBONES:
        raise CheckpointError(f"checkpoint names unknown backbone {name!r}")
    try:
        net = build_backbone(name, int(ckpt["image_size"]))
    except ValueError as exc:  # e.g. a ViT with an image size that is not a multiple of 16
        raise CheckpointError(f"checkpoint cannot rebuild {name}: {exc}") from exc
    try:
        net.load_state_dict(ckpt["backbone_state"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit {name}: {_first_problem(str(exc))}") from exc
    return net.eval()


def _first_problem(message: str) -> str:
    """The first concrete mismatch of a ``load_state_dict`` error (its first line only says "Error(s) in ...")."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    return (lines[1] if len(lines) > 1 else lines[0] if lines else "mismatch")[:200]


def load_backbone_weights(backbone: torch.nn.Module, path: Path) -> list[str]:
    """Load a local weights file into ``backbone`` (never unpickles code: ``weights_only=True``).

    Accepts a plain ``state_dict``, or a dict holding one under ``state_dict``/``model``/``backbone``, or an SSL
    Inspect checkpoint. Prefixes ``module.``/``backbone.``/``net.`` are matched; classifier heads are ignored.

    Returns:
        Names of backbone parameters that the file did not provide (kept at their random init).

    Raises:
        CheckpointError: if the file is missing, not a weights file, unsafe, or its shapes do not fit.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    obj = safe_torch_load(path, "not a safe weights file")
    state = obj
    for key in ("backbone_state", "state_dict", "model", "backbone"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: does not hold a state_dict of tensors")
    own = backbone.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        for cand in _candidates(str(k)):
            if cand in own:
                if own[cand].shape != v.shape:
                    raise CheckpointError(
                        f"{path}: tensor {k} has shape {tuple(v.shape)}, the backbone expects {tuple(own[cand].shape)}"
                    )
                mapped[cand] = v
                break
    if not mapped:
        raise CheckpointError(f"{path}: no tensor matches this backbone (wrong architecture?)")
    missing = [k for k in own if k not in mapped]
    if len(missing) > len(own) // 2:
        raise CheckpointError(f"{path}: only {len(mapped)} of {len(own)} backbone tensors found (wrong architecture?)")
    backbone.load_state_dict(mapped, strict=False)
    return missing


def _candidates(key: str) -> list[str]:
    out = [key]
    for prefix in ("module.", "backbone.", "encoder."):
        if key.startswith(prefix):
            key = key[len(prefix) :]
            out.append(key)
    out += ["net." + key, key.removeprefix("net.")]
    return out
