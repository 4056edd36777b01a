"""Which labels and which pretraining run a fit (and an export) was made from, and whether that is out of date.

``api.fit_fewshot`` writes ``provenance.json`` into the fit's run folder: the label count, a digest of every
``(image id, label)`` pair taken just before the fit, and the pretraining run whose checkpoint it used.
``api.export_onnx`` writes ``<model>.provenance.json`` beside the model with the fit run it baked in. The review
views compare these with the project now: a fit is out of date when the labels or the latest pretraining run
changed after it; an export when its fit is, or a newer fit exists.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sslinspect.fsutil import atomic_write_json
from sslinspect.project import Project

PROVENANCE = "provenance.json"


@dataclass(frozen=True, slots=True)
class LabelStamp:
    """Which labels: how many, and a digest of every (image id, label) pair."""

    count: int
    digest: str


def label_stamp(project: Project) -> LabelStamp:
    """The project's labels now."""
    labels = project.store.labels()
    h = hashlib.sha256()
    for image_id, label in sorted(labels.items()):
        h.update(f"{image_id}\t{label}\n".encode())
    return LabelStamp(len(labels), h.hexdigest()[:16])


def _pretrain_run(project: Project, fit_run: Path) -> str | None:
    try:
        ckpt = json.loads((fit_run / "config.json").read_text(encoding="utf-8")).get("checkpoint")
    except (OSError, ValueError):
        return None
    return Path(ckpt).parent.parent.name if ckpt else None


def record_fit(project: Project, fit_run: Path, stamp: LabelStamp) -> None:
    """Write ``provenance.json`` into a finished fit's run folder (``stamp`` taken before the fit)."""
    atomic_write_json(
        fit_run / PROVENANCE,
        {"labels": {"count": stamp.count, "digest": stamp.digest}, "pretrain_run": _pretrain_run(project, fit_run)},
    )


def record_export(project: Project, model: Path, fit_run: Path | None) -> Path:
    """Write ``<model>.provenance.json``: the fit run (and through it the labels) the model was made from."""
    path = model.with_name(model.stem + ".provenance.json")
    atomic_write_json(path, {"fit_run": project.relative(fit_run) if fit_run else None})
    return path


@dataclass(frozen=True, slots=True)
class Staleness:
    """Whether a fit or an export is out of date, and why (plain words)."""

    stale: bool
    reasons: tuple[str, ...] = ()
    known: bool = True  # False: made before provenance was recorded

    def describe(self) -> str:
        """E.g. "out of date — retrain: the labels changed (12 → 15)"; "" when up to date."""
        return ("out of date — retrain: " + "; ".join(self.reasons)) if self.stale else ""


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def fit_staleness(project: Project, fit_run: Path | None) -> Staleness:
    """Is ``fit_run`` (default: the latest fit) out of date with the labels and the latest pretraining run?"""
    fit_run = fit_run or project.latest("fewshot")
    if fit_run is None:
        return Staleness(False, known=False)
    prov = _read(fit_run / PROVENANCE)
    if prov is None:
        return Staleness(False, known=False)
    reasons = []
    now = label_stamp(project)
    then = prov.get("labels") or {}
    if then.get("digest") != now.digest:
        reasons.append(f"the labels changed since this fit ({then.get('count', '?')} then, {now.count} now)")
    pre, latest = prov.get("pretrain_run"), project.latest("pretrain")
    if pre and latest is not None and latest.name != pre and (latest / "checkpoints").is_dir():
        reasons.append(f"a newer pretraining run exists ({latest.name})")
    return Staleness(bool(reasons), tuple(reasons))


def export_staleness(project: Project, model: Path | None) -> Staleness:
    """Is the exported ``model`` out of date (its fit is, or a newer fit exists)?"""
    if model is None:
        return Staleness(False, known=False)
    prov = _read(model.with_name(model.stem + ".provenance.json"))
    if prov is None or not prov.get("fit_run"):
        return Staleness(False, known=False)
    fit_run = project.resolve(str(prov["fit_run"]))
    latest = project.latest("fewshot")
    if latest is not None and latest.resolve() != fit_run.resolve():
        return Staleness(True, (f"a newer fit exists ({latest.name}): export again",))
    fit = fit_staleness(project, fit_run)
    return Staleness(fit.stale, fit.reasons, fit.known)


def fit_failed_after(project: Project) -> str | None:
    """The newest fit run's name when it did not finish ok although an older one did (its model is not used)."""
    runs = project.runs("fewshot")
    latest = project.latest("fewshot")
    if not runs or latest is None or runs[-1].resolve() == latest.resolve():
        return None
    status = _read(runs[-1] / "status.json") or {}
    return runs[-1].name if status.get("state") not in ("ok", None) else None
