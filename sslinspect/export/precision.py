"""FP16 and INT8 versions of an exported FP32 model, and the check that they still decide like it.

INT8 is static quantisation in ONNX Runtime's QDQ format (per-channel 8-bit weights; 7-bit with ``reduce_range``
for CPUs without VNNI), with activation ranges calibrated on the project's own good and near-threshold images. Only
the backbone less its stem is quantised (:mod:`sslinspect.export.int8`): the segmentation decoder, the memory-bank
distances, the map's smoothing and normalisation, the classifier and the decision stay in FP32, where a rounding
error would move scores near the threshold.
The check runs both models the way ``predict`` runs them (the graph, then the region typing of every part not
passed as OK) on every labelled image, its typing views (:func:`with_views`) and held-out
unlabelled ones and reports the change in the accuracy of the labels ``predict`` writes, in OK/NG decisions and
in scores; beyond the tolerance the export is refused unless forced. A refused INT8 model is made again with more
of the backbone's first operators in FP32 (:data:`sslinspect.export.int8.FP32_TRIES`) before the export gives up.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from sslinspect.config import ExportConfig
from sslinspect.errors import ExportError
from sslinspect.export.int8 import QUANTISED_OPS, quantisable_nodes
from sslinspect.fewshot.model import InspectionHead
from sslinspect.infer.feeds import threshold_feeds
from sslinspect.infer.onnx_predictor import Predictor
from sslinspect.project import GOOD

CHECK_BATCH = 32


@dataclass(frozen=True, slots=True)
class PrecisionReport:
    """FP16/INT8 against FP32 on the same real images (``None`` where there were no labels to measure)."""

    precision: str
    images: int
    labelled: int
    accuracy_fp32: float | None
    accuracy: float | None
    decision_agreement: float
    auroc_fp32: float | None
    auroc: float | None
    max_abs_score_change: float
    mean_abs_score_change: float
    score_change_vs_threshold: float
    tolerance: float
    passed: bool
    forced: bool = False
    fp32_ops: int = 0  # INT8: the backbone's first quantisable operators after the stem kept FP32 (int8.FP32_TRIES)

    @property
    def accuracy_change(self) -> float | None:
        """``accuracy − accuracy_fp32`` (negative: worse)."""
        if self.accuracy is None or self.accuracy_fp32 is None:
            return None
        return self.accuracy - self.accuracy_fp32

    def message(self) -> str:
        """One line with the figures."""
        acc = (
            f"labelled accuracy {self.accuracy_fp32:.3f} → {self.accuracy:.3f}"
            if self.accuracy is not None and self.accuracy_fp32 is not None
            else "no labelled images"
        )
        auroc = (
            f", anomaly AUROC {self.auroc_fp32:.3f} → {self.auroc:.3f}"
            if self.auroc is not None and self.auroc_fp32 is not None
            else ""
        )
        verdict = "within" if self.passed else "EXCEEDS"
        kept = f" (the backbone's first {self.fp32_ops} operators kept in fp32)" if self.fp32_ops else ""
        return (
            f"{self.precision}{kept} vs fp32 on {self.images} images ({self.labelled} labelled): {acc}{auroc}, OK/NG "
            f"decisions agree on {100 * self.decision_agreement:.1f}%, score change max {self.max_abs_score_change:.2e}"
            f" / mean {self.mean_abs_score_change:.2e} ({100 * self.score_change_vs_threshold:.1f}% of the "
            f"threshold margin); {verdict} the tolerance of {100 * self.tolerance:g} point(s)"
        )


class _Calibration:
    """Feeds calibration batches to ``quantize_static`` (a ``CalibrationDataReader``)."""

    def __init__(self, images: np.ndarray, thresholds: tuple[float, float], batch: int = 8) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = (
            threshold_feeds(images[s : s + batch], *thresholds) for s in range(0, len(images), batch)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def convert_precision(
    src: Path,
    dst: Path,
    precision: str,
    calibration: np.ndarray,
    *,
    reduce_range: bool = False,
    keep_fp32: int = 0,
) -> None:
    """Write the ``precision`` version of the FP32 model ``src`` to ``dst`` (metadata is re-attached later).

    ``reduce_range`` (INT8 only): 7-bit weights, see :func:`_to_int8`. ``keep_fp32`` (INT8 only): how many of the
    backbone's first quantisable operators after the stem stay FP32 (:data:`sslinspect.export.int8.FP32_TRIES`).

    Raises:
        ExportError: if the conversion fails.
    """
    import onnxruntime as ort

    buf = io.StringIO()
    # The converters open sessions of their own on intermediate graphs; their C++-side warnings (e.g. about
    # shape inference of the augmented calibration graph) are not about the model we write. Errors still show.
    ort.set_default_logger_severity(3)
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            if precision == "fp16":
                _to_fp16(src, dst)
            elif precision == "int8":
                _to_int8(src, dst, calibration, reduce_range=reduce_range, keep_fp32=keep_fp32)
            else:
                raise ExportError(f"unknown precision {precision!r}")
    except ExportError:
        raise
    except Exception as exc:  # converters raise anything; report it as one line
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{src.name}: {precision} conversion failed ({type(exc).__name__}: {first})") from exc
    finally:
        ort.set_default_logger_severity(2)


def _to_fp16(src: Path, dst: Path) -> None:
    """Weights and activations in FP16; inputs and outputs keep their types (uint8 in, float32 out)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    half = convert_float_to_float16(model, keep_io_types=True)
    _toposort(half.graph)  # the converter appends the casts it inserts for the kept FP32 inputs at the end
    onnx.save(half, str(dst))


def _toposort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` so that every node comes after the producers of its inputs (Kahn's algorithm)."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    nodes = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while nodes:
        rest = []
        for node in nodes:
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(nodes):
            raise ExportError(f"graph has a cycle or a missing input at node {rest[0].name!r}")
        nodes = rest
    del graph.node[:]
    graph.node.extend(ordered)


def _to_int8(src: Path, dst: Path, calibration: np.ndarray, *, reduce_range: bool = False, keep_fp32: int = 0) -> None:
    """Static QDQ quantisation of the backbone (less its stem and its ``keep_fp32`` first operators after it),
    calibrated on ``calibration`` (uint8 NHWC images).

    Weights are 8-bit per channel; ``reduce_range`` makes them 7-bit, for x86 CPUs without VNNI, where ONNX Runtime's
    u8×s8 multiply-add (``vpmaddubsw``) can saturate. They cost accuracy (bench/RESULTS.md: on the benchmark's fabric
    model 3 of 250 OK/NG decisions changed instead of none), so they are opt-in.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)  # folds BatchNorm into Conv first
        nodes = quantisable_nodes(src, pre, keep_fp32)
        if not nodes:
            raise ExportError(f"{src.name}: no backbone nodes found to quantise (module metadata missing)")
        quantize_static(
            str(pre),
            str(dst),
            _Calibration(calibration, (0.0, 0.0)),  # thresholds only feed comparisons, which are not quantised
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTISED_OPS),
            nodes_to_quantize=nodes,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            reduce_range=reduce_range,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )


#: What ``predict`` writes for each check image: labels, anomaly scores, OK/NG decisions (see :func:`run_check`).
CheckRun = tuple[list[str], np.ndarray, np.ndarray]


def with_views(images: np.ndarray, labels: list[str | None], seed: int = 0) -> tuple[np.ndarray, list[str | None]]:
    """The check images plus the typing views of every labelled one (flipped, lighter, darker: what fit learns from),
    labelled alike, so that one renamed part is a fraction of a point rather than the whole tolerance."""
    from sslinspect.fewshot.typing_step import view_images

    rng = np.random.default_rng(seed)
    lab = [i for i, v in enumerate(labels) if v is not None]
    if not lab:
        return images, labels
    views = [view_images(images[i], rng) for i in lab]
    extra = [labels[i] for i, v in zip(lab, views, strict=True) for _ in range(len(v))]
    return np.concatenate([images, *views]), [*labels, *extra]


def run_check(path: Path, images: np.ndarray) -> CheckRun:
    """What ``predict`` would write for ``images``: each image's label (named from its region where the model carries
    a typing head, as line-side), anomaly score and OK/NG decision."""
    preds = Predictor(path, device="cpu", keep_maps=False).predict_images(images, batch_size=CHECK_BATCH)
    return (
        [p.label for p in preds],
        np.array([p.anomaly_score for p in preds], np.float64),
        np.array([p.is_defect for p in preds], bool),
    )


def check_precision(
    fp32: Path,
    other: Path,
    images: np.ndarray,
    labels: list[str | None],
    head: InspectionHead,
    cfg: ExportConfig,
    *,
    force: bool = False,
    reference: CheckRun | None = None,
    fp32_ops: int = 0,
) -> PrecisionReport:
    """Compare ``other`` with ``fp32`` on ``images``; ``labels[i]`` is None for unlabelled images.

    ``reference``: :func:`run_check` of ``fp32`` on ``images`` when already run (the INT8 tries share it);
    ``fp32_ops``: recorded in the report (what the INT8 try kept FP32).
    """
    from sklearn.metrics import roc_auc_score

    l32, s32, d32 = reference if reference is not None else run_check(fp32, images)
    lbl, s, d = run_check(other, images)
    lab = np.array([i for i, v in enumerate(labels) if v in head.classes], dtype=np.int64)
    y = [str(labels[i]) for i in lab]
    acc32 = float(np.mean([l32[i] == t for i, t in zip(lab, y, strict=True)])) if len(lab) else None
    acc = float(np.mean([lbl[i] == t for i, t in zip(lab, y, strict=True)])) if len(lab) else None
    is_def = np.array([labels[i] != GOOD for i in lab])
    au32 = au = None
    if len(lab) and 0 < is_def.sum() < len(lab):
        au32 = float(roc_auc_score(is_def, s32[lab]))
        au = float(roc_auc_score(is_def, s[lab]))
    agree = float((d == d32).mean()) if len(d) else 1.0
    diff = np.abs(s - s32)
    margin = max(head.anomaly.threshold - head.anomaly.map_low, 1e-6)
    ok = (1.0 - agree) <= cfg.tolerance and (acc is None or acc32 is None or acc32 - acc <= cfg.tolerance)
    return PrecisionReport(
        precision=cfg.precision,
        images=len(images),
        labelled=len(lab),
        accuracy_fp32=acc32,
        accuracy=acc,
        decision_agreement=agree,
        auroc_fp32=au32,
        auroc=au,
        max_abs_score_change=float(diff.max()) if len(diff) else 0.0,
        mean_abs_score_change=float(diff.mean()) if len(diff) else 0.0,
        score_change_vs_threshold=float(diff.mean() / margin) if len(diff) else 0.0,
        tolerance=cfg.tolerance,
        passed=ok,
        forced=force and not ok,
        fp32_ops=fp32_ops,
    )
