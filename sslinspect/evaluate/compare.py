"""``sslinspect compare``: one row per pretraining run, from the files the runs left (no model is loaded).

Reads each run's ``config.json``, ``status.json`` and ``events.jsonl`` (last loss, embedding std, the k-NN monitor)
and the newest evaluation of each protocol from ``runs/evaluate/*/metrics.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sslinspect.config import PROTOCOLS
from sslinspect.events import Metric
from sslinspect.project import Project
from sslinspect.runs import read_events, read_status

#: An evaluation run's result file (``sslinspect.evaluate.run.METRICS``; named here so that ``compare`` reads
#: project files without importing torch).
METRICS = "metrics.json"


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What one pretraining run achieved; ``None`` where it was not measured."""

    run_id: str
    method: str
    backbone: str
    image_size: int
    epochs_done: int
    epochs: int
    status: str
    final_loss: float | None
    emb_std: float | None
    knn_monitor: float | None
    evaluations: dict[str, float] = field(default_factory=dict)  # protocol → cross-validated balanced accuracy


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _evaluations(project: Project) -> dict[str, dict[str, float]]:
    """``pretrain run id → protocol → balanced accuracy`` of the newest evaluation of each."""
    out: dict[str, dict[str, float]] = {}
    for folder in project.runs("evaluate"):  # oldest first: newer results overwrite older ones
        m = _read(folder / METRICS)
        if m.get("protocol") in PROTOCOLS and isinstance(m.get("balanced_accuracy"), float):
            out.setdefault(Path(str(m.get("pretrain_run", ""))).name, {})[m["protocol"]] = m["balanced_accuracy"]
    return out


def compare_runs(project: Project) -> list[RunSummary]:
    """A summary of every pretraining run of ``project``, oldest first."""
    evals = _evaluations(project)
    rows = []
    for folder in project.runs("pretrain"):
        cfg = _read(folder / "config.json").get("pretrain", {})
        last: dict[str, Metric] = {}
        for e in read_events(folder):
            if isinstance(e, Metric) and e.stage == "pretrain":
                last[e.name] = e
        done = int(last["epoch_loss"].epoch) if "epoch_loss" in last else 0

        def value(name: str, last: dict[str, Metric] = last) -> float | None:
            v = last[name].value if name in last else None
            return v if v is not None and math.isfinite(v) else None

        rows.append(
            RunSummary(
                run_id=folder.name,
                method=str(cfg.get("method", "?")),
                backbone=str(cfg.get("backbone", "?")),
                image_size=int(cfg.get("image_size", 0)),
                epochs_done=done,
                epochs=int(cfg.get("epochs", 0)),
                status=str(read_status(folder).get("state", "unknown")),  # a killed run reads as interrupted
                final_loss=value("loss"),
                emb_std=value("emb_std"),
                knn_monitor=value("knn_acc"),
                evaluations=evals.get(folder.name, {}),
            )
        )
    return rows


def format_table(rows: list[RunSummary]) -> str:
    """A plain-text table of :func:`compare_runs` (``–`` where a value was not measured)."""
    head = ["run", "method", "backbone", "px", "epochs", "status", "loss", "emb_std", "kNN@train"]
    head += [f"{p} CV" for p in PROTOCOLS]

    def f(v: float | None, digits: int = 3) -> str:
        return "–" if v is None else f"{v:.{digits}f}"

    table = [head] + [
        [
            r.run_id,
            r.method,
            r.backbone,
            str(r.image_size),
            f"{r.epochs_done}/{r.epochs}",
            r.status,
            f(r.final_loss, 4),
            f(r.emb_std),
            f(r.knn_monitor),
            *[f(r.evaluations.get(p)) for p in PROTOCOLS],
        ]
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table)
