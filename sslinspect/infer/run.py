"""The predict job: expand inputs, run the predictor, write CSV or JSON lines and heatmaps. Imports no torch."""

from __future__ import annotations

import csv
import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sslinspect import __version__
from sslinspect.errors import DataError
from sslinspect.events import Log, Progress, Reporter, null_reporter
from sslinspect.fsutil import atomic_write_json
from sslinspect.infer.onnx_predictor import Predictor, expand_inputs
from sslinspect.infer.output import csv_header, csv_row, format_for, json_record, write_heatmap
from sslinspect.infer.target import check_folder, check_target, is_stdout, open_results

__all__ = ["PredictResult", "csv_header", "csv_row", "run_metadata_path", "run_predict"]


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
    review_threshold: float | None = None
    #: The provider and, for ``--device auto`` on the CPU, why CUDA was not used.
    provider_note: str = ""


def run_metadata_path(out: Path) -> Path:
    """Where the metadata of results file ``out`` is written (``<out>.meta.json``)."""
    return Path(out).with_name(Path(out).name + ".meta.json")


def run_metadata(predictor: Predictor, result: PredictResult) -> dict[str, Any]:
    """How the results were made: the model, the runtime and provider actually used, thresholds and counts."""
    return {
        "model": str(predictor.path),
        "model_created": predictor.meta.get("created"),
        "precision": predictor.meta.get("precision"),
        "classes": list(predictor.classes),
        "threshold": predictor.threshold,
        "review_threshold": predictor.review_threshold,
        "device_requested": predictor.runtime.requested,
        "provider": predictor.runtime.provider,
        "provider_reason": predictor.runtime.reason,
        "onnxruntime": predictor.runtime.onnxruntime,
        "sslinspect": __version__,
        "images": result.total,
        "unreadable": len(result.failed),
        "defects": result.defects,
        "review": result.review,
        "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def run_predict(
    model: Path,
    inputs: Sequence[str | Path],
    *,
    out: Path | str | None,
    device: str,
    batch_size: int,
    threshold: float | None,
    review_threshold: float | None = None,
    fmt: str | None = None,
    heatmaps: Path | None = None,
    report: Reporter = null_reporter,
) -> PredictResult:
    """See :func:`sslinspect.api.predict`."""
    if out is not None and not is_stdout(out):
        check_target(Path(out), protected=[Path(model)], what="--out")  # before the model loads: fail fast
        check_target(run_metadata_path(Path(out)), protected=[Path(model)], what="--out's metadata file")
    if heatmaps is not None:
        check_folder(heatmaps)
    predictor = Predictor(
        model, device=device, threshold=threshold, review_threshold=review_threshold, keep_maps=heatmaps is not None
    )
    paths = expand_inputs(inputs)
    if not paths:
        raise DataError(f"no image files found in {', '.join(map(str, inputs))}")
    keep_maps = heatmaps is not None and predictor.has_maps
    if heatmaps is not None and not predictor.has_maps:
        report(Log(level="WARNING", message=f"{model}: this model has no anomaly map output; no heatmaps written"))
    report(Log(level="INFO", message=f"{len(paths)} image(s), ONNX Runtime on {predictor.provider_note()}"))
    failed: list[tuple[str, str]] = []
    defects = review = done = 0
    kind = format_for(Path(str(out)), fmt) if out is not None else "csv"
    with open_results(out, protected=[Path(model), *paths]) as fh:  # a file appears only when complete
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
                writer.writerow(csv_row(pred, len(predictor.classes)))
            elif fh is not None:
                fh.write(json_record(pred, predictor.classes, heat) + "\n")
            if done % batch_size == 0 or done == len(paths):
                report(Progress(stage="predict", step=done, total=len(paths), message=f"{defects} defect(s)"))
    result = PredictResult(
        len(paths),
        defects,
        failed,
        predictor.provider,
        str(out) if out is not None else None,
        predictor.classes,
        review=review,
        heatmaps=str(heatmaps) if keep_maps else None,
        threshold=predictor.threshold,
        review_threshold=predictor.review_threshold,
        provider_note=predictor.provider_note(),
    )
    if out is not None and not is_stdout(out):
        atomic_write_json(run_metadata_path(Path(out)), run_metadata(predictor, result))
    return result
