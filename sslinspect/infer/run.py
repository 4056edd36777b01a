"""The predict job: expand inputs, run the predictor, write the CSV. Imports no torch."""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sslinspect.errors import DataError
from sslinspect.events import Log, Progress, Reporter, null_reporter
from sslinspect.fsutil import atomic_path
from sslinspect.infer.onnx_predictor import Prediction, Predictor, expand_inputs


def csv_header(classes: Sequence[str]) -> list[str]:
    """The predict CSV's columns (a stable contract)."""
    return ["path", "label", "confidence", "anomaly_score", "is_defect", *[f"p_{c}" for c in classes]]


def csv_row(p: Prediction) -> list[str]:
    """One CSV row for a successful prediction."""
    return [
        p.path,
        p.label,
        f"{p.confidence:.5f}",
        f"{p.anomaly_score:.6f}",
        str(int(p.is_defect)),
        *[f"{v:.5f}" for v in p.probabilities],
    ]


@dataclass(frozen=True, slots=True)
class PredictResult:
    """Outcome of a predict run."""

    total: int
    defects: int
    failed: list[tuple[str, str]]
    provider: str
    out: str | None
    classes: tuple[str, ...]


def run_predict(
    model: Path,
    inputs: Sequence[str | Path],
    *,
    out: Path | None,
    device: str,
    batch_size: int,
    threshold: float | None,
    report: Reporter = null_reporter,
) -> PredictResult:
    """See :func:`sslinspect.api.predict`."""
    predictor = Predictor(model, device=device, threshold=threshold)
    paths = expand_inputs(inputs)
    if not paths:
        raise DataError(f"no image files found in {', '.join(map(str, inputs))}")
    report(Log(level="INFO", message=f"{len(paths)} image(s), ONNX Runtime on {predictor.provider}"))
    failed: list[tuple[str, str]] = []
    defects = done = 0
    with contextlib.ExitStack() as stack:
        writer = None
        if out is not None:  # the CSV appears only when complete
            tmp = stack.enter_context(atomic_path(Path(out)))
            writer = csv.writer(stack.enter_context(tmp.open("w", newline="", encoding="utf-8")))
            writer.writerow(csv_header(predictor.classes))
        for pred in predictor.predict_paths(paths, batch_size=batch_size):
            done += 1
            if pred.error:
                failed.append((pred.path, pred.error))
                report(Log(level="WARNING", message=f"{pred.path}: {pred.error}"))
            else:
                defects += pred.is_defect
                if writer is not None:
                    writer.writerow(csv_row(pred))
            if done % batch_size == 0 or done == len(paths):
                report(Progress(stage="predict", step=done, total=len(paths), message=f"{defects} defect(s)"))
    return PredictResult(len(paths), defects, failed, predictor.provider, str(out) if out else None, predictor.classes)
