"""``sslinspect report``: one self-contained HTML file (inline CSS, base64 PNGs, no scripts, nothing fetched) with
the latest model's metrics, confusion matrix, ROC/PR curves, threshold, example heatmaps and provenance."""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import html
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sslinspect.configio import section_of
from sslinspect.data.cache import build_cache
from sslinspect.errors import DataError
from sslinspect.events import Artifact, Reporter, null_reporter
from sslinspect.fewshot.model import InspectionHead
from sslinspect.fsutil import atomic_write_text, read_json
from sslinspect.project import GOOD, Project
from sslinspect.report.plots import curve_chart, histogram_chart, png_data_uri
from sslinspect.review.heatmaps import RunHeatmaps

SECTIONS = ("summary", "threshold", "confusion", "curves", "examples", "export", "provenance")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}.diag{background:#e4f2e4;font-weight:bold}
.grid{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ddd;padding:6px;font-size:.85em;width:260px}
.card img{width:256px;image-rendering:pixelated}.muted{color:#777}.bad{color:#b00}.ok{color:#070}
code{background:#f5f5f5;padding:0 .2em}
"""


@dataclass(frozen=True, slots=True)
class ReportResult:
    """Where the report went and what it covers."""

    path: str
    sections: tuple[str, ...]
    examples: int
    size_bytes: int


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _e(x: object) -> str:
    return html.escape(str(x))


def _fmt(x: object, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, float) else ("n/a" if x is None else _e(x))


def _num(x: object, spec: str = ".3f", scale: float = 1.0) -> str:
    """A number from a file as ``spec``; anything else (a tampered value) escaped as text, never markup."""
    if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x):
        return format(x * scale, spec)
    return "n/a" if x is None else _e(x)


def _guarded(build: Callable[[], str], what: str) -> str:
    """A section built from ``metrics.json``; a malformed (tampered) file gives a note, not a crash."""
    try:
        return build()
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return f"<p class=bad>The {_e(what)} in metrics.json are malformed; not shown.</p>"


class _Raw(str):
    """Markup this module wrote itself (every value inside it already escaped)."""


def _table(rows: list[tuple[str, object]]) -> str:
    body = "".join(
        f"<tr><th class=l>{_e(k)}</th><td class=l>{v if isinstance(v, _Raw) else _fmt(v)}</td></tr>" for k, v in rows
    )
    return f"<table>{body}</table>"


def _confusion(metrics: dict[str, Any]) -> str:
    cv = metrics.get("cv")
    if not cv:
        return "<p class=muted>No cross-validation: label at least two classes (2+ images each).</p>"
    classes = metrics["classes"]
    head = "".join(f"<th>{_e(c)}</th>" for c in classes)
    rows = []
    for i, c in enumerate(classes):
        cells = "".join(
            f"<td class='{'diag' if i == j else ''}'>{_e(v)}</td>" for j, v in enumerate(cv["confusion"][i])
        )
        pc = cv["per_class"].get(c, {})
        rows.append(
            f"<tr><th class=l>{_e(c)}</th>{cells}<td>{_fmt(pc.get('precision'))}</td>"
            f"<td>{_fmt(pc.get('recall'))}</td><td>{_e(pc.get('support', ''))}</td></tr>"
        )
    return (
        f"<p>Out-of-fold predictions of the {_e(cv['kind'])} classifier over {_e(cv['folds'])} folds: balanced "
        f"accuracy <b>{_num(cv['balanced_accuracy'])}</b>, accuracy {_num(cv['accuracy'])}. Rows: true class; columns: "
        f"predicted.</p><table><tr><th class=l>true \\ predicted</th>{head}<th>precision</th><th>recall</th>"
        f"<th>n</th></tr>{''.join(rows)}</table>"
    )


def _curves(metrics: dict[str, Any], threshold: float) -> str:
    curves = metrics.get("curves") or {}
    hist = metrics.get("score_histogram")
    imgs = []
    if curves:
        roc, pr = curves["roc"], curves["pr"]
        k = int(np.argmin(np.abs(np.asarray(roc["threshold"]) - threshold)))
        imgs.append(
            curve_chart(
                f"ROC (AUROC {metrics.get('anomaly_auroc_labelled') or 0:.3f})",
                "false positive rate",
                "true positive rate",
                roc["fpr"],
                roc["tpr"],
                marker=(roc["fpr"][k], roc["tpr"][k]),
                diagonal=True,
            )
        )
        j = int(np.argmin(np.abs(np.asarray(pr["threshold"]) - threshold))) if pr["threshold"] else None
        imgs.append(
            curve_chart(
                "precision / recall",
                "recall",
                "precision",
                pr["recall"],
                pr["precision"],
                marker=(pr["recall"][j], pr["precision"][j]) if j is not None else None,
            )
        )
    if hist:
        series = {"calibration": hist["calibration"], "labelled good": hist["labelled_good"]}
        series["labelled defect"] = hist["labelled_defect"]
        imgs.append(histogram_chart(hist["edges"], series, {"threshold": threshold}))
    if not imgs:
        return "<p class=muted>No curves: label good images and defects to measure the anomaly score.</p>"
    note = "" if curves else "<p class=muted>ROC/PR need labelled good images and labelled defects.</p>"
    tags = "".join(f"<img alt='chart' src='{png_data_uri(i)}'>" for i in imgs)
    return f"{note}<div class=grid>{tags}</div><p class=muted>Red dot: the operating threshold.</p>"


def _examples(project: Project, run_dir: Path, head: InspectionHead, n: int) -> tuple[str, int]:
    """Heatmap cards: labelled defects, the most unusual unlabelled images, and typical good ones."""
    heat, scores_path = RunHeatmaps.open(run_dir), run_dir / "scores.csv"
    if heat is None or not scores_path.is_file():
        return "<p class=muted>No stored anomaly maps in this run (image-level model or a very large project).</p>", 0
    with scores_path.open(newline="", encoding="utf-8") as fh:  # csv: relpaths may hold commas
        rows_csv = list(csv.DictReader(fh))
    ids = [int(r["image_id"]) for r in rows_csv]
    scores = np.array([float(r["anomaly_score"]) for r in rows_csv])
    labels = project.store.labels()
    cache = build_cache(project, head.input_size)
    row_of = cache.index_of()
    lab = [k for k, i in enumerate(ids) if labels.get(i) not in (None, GOOD)]
    unl = [k for k in np.argsort(-scores).tolist() if labels.get(ids[k]) is None]
    good = [k for k in np.argsort(np.abs(scores - np.median(scores))).tolist() if labels.get(ids[k]) in (None, GOOD)]
    groups = (("labelled defects", lab[:n]), ("most unusual unlabelled", unl[:n]), ("typical good", good[:n]))
    out, count = [], 0
    for title, rows in groups:
        cards = []
        for k in rows:
            if ids[k] not in row_of or not heat.has(ids[k]):
                continue
            rgb = heat.overlay(ids[k], np.asarray(cache.images[row_of[ids[k]]]))
            assert rgb is not None
            verdict = "NG" if scores[k] > head.anomaly.threshold else "OK"
            rec = project.store.image(ids[k])
            cards.append(
                f"<div class=card><img alt='heatmap' src='{png_data_uri(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))}'><br>"
                f"{_e(rec.relpath if rec else ids[k])}<br>label: {_e(labels.get(ids[k], '—'))}; score "
                f"{scores[k]:.4f} <b class={'bad' if verdict == 'NG' else 'ok'}>{verdict}</b></div>"
            )
            count += 1
        if cards:
            out.append(f"<h3>{_e(title)}</h3><div class=grid>{''.join(cards)}</div>")
    legend = (
        "<p class=muted>Held-out heatmaps (no image is compared with itself). Colour scale fixed for every image: "
        "blue/transparent = like good parts, red = at or above the threshold; normalised against good images, "
        "never per image.</p>"
    )
    return legend + "".join(out), count


def _summary_table(project: Project, head: InspectionHead, metrics: dict[str, Any]) -> str:
    a, cv = head.anomaly, metrics.get("cv")
    return _table(
        [
            ("project", project.name),
            ("classes", ", ".join(head.classes)),
            ("classifier", f"{head.classifier.kind} on {head.descriptor} features"),
            ("cross-validated balanced accuracy", cv.get("balanced_accuracy") if isinstance(cv, dict) else None),
            ("anomaly model", f"{a.kind} ({len(a.bank):,} bank rows), input {head.input_size} px, tiles {head.tiles}"),
            ("anomaly AUROC on labels (held out)", metrics.get("anomaly_auroc_labelled")),
            ("labelled images", metrics.get("labelled")),
            ("images", metrics.get("images")),
        ]
    )


def _threshold_section(metrics: dict[str, Any], head: InspectionHead) -> str:
    """The operating threshold and where it comes from; a forced value (outside the observed scores) says so."""
    a = head.anomaly
    override = metrics.get("threshold_override")
    if isinstance(override, dict) and override.get("forced") is True:
        seen = override.get("observed_scores") or [None, None]
        source = (
            f"FORCED by the engineer (--force): OUTSIDE the anomaly scores observed on this run's images "
            f"({_num(seen[0], '.4f')} to {_num(seen[-1], '.4f')}); "
            f"calibrated: {_num(override.get('calibrated'), '.4f')}"
        )
    elif isinstance(override, dict):
        source = f"set by the engineer (calibrated: {_num(override.get('calibrated'), '.4f')})"
    else:
        source = (
            f"{_e(metrics.get('threshold_percentile'))}th percentile of held-out scores of "
            f"{_e(metrics.get('calibration_images'))} presumed-good images"
        )
    return _table(
        [
            ("NG threshold", a.threshold),
            ("review threshold", a.review_threshold if a.review_threshold < a.threshold else "off"),
            ("source", _Raw(source)),
            ("decision rule", head.decision),
            ("unusual unlabelled images kept out of calibration", metrics.get("suspected_defects")),
        ]
    )


def _export_section(project: Project) -> str:
    """The latest exported model; its sha256 is recomputed, and parity is vouched for only if it still matches."""
    model = project.latest("export")
    if model is None:
        return "<p class=muted>Not exported yet.</p>"
    sidecar = next(
        (p for p in (model.with_suffix(".json"), model.parent.parent / "model.json") if p.is_file()),
        None,
    )
    if sidecar is None:
        return "<p class=muted>Not exported yet.</p>"
    meta = read_json(sidecar)
    meta = meta if isinstance(meta, dict) else {}
    raw_parity = meta.get("parity")
    parity: dict[str, Any] = raw_parity if isinstance(raw_parity, dict) else {}
    actual = _sha256(model) if model.is_file() else None
    matches = actual is not None and actual == meta.get("sha256")
    if actual is None:
        sha: object = _Raw("<b class=bad>model file missing</b>")
    elif matches:
        sha = actual
    else:
        sha = _Raw(
            f"{_e(actual)} <b class=bad>does not match the export record ({_e(meta.get('sha256'))}): the model "
            "file was changed or replaced after export</b>"
        )
    if not matches:
        parity_text: object = _Raw("<b class=bad>not vouched for: the file is not the model that was checked</b>")
    else:
        parity_text = (
            f"{'passed' if parity.get('passed') is True else 'FAILED'} on {_e(parity.get('images'))} images, "
            f"max |Δ| score {_num(parity.get('max_abs_diff_anomaly_score', 0), '.1e')}"
        )
    rows: list[tuple[str, object]] = [
        ("model", project.relative(model)),
        ("sha256 (recomputed now)", sha),
        ("precision", meta.get("precision")),
        ("parity (PyTorch vs ONNX Runtime)", parity_text),
    ]
    pc = meta.get("precision_check")
    if isinstance(pc, dict) and matches:
        verdict = "passed" if pc.get("passed") is True else "FORCED past the tolerance"
        rows.append(
            ("precision check", f"decisions agree {_num(pc.get('decision_agreement'), '.1f', 100)}%, {verdict}")
        )
    return _table(rows)


def _provenance(project: Project, ckpt: Path, run_dir: Path, fs_cfg: dict[str, Any], pre_cfg: dict[str, Any]) -> str:
    """Counts, runs, hashes, versions and both configs: enough to trace the model back to its inputs."""
    counts = project.store.counts()
    prov = _table(
        [
            ("image counts", json.dumps(counts)),
            ("labels per class", json.dumps(project.store.label_counts())),
            ("pretraining run", project.relative(ckpt.parent.parent)),
            ("checkpoint sha256", _sha256(ckpt) if ckpt.is_file() else "missing"),
            ("fewshot run", project.relative(run_dir)),
            ("head sha256", _sha256(run_dir / "head.npz")),
            ("versions", json.dumps(fs_cfg.get("versions", {}))),
        ]
    )
    configs = (
        f"<h3>pretraining config</h3><pre>{_e(json.dumps(pre_cfg.get('pretrain', pre_cfg), indent=1))}</pre>"
        f"<h3>fit config</h3><pre>{_e(json.dumps(section_of(fs_cfg, 'fit') or {}, indent=1))}</pre>"
    )
    return prov + configs


def build_report(
    project: Project, out: Path | None = None, *, examples: int = 6, report: Reporter = null_reporter
) -> ReportResult:
    """Write the QA report of the latest fewshot run (see :func:`sslinspect.api.write_report`).

    Raises:
        DataError: if the project has no trained model yet.
    """
    run_dir = project.latest("fewshot")
    if run_dir is None or not (run_dir / "metrics.json").is_file():
        raise DataError(f"{project.root}: no trained model to report on (run `sslinspect fit` first)")
    metrics = read_json(run_dir / "metrics.json")
    if not isinstance(metrics, dict):
        raise DataError(f"{run_dir / 'metrics.json'}: not a JSON object")
    fs_cfg = read_json(run_dir / "config.json")
    head = InspectionHead.load(run_dir / "head.npz")
    ckpt = project.resolve(fs_cfg["checkpoint"])
    pre_cfg_path = ckpt.parent.parent / "config.json"
    pre_cfg = read_json(pre_cfg_path) if pre_cfg_path.is_file() else {}
    a = head.anomaly
    summary, threshold = _summary_table(project, head, metrics), _threshold_section(metrics, head)
    cards, n_examples = _examples(project, run_dir, head, examples)
    export_html = _export_section(project)
    prov = _provenance(project, ckpt, run_dir, fs_cfg, pre_cfg)
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    body = "".join(
        [
            f"<h1>SSL Inspect QA report: {_e(project.name)}</h1><p class=muted>Generated {now}</p>",
            f"<section id=summary><h2>Summary</h2>{summary}</section>",
            f"<section id=threshold><h2>Threshold</h2>{threshold}</section>",
            f"<section id=confusion><h2>Confusion matrix</h2>"
            f"{_guarded(lambda: _confusion(metrics), 'cross-validation results')}</section>",
            "<section id=curves><h2>ROC, precision/recall and score distribution</h2>"
            f"{_guarded(lambda: _curves(metrics, a.threshold), 'curves')}</section>",
            f"<section id=examples><h2>Example images with heatmaps</h2>{cards}</section>",
            f"<section id=export><h2>Exported model</h2>{export_html}</section>",
            f"<section id=provenance><h2>Provenance</h2>{prov}</section>",
        ]
    )
    doc = (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>QA report {_e(project.name)}</title><style>{_CSS}</style></head><body>{body}</body></html>\n"
    )
    target = Path(out) if out is not None else project.root / "reports" / "report.html"
    atomic_write_text(target, doc)
    report(Artifact(kind="report", path=str(target)))
    return ReportResult(str(target), SECTIONS, n_examples, len(doc.encode("utf-8")))
