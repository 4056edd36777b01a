"""Writing predictions: CSV rows (a stable contract), JSON lines, and heatmap overlay PNGs. numpy + OpenCV only.

CSV columns: ``path,label,confidence,anomaly_score,is_defect,p_<class>...`` then ``decision`` (OK/review/NG),
``error``, ``region`` (the named defect's box ``x0 y0 x1 y1`` in the image's pixels), ``novelty`` and ``type_sure``
(1: the name is sure, 0: ``unknown`` or below the typing head's calibrated confidence cut, empty: not named); new
columns are only ever appended at the end. CSV and JSON lines hold the same rows: an
image that could not be read gets a row with its ``error`` (and empty scores) in both.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from sslinspect.defects.typing_head import UNKNOWN
from sslinspect.infer.onnx_predictor import Prediction
from sslinspect.names import csv_safe

#: Overlays are drawn at most this many pixels on the long side (line images can be 20+ megapixels).
OVERLAY_MAX_SIDE = 1024


def csv_header(classes: Sequence[str]) -> list[str]:
    """The predict CSV's columns (a stable contract)."""
    return [
        "path",
        "label",
        "confidence",
        "anomaly_score",
        "is_defect",
        *[f"p_{c}" for c in classes],
        "decision",
        "error",
        "region",
        "novelty",
        "type_sure",
    ]


def _region_text(p: Prediction) -> str:
    return " ".join(str(v) for v in p.region) if p.region is not None else ""


def _sure_text(p: Prediction) -> str:
    return "" if p.type_sure is None else str(int(p.type_sure))


def display_label(p: Prediction) -> str:
    """The label drawn on a heatmap: a name that is not sure gets a trailing ``?`` (``unknown`` stays as it is)."""
    return f"{p.label}?" if p.type_sure is False and p.label != UNKNOWN else p.label


def csv_row(p: Prediction, n_classes: int) -> list[str]:
    """One CSV row; for an unreadable image (``p.error``) the scores are empty (``n_classes`` empty ``p_`` cells).
    Text cells are made inert for spreadsheets (``=cmd...``)."""
    if p.error:
        return [csv_safe(p.path), "", "", "", "", *[""] * n_classes, "", csv_safe(p.error), "", "", ""]
    return [
        csv_safe(p.path),
        csv_safe(p.label),
        f"{p.confidence:.5f}",
        f"{p.anomaly_score:.6f}",
        str(int(p.is_defect)),
        *[f"{v:.5f}" for v in p.probabilities],
        csv_safe(p.decision),
        "",
        _region_text(p),
        "" if p.novelty != p.novelty else f"{p.novelty:.4f}",  # NaN: not typed
        _sure_text(p),
    ]


def json_record(p: Prediction, classes: Sequence[str], heatmap: str | None = None) -> str:
    """One JSON line: the prediction, or ``{"path", "error"}`` for a file that could not be read. ``region``,
    ``novelty`` and ``type_sure`` are there only for parts that were named (the CSV leaves those cells empty)."""
    if p.error:
        return json.dumps({"path": p.path, "error": p.error}, ensure_ascii=False)
    rec: dict[str, object] = {
        "path": p.path,
        "label": p.label,
        "confidence": round(p.confidence, 5),
        "anomaly_score": round(p.anomaly_score, 6),
        "is_defect": p.is_defect,
        "decision": p.decision,
        "probabilities": {c: round(v, 5) for c, v in zip(classes, p.probabilities, strict=True)},
    }
    if p.region is not None:
        rec["region"] = list(p.region)
    if p.novelty == p.novelty:  # not NaN: the part was typed from its region
        rec["novelty"] = round(p.novelty, 4) if p.novelty != float("inf") else None
    if p.type_sure is not None:  # 1/0 as in the CSV; absent (the CSV's empty cell) when the part was not named
        rec["type_sure"] = int(p.type_sure)
    if heatmap:
        rec["heatmap"] = heatmap
    return json.dumps(rec, ensure_ascii=False)


def format_for(path: Path, requested: str | None = None) -> str:
    """The output format: ``requested``, else from the suffix (``.jsonl``/``.json`` → jsonl), else csv."""
    if requested:
        return requested
    return "jsonl" if Path(path).suffix.lower() in (".jsonl", ".json", ".ndjson") else "csv"


#: Map values below this show no colour: ordinary good-part variation stays unpainted.
OVERLAY_FLOOR = 0.5
#: Inside a named defect's outline the colour is drawn at this share of its strength: the defect shows through.
REGION_TINT = 0.25


def overlay(
    rgb: np.ndarray, anomaly_map: np.ndarray, *, alpha: float = 0.65, region: np.ndarray | None = None, label: str = ""
) -> np.ndarray:
    """A BGR image: the part with the normalised anomaly map blended on top.

    The colour scale is fixed (0 = typical good patch, 1 = the calibrated threshold; never rescaled per image).
    Colour fades in from :data:`OVERLAY_FLOOR` to full at 1, so a good part shows through untouched and only
    regions approaching the threshold are painted (yellow to red). ``region`` (a mask of any size) is outlined in
    white and ``label`` written beside it: the defect that was named. Inside the outline the colour is only a tint
    (:data:`REGION_TINT` of its strength), so the defect itself stays visible under its outline.
    """
    h, w = rgb.shape[:2]
    scale = min(1.0, OVERLAY_MAX_SIDE / max(h, w))
    if scale < 1.0:
        h, w = max(1, round(h * scale)), max(1, round(w * scale))
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    m = np.clip(cv2.resize(anomaly_map.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
    colour = cv2.applyColorMap((m * 255).astype(np.uint8), cv2.COLORMAP_JET).astype(np.float32)
    a = alpha * np.clip((m - OVERLAY_FLOOR) / (1.0 - OVERLAY_FLOOR), 0.0, 1.0)
    inside = None
    if region is not None and region.any():
        inside = cv2.resize(region.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        a = np.where(inside, a * REGION_TINT, a)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.float32)
    out = np.clip(bgr * (1 - a[:, :, None]) + colour * a[:, :, None], 0, 255).astype(np.uint8)
    if inside is not None:
        outline(out, inside, label)
    return out


def outline(bgr: np.ndarray, region: np.ndarray, label: str = "") -> None:
    """Draw ``region`` (boolean mask, resized to ``bgr``) as a white outline with a dark edge, and ``label`` above
    its box, in place."""
    h, w = bgr.shape[:2]
    m = cv2.resize(region.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    thick = max(1, round(max(h, w) / 400))
    cv2.drawContours(bgr, contours, -1, (0, 0, 0), thick + 2)
    cv2.drawContours(bgr, contours, -1, (255, 255, 255), thick)
    if label:
        x, y, bw, bh = cv2.boundingRect(m)
        _label(bgr, label, (x, y, bw, bh), thick)


def _label(bgr: np.ndarray, text: str, box: tuple[int, int, int, int], thick: int) -> None:
    """Write ``text`` in white on a dark plate just above ``box`` (x, y, w, h), or below it where the frame has no
    room above, kept inside the frame: readable on any texture and clear of the outline."""
    h, w = bgr.shape[:2]
    scale = max(0.5, max(h, w) / 560)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad, gap = max(2, round(3 * scale)), thick + 2
    plate_h = th + base + 2 * pad
    x, y, _, bh = box
    top = y - gap - plate_h
    if top < 0:
        top = min(y + bh + gap, h - plate_h)
    top = max(0, top)
    left = int(np.clip(x, 0, max(0, w - tw - 2 * pad)))
    plate = bgr[top : top + plate_h, left : left + tw + 2 * pad]
    plate[:] = (plate.astype(np.float32) * 0.3).astype(np.uint8)
    org = (left + pad, top + pad + th)
    cv2.putText(bgr, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)


def heatmap_name(path: str) -> str:
    """A unique, readable PNG name for the heatmap of ``path`` (same stems in different folders do not clash)."""
    tag = hashlib.sha1(path.encode("utf-8")).hexdigest()[:8]
    return f"{Path(path).stem}.{tag}.heatmap.png"


def write_heatmap(p: Prediction, folder: Path) -> str | None:
    """Write the overlay PNG of ``p`` into ``folder``; its path, or None without a map."""
    if p.anomaly_map is None or p.image is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / heatmap_name(p.path)
    ok, buf = cv2.imencode(".png", overlay(p.image, p.anomaly_map, region=p.region_mask, label=display_label(p)))
    if not ok:  # pragma: no cover - PNG encoding of a uint8 BGR image does not fail
        return None
    target.write_bytes(buf.tobytes())
    return str(target)
