"""The predict job: expand inputs, run the predictor, write CSV or JSON lines and heatmaps. Imports no torch."""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sslinspect.errors import DataError
from sslinspect.events import Log, Progress, Reporter, null_reporter
from sslinspect.fsutil import atomic_path
from sslinspect.infer.onnx_predictor import Predictor, expand_inputs
from sslinspect.infer.output import csv_header, csv_row, format_for, json_record, write_heatmap

__all__ = ["PredictResult", "csv_header", "csv_row", "run_predict"]


@dataclass(frozen=True, slots=True)
class PredictResult:
    """Outcome of a predict run; ``review`` counts images in the review band."""

    total: int
    defects: int
    failed: list[tuple[str, str]]
    provider: str
    out: str | None
    classes: tuple[str, ...]
    review: int = 0
    heatmaps: str | None = None
    threshold: float | None = None


def run_predict(
    model: Path,
    inputs: Sequence[str | Path],
    *,
    out: Path | None,
    device: str,
    batch_size: int,
    threshold: float | None,
    review_threshold: float | None = None,
    fmt: str | None = None,
    heatmaps: Path | None = None,
    report: Reporter = null_reporter,
) -> PredictResult:
    """See :func:`sslinspect.api.predict`."""
    predictor = Predictor(model, device=device, threshold=threshold, review_threshold=review_threshold)
    paths = expand_inputs(inputs)
    if not paths:
        raise DataError(f"no image files found in {', '.join(map(str, inputs))}")
    keep_maps = heatmaps is not None and predictor.has_maps
    if heatmaps is not None and not predictor.has_maps:
        report(Log(level="WARNING", message=f"{model}: this model has no anomaly map output; no heatmaps written"))
    report(Log(level="INFO", message=f"{len(paths)} image(s), ONNX Runtime on {predictor.provider}"))
    failed: list[tuple[str, str]] = []
    defects = review = done = 0
    kind = format_for(out, fmt) if out is not None else "csv"
    with contextlib.ExitStack() as stack:
        fh = None
        if out is not None:  # the file appears only when complete
            tmp = stack.enter_context(atomic_path(Path(out)))
            fh = stack.enter_context(tmp.open("w", newline="", encoding="utf-8"))
        writer = csv.writer(fh) if fh is not None and kind == "csv" else None
        if writer is not None:
            writer.writerow(csv_header(predictor.classes))
        for pred in predictor.predict_paths(paths, batch_size=batch_size, keep_maps=keep_maps):
            done += 1
            heat = write_heatmap(pred, heatmaps) if keep_maps and heatmaps is not None else None
            if pred.error:
                failed.append((pred.path, pred.error))
                report(Log(level="WARNING", message=f"{pred.path}: {pred.error}"))
            else:
                defects += pred.is_defect
                review += pred.decision == "review"
                if writer is not None:
                    writer.writerow(csv_row(pred))
            if fh is not None and kind == "jsonl":
                fh.write(json_record(pred, predictor.classes, heat) + "\n")
            if done % batch_size == 0 or done == len(paths):
                report(Progress(stage="predict", step=done, total=len(paths), message=f"{defects} defect(s)"))
    return PredictResult(
        len(paths),
        defects,
        failed,
        predictor.provider,
        str(out) if out else None,
        predictor.classes,
        review=review,
        heatmaps=str(heatmaps) if keep_maps else None,
        threshold=predictor.threshold,
    )
