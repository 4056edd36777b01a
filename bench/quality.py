"""Quality benchmark: does the exported model find defects on realistic surfaces? One JSON result.

Per surface and seed it generates a surface set (bench/quality_data.py: real photographed and procedural
surfaces, nine defect families, one of them held out of the training images and the labels), then runs the real
command line, each step a subprocess ``python -m sslinspect ...``::

    init → labels import → pretrain → train → export → predict

and scores what ``predict`` wrote (its CSV: anomaly_score, is_defect, label) against the truth. The raw anomaly
map is not in predict's output (``--heatmaps`` writes colour overlays clipped to [0, 1] with a floor, not values),
so for pixel AUROC the test images are run once more through the exported ONNX model with the project's own
ONNX Runtime predictor (:class:`sslinspect.infer.onnx_predictor.Predictor`, the code ``predict`` uses) and its
``anomaly_map`` output is resized to the frame. Simple floors (bench/quality_metrics.py) are measured on the same
images in the same run.

    python bench/quality.py --quick                                   # 1 surface, small sets, 1 min pretraining
    python bench/quality.py --max-minutes 15 --seeds 0,1,2 --out q.json
    python bench/quality.py --quick --method simclr --set pretrain.image_size=128 --work /tmp/q --keep

Needs the ``bench`` extra for the photographed surfaces (pip install -e '.[bench]'). JSON goes to stdout and to
``--out``; a markdown table goes to stderr.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout: `python bench/quality.py`

import cv2
import numpy as np

from bench.machine import describe as describe_machine
from bench.quality_data import (
    DEFAULT_SURFACES,
    GOOD,
    SURFACES,
    SetParams,
    SurfaceSet,
    draw_labels,
    generate_surface,
    read_mask,
)
from bench.quality_defects import DEFAULT_HELD_OUT, FAMILIES
from bench.quality_metrics import (
    aupro,
    aupro_per_family,
    auroc,
    balanced_accuracy,
    floor_scores,
    patch_knn,
    per_family_auroc,
    pixel_auroc,
    pixel_auroc_per_family,
    recall,
)
from bench.quality_naming import score_naming
from bench.quality_summary import summarise, table

REPO = Path(__file__).resolve().parent.parent


class _SetSizes(TypedDict):
    """The set sizes of a run (``SetParams`` fields)."""

    n_train: int
    n_shots: int
    n_good_labels: int
    n_test: int
    n_test_good: int


FULL_SETS: _SetSizes = {"n_train": 600, "n_shots": 5, "n_good_labels": 10, "n_test": 30, "n_test_good": 90}
QUICK_SETS: _SetSizes = {"n_train": 200, "n_shots": 3, "n_good_labels": 6, "n_test": 10, "n_test_good": 30}
FLOORS_VERSION = 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--surfaces", help=f"comma list of {', '.join(SURFACES)} (default {','.join(DEFAULT_SURFACES)})")
    p.add_argument("--seeds", help="comma list of seeds (default 0,1,2; --quick: 0)")
    p.add_argument("--quick", action="store_true", help="1 surface (brick), small sets, 1 min pretraining")
    p.add_argument("--frame", type=int, default=256, help="native frame side in px, 256-512 (default 256)")
    p.add_argument("--held-out", default=DEFAULT_HELD_OUT, choices=FAMILIES, help="family never labelled/trained")
    p.add_argument("--method", help="pretrain --method (default: the CLI's)")
    p.add_argument("--backbone", help="pretrain --backbone (default: the CLI's)")
    p.add_argument("--max-minutes", type=float, help="pretraining budget per surface and seed (default 15; quick 1)")
    p.add_argument("--epochs", type=int, help="pretrain --epochs")
    p.add_argument("--image-size", type=int, help="pretrain --image-size")
    p.add_argument("--batch-size", type=int, help="pretrain --batch-size")
    p.add_argument("--device", help="--device for pretrain/train/predict (default: the CLI's, auto)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE", help="passed to every step")
    p.add_argument("--train-cmd", default="train", help="the CLI's head-fitting command (train, or its new name)")
    p.add_argument("--heatmaps", action="store_true", help="also run predict --heatmaps (overlay PNGs in the work dir)")
    p.add_argument("--no-floors", action="store_true", help="skip the simple floors")
    p.add_argument(
        "--ceiling",
        metavar="FAMILIES",
        help="diagnostic, not the product: pretrain on the benchmark's own painters of these labelled families "
        "(bench/ceiling.py) instead of the product's synthesis",
    )
    p.add_argument(
        "--reuse-pretrain",
        action="store_true",
        help="keep a project already in the work folder and its pretraining run: only fit, export and predict again "
        "(to measure a change to the head, the export or predict without pretraining again)",
    )
    p.add_argument(
        "--label-draws",
        type=int,
        default=1,
        metavar="N",
        help="name the defects from N label draws (default 1): draw 0 is the set's labels.csv, each further draw "
        "labels other training images (n_shots per family, drawn anew) in a copy of the project and fits, exports and "
        "predicts again on the same pretraining run; the summary gives type accuracy over every seed and draw",
    )
    p.add_argument("--work", type=Path, help="work folder (data is reused when it matches; default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (implied by --work)")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.add_argument(
        "--collect",
        nargs="+",
        type=Path,
        metavar="RESULT.json",
        help="run nothing: summarise per-run results saved earlier (WORK/results/*.json), e.g. of parallel runs",
    )
    args = p.parse_args(argv)
    if not 256 <= args.frame <= 512:
        p.error("--frame must be 256-512")
    surfaces = args.surfaces.split(",") if args.surfaces else (["brick"] if args.quick else list(DEFAULT_SURFACES))
    bad = [s for s in surfaces if s not in SURFACES]
    if bad:
        p.error(f"unknown surface(s) {bad}; known: {', '.join(SURFACES)}")
    args.surfaces = surfaces
    if args.ceiling:  # refuse a typo or the held-out family before any data is made
        from bench.ceiling import parse_families

        args.ceiling = ",".join(parse_families(args.ceiling))
    if args.label_draws < 1:
        p.error("--label-draws must be >= 1")
    args.seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    if args.max_minutes is None:
        args.max_minutes = 1.0 if args.quick else 15.0
    return args


# -- running the CLI --------------------------------------------------------------------------------------------------
def cli(step: str, argv: list[str], log_dir: Path, entry: list[str] | None = None) -> tuple[float, str]:
    """Run ``python -m sslinspect ARGV`` (or ``python ENTRY... ARGV``); its wall time and last stdout line. Raises on
    a non-zero exit."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    t0 = time.monotonic()
    r = subprocess.run(
        [sys.executable, *(entry or ["-m", "sslinspect"]), *argv], capture_output=True, text=True, env=env, check=False
    )
    seconds = time.monotonic() - t0
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / f"{step}.log").write_text(f"$ sslinspect {' '.join(argv)}\n{r.stdout}\n--- stderr\n{r.stderr}")
    if r.returncode != 0:
        raise RuntimeError(f"sslinspect {step} failed ({r.returncode}): {r.stderr.strip()[-1500:]}")
    lines = [x for x in r.stdout.strip().splitlines() if x.strip()]
    return seconds, (lines[-1] if lines else "")


def _opt(name: str, value: object) -> list[str]:
    return [] if value is None else [name, str(value)]


def _project(work: Path, tag: str) -> Path:
    return work / "projects" / f"{tag}.sslproj"


def _copy_for_draw(work: Path, base_tag: str, tag: str) -> Path:
    """A copy of the project ``base_tag`` (its pretraining run included) with no labels, for a label draw."""
    from sslinspect.project import Project

    src, dst = _project(work, base_tag), _project(work, tag)
    shutil.rmtree(dst, ignore_errors=True)
    # the base project's own fits and exports are not needed: the draw fits its own
    shutil.copytree(src, dst, ignore=lambda d, names: [n for n in names if Path(d) == src / "runs" and n != "pretrain"])
    with Project.open(dst) as proj:
        for image_id in proj.store.labels():
            proj.store.clear_label(image_id)
    return dst


def run_pipeline(
    ss: SurfaceSet, seed: int, args: argparse.Namespace, work: Path, draw: int = 0, labels: Path | None = None
) -> dict[str, Any]:
    """The CLI path on one surface set; step times, notes and the paths it wrote.

    ``draw`` > 0: a label draw. The project of draw 0 (pretrained) is copied without its labels, ``labels`` is
    imported into the copy, and only ``labels import → fit → export → predict`` run, on the same pretraining run.
    """
    base_tag = f"{ss.params.surface}-s{seed}"
    tag = base_tag if draw == 0 else f"{base_tag}-draw{draw}"
    project, logs = _project(work, tag), work / "logs" / tag
    reuse = args.reuse_pretrain and any((project / "runs" / "pretrain").glob("*/checkpoints"))
    if draw:
        project = _copy_for_draw(work, base_tag, tag)
    elif not reuse:
        shutil.rmtree(project, ignore_errors=True)
    model, preds = work / "models" / tag / "model.onnx", work / "models" / tag / "test_predictions.csv"
    sets = [x for s in args.set for x in ("--set", s)]
    device = _opt("--device", args.device)
    pretrain = [
        *_opt("--method", args.method),
        *_opt("--backbone", args.backbone),
        *_opt("--epochs", args.epochs),
        *_opt("--image-size", args.image_size),
        *_opt("--batch-size", args.batch_size),
        "--max-minutes",
        str(args.max_minutes),
        "--seed",
        str(seed),
    ]
    steps: list[tuple[str, list[str]]] = [
        ("init", ["init", str(project), "--images", str(ss.train_dir), *sets]),
        ("labels", ["labels", "import", str(project), str(labels or ss.labels_csv)]),
        ("pretrain", ["pretrain", str(project), *pretrain, *device, *sets]),
        ("train", [args.train_cmd, str(project), *device, *sets]),
        ("export", ["export", str(project), "--out", str(model), *sets]),
        ("predict", ["predict", str(model), str(ss.test_dir), "--out", str(preds), *device]),
    ]
    if args.heatmaps:
        steps[-1][1].extend(["--heatmaps", str(work / "heatmaps" / tag)])
    if draw:
        steps = [steps[1], *steps[3:]]
    elif reuse:
        steps = steps[3:]
    seconds, notes = {}, {}
    ceiling = [str(REPO / "bench" / "ceiling.py"), "--families", args.ceiling] if args.ceiling else None
    for name, argv in steps:
        seconds[name], notes[name] = cli(name, argv, logs, ceiling if name == "pretrain" else None)
        print(f"[{tag}] {name}: {seconds[name]:.0f} s  {notes[name][:100]}", file=sys.stderr, flush=True)
    return {"seconds": seconds, "notes": notes, "model_path": str(model), "predictions": str(preds)}


def raw_maps(model: Path, paths: list[Path], device: str | None) -> tuple[list[np.ndarray | None], int]:
    """The exported model's raw ``anomaly_map`` per image (None without that output) and its input size."""
    from sslinspect.infer.onnx_predictor import Predictor

    pred = Predictor(model, device=device or "auto")
    maps = [p.anomaly_map for p in pred.predict_paths(paths, keep_maps=True)]
    return maps, pred.image_size


# -- scoring ----------------------------------------------------------------------------------------------------------
def score_model(
    rows: list[dict[str, str]], preds: dict[str, dict[str, str]], labelled: tuple[str, ...], held_out: str
) -> dict[str, Any]:
    """Image-level metrics of predict's CSV rows (keyed by file name) against the test truth, and how confident its
    defect names are (:func:`bench.quality_naming.score_naming`, from its ``type_sure`` column)."""
    truth = [r["label"] for r in rows]
    p = [preds[Path(r["path"]).name] for r in rows]
    score = np.array([float(x["anomaly_score"]) for x in p])
    flagged = np.array([x["is_defect"] == "1" for x in p])
    bad = np.array([t != GOOD for t in truth])
    good = ~bad
    per_family = per_family_auroc(truth, score, FAMILIES)
    typed = [(t, x["label"]) for t, x in zip(truth, p, strict=True) if t in labelled]
    typed_flagged = [(t, x["label"]) for t, x in zip(truth, p, strict=True) if t in labelled and x["is_defect"] == "1"]
    held = [x for t, x in zip(truth, p, strict=True) if t == held_out]
    seen = bad & np.array([t != held_out for t in truth])
    naming = score_naming(truth, p, labelled, held_out)
    return {
        "image_auroc": auroc(bad, score),
        "image_auroc_labelled_families": auroc(seen[seen | good], score[seen | good]),
        "per_family_auroc": per_family,
        "ok_ng_balanced_accuracy": balanced_accuracy(bad.tolist(), flagged.tolist()),
        "good_flagged_rate": float(flagged[good].mean()) if good.any() else float("nan"),
        "defect_type_balanced_accuracy": balanced_accuracy([t for t, _ in typed], [q for _, q in typed]),
        # the same over the labelled-family defects the model flagged NG: typing alone, without the misses
        "defect_type_balanced_accuracy_flagged": balanced_accuracy(
            [t for t, _ in typed_flagged], [q for _, q in typed_flagged]
        ),
        "held_out": {
            "family": held_out,
            "auroc": per_family[held_out],
            "flagged_rate": float(np.mean([x["is_defect"] == "1" for x in held])) if held else float("nan"),
            "labelled_as": dict(Counter(x["label"] for x in held).most_common()),
            **naming["held_out"],
        },
        "type_sure_coverage_flagged": naming["type_sure_coverage_flagged"],
        "type_sure_accuracy_flagged": naming["type_sure_accuracy_flagged"],
        "per_type_recall": {f: recall([t for t, _ in typed], [q for _, q in typed], f) for f in labelled},
        # truth -> predict's label -> count, over the labelled families' test defects (a missed one is `good`)
        "type_confusion": {f: dict(Counter(q for t, q in typed if t == f).most_common()) for f in labelled},
    }


def _read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img if img.ndim == 2 else np.ascontiguousarray(img[..., ::-1])


def score_floors(ss: SurfaceSet, rows: list[dict[str, str]], masks: list[np.ndarray]) -> dict[str, Any]:
    """The floors' metrics on ``ss`` (cached in the set's folder: the data is a function of its parameters)."""
    cache = ss.root / "floors.json"
    if cache.is_file():
        have = json.loads(cache.read_text(encoding="utf-8"))
        if have.get("version") == FLOORS_VERSION:
            return dict(have["floors"])
    t0 = time.monotonic()
    train = [_read_rgb(ss.root / r["path"]) for r in ss.rows("train")]
    test = [_read_rgb(ss.root / r["path"]) for r in rows]
    truth = [r["label"] for r in rows]
    bad = [t != GOOD for t in truth]
    scores = floor_scores(train, test)
    patch_scores, patch_maps = patch_knn(train, test)
    scores["patch_knn"] = patch_scores
    out: dict[str, Any] = {
        name: {"image_auroc": auroc(bad, s), "per_family_auroc": per_family_auroc(truth, s, FAMILIES)}
        for name, s in scores.items()
    }
    out["patch_knn"]["pixel_auroc"] = pixel_auroc(patch_maps, masks)
    out["seconds"] = time.monotonic() - t0
    cache.write_text(json.dumps({"version": FLOORS_VERSION, "floors": out}, indent=1))
    return out


def run_one(surface: str, seed: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Generate, run and score one surface and seed."""
    sizes = QUICK_SETS if args.quick else FULL_SETS
    params = SetParams(surface=surface, seed=seed, frame=args.frame, held_out=args.held_out, **sizes)
    t0 = time.monotonic()
    ss = generate_surface(work / "data" / f"seed{seed}", params)
    generate_s = time.monotonic() - t0
    rows = ss.rows("test")
    masks = [read_mask(ss, r) for r in rows]
    floors = None if args.no_floors else score_floors(ss, rows, masks)
    run = run_pipeline(ss, seed, args, work)
    with Path(run["predictions"]).open(newline="", encoding="utf-8") as fh:
        preds = {Path(r["path"]).name: r for r in csv.DictReader(fh)}
    model = score_model(rows, preds, params.labelled, params.held_out)
    t1 = time.monotonic()
    maps, size = raw_maps(Path(run["model_path"]), [ss.root / r["path"] for r in rows], args.device)
    whole = None if any(m is None for m in maps) else [m for m in maps if m is not None]
    families = [r["label"] for r in rows]
    model["pixel_auroc"] = None if whole is None else pixel_auroc(whole, masks)
    model["per_family_pixel_auroc"] = None if whole is None else pixel_auroc_per_family(whole, masks, families)
    model["aupro"] = None if whole is None else aupro(whole, masks)
    model["per_family_aupro"] = None if whole is None else aupro_per_family(whole, masks, families)
    model["model_input_size"] = size
    run["seconds"]["maps"] = time.monotonic() - t1
    run["seconds"]["generate"] = generate_s
    result = {"surface": surface, "seed": seed, **run, "model": model, "floors": floors, "machine": _machine()}
    if args.label_draws > 1:
        result["label_draws"] = [_score_draw(0, ss, model, run["seconds"])]
        for d in range(1, args.label_draws):
            labels = draw_labels(ss, d)
            drawn = run_pipeline(ss, seed, args, work, draw=d, labels=labels)
            with Path(drawn["predictions"]).open(newline="", encoding="utf-8") as fh:
                preds = {Path(r["path"]).name: r for r in csv.DictReader(fh)}
            scored = score_model(rows, preds, params.labelled, params.held_out)
            result["label_draws"].append(_score_draw(d, ss, scored, drawn["seconds"], labels))
    (work / "results").mkdir(exist_ok=True)
    (work / "results" / f"{surface}-s{seed}.json").write_text(json.dumps(result, indent=1, default=float))
    return result


#: What a label draw records of its scores (the map is the same network's: image and pixel AUROC do not move).
DRAW_KEYS = (
    "defect_type_balanced_accuracy",
    "defect_type_balanced_accuracy_flagged",
    "ok_ng_balanced_accuracy",
    "per_type_recall",
    "type_confusion",
    "held_out",
    "type_sure_coverage_flagged",
    "type_sure_accuracy_flagged",
)


def _score_draw(
    draw: int, ss: SurfaceSet, model: dict[str, Any], seconds: dict[str, float], labels: Path | None = None
) -> dict[str, Any]:
    """One label draw's naming scores and which images it labelled."""
    with (labels or ss.labels_csv).open(newline="", encoding="utf-8") as fh:
        labelled = [r["path"] for r in csv.DictReader(fh) if r["label"] != GOOD]
    return {"draw": draw, "labelled_defects": labelled, "seconds": seconds, **{k: model.get(k) for k in DRAW_KEYS}}


def _machine() -> dict[str, Any]:
    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    return describe_machine(
        omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
        torch=version("torch"),
        onnxruntime=version("onnxruntime-gpu") or version("onnxruntime"),
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    keep = args.keep or args.work is not None
    work = (args.work or Path(tempfile.mkdtemp(prefix="sslinspect-quality-"))).resolve() if not args.collect else Path()
    t0 = time.monotonic()
    if args.collect:
        results = [json.loads(p.read_text(encoding="utf-8")) for p in args.collect]
        keep = False
    else:
        try:
            results = [run_one(s, seed, args, work) for s in args.surfaces for seed in args.seeds]
        finally:
            if not keep:
                shutil.rmtree(work, ignore_errors=True)
    summary = summarise(results)
    settings = dict(vars(args))
    out = {
        "benchmark": "quality",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": results[0].get("machine", _machine()) if args.collect and results else _machine(),
        "settings": settings,
        "work": str(work) if keep else None,
        "seconds": time.monotonic() - t0,
        "summary": summary,
        "table_md": table(summary),
        "runs": results,
    }
    text = json.dumps(out, indent=1, default=lambda o: str(o) if isinstance(o, Path) else float(o))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(table(summary), file=sys.stderr)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
