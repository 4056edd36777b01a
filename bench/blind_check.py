"""Can a person see the benchmark's defects? A blinded look at a surface's test frames, scored against the truth and
against a model's scores at the same false-alarm rate.

Issue 10 asks for defects "visible to a person, no louder than the texture". This checks the first half the way a
person would: ``render`` writes numbered sheets of frames (half good, half defective over the labelled families;
the held-out family is never shown, so nobody looks at it while tuning) enlarged with nearest-neighbour pixels, and
keeps the answers in ``key.json`` (do not open it before you answer). Look at the sheets, write down the numbers of
the frames you think are defective, then ``score`` them:

    python bench/blind_check.py render --set dev/gravel/gravel --out /tmp/blind --frames 16 --seed 1
    python bench/blind_check.py score --out /tmp/blind --defective 0,3,6 --predictions p.csv

``score`` prints one JSON object: which families the person found, their hit and false-alarm rates, and, with
``--predictions`` (what ``sslinspect predict`` wrote for the whole test set), the model's hit rate per family at
the person's false-alarm rate (the model's threshold set on the good frames of the whole set, not the sheets).
Use a development set (e.g. seed 7), never the test sets you report.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import cv2
import numpy as np

from bench.quality_data import GOOD
from bench.quality_defects import DEFAULT_HELD_OUT

PER_SHEET = 4  # frames per sheet, 2 × 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render", help="write blinded sheets and the key")
    r.add_argument("--set", type=Path, required=True, help="a surface set folder (holds test.csv)")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--frames", type=int, default=16, help="frames in all (half good); a multiple of 4")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--zoom", type=float, default=1.5, help="enlargement of each frame (nearest neighbour)")
    r.add_argument("--held-out", default=DEFAULT_HELD_OUT, help="family never shown")
    s = sub.add_parser("score", help="score the frames a person called defective")
    s.add_argument("--out", type=Path, required=True, help="the folder render wrote")
    s.add_argument("--defective", default="", help="comma-separated frame numbers called defective")
    s.add_argument("--predictions", type=Path, help="predict's CSV for the whole test set of --set")
    args = p.parse_args(argv)
    if args.cmd == "render" and (args.frames < PER_SHEET or args.frames % PER_SHEET):
        p.error(f"--frames must be a positive multiple of {PER_SHEET}")
    return args


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def pick_frames(rows: list[dict[str, str]], n: int, seed: int, held_out: str) -> list[dict[str, str]]:
    """``n`` rows in a random order, half good and half defective, never ``held_out``; each family about as often."""
    rng = np.random.default_rng(seed)
    good = [r for r in rows if r["label"] == GOOD]
    bad = [r for r in rows if r["label"] not in (GOOD, held_out)]
    n_bad = n // 2
    if len(good) < n - n_bad or len(bad) < n_bad:
        raise ValueError(f"the set has {len(good)} good and {len(bad)} defective frames, {n} asked for")
    families = sorted({r["label"] for r in bad})
    by_family = {f: [r for r in bad if r["label"] == f] for f in families}
    chosen_bad = []
    for k, f in enumerate(rng.permutation(families).tolist() * (n_bad // len(families) + 1)):
        if k == n_bad:
            break
        pool = [r for r in by_family[f] if r not in chosen_bad]
        chosen_bad.append(pool[int(rng.integers(len(pool)))])
    chosen = [good[i] for i in rng.choice(len(good), n - n_bad, replace=False)] + chosen_bad
    return [chosen[i] for i in rng.permutation(len(chosen))]


def render(args: argparse.Namespace) -> dict[str, Any]:
    rows = _rows(args.set / "test.csv")
    chosen = pick_frames(rows, args.frames, args.seed, args.held_out)
    args.out.mkdir(parents=True, exist_ok=True)
    sheets = []
    for s in range(0, len(chosen), PER_SHEET):
        tiles = []
        for k, row in enumerate(chosen[s : s + PER_SHEET]):
            img = cv2.imread(str(args.set / row["path"]), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"{args.set / row['path']}: not a readable image")
            side = round(img.shape[0] * args.zoom)
            img = cv2.resize(img, (side, side), interpolation=cv2.INTER_NEAREST)
            cv2.putText(img, str(s + k), (6, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 255, 255), 2, cv2.LINE_AA)
            tiles.append(img)
        sheet = args.out / f"sheet_{s // PER_SHEET}.png"
        cv2.imwrite(str(sheet), np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])]))
        sheets.append(str(sheet))
    frames = [{"path": r["path"], "label": r["label"]} for r in chosen]
    key = {"set": str(args.set), "seed": args.seed, "frames": frames}
    (args.out / "key.json").write_text(json.dumps(key, indent=1))
    return {"sheets": sheets, "frames": len(chosen), "key": str(args.out / "key.json")}


def _rate(hits: int, n: int) -> float | None:
    return None if n == 0 else hits / n


def score(args: argparse.Namespace) -> dict[str, Any]:
    key = json.loads((args.out / "key.json").read_text())
    frames = key["frames"]
    called = {int(x) for x in args.defective.split(",") if x.strip()}
    if bad := sorted(c for c in called if not 0 <= c < len(frames)):
        raise ValueError(f"frame numbers out of range 0–{len(frames) - 1}: {bad}")
    labels = [f["label"] for f in frames]
    shown, found = Counter(labels), Counter(labels[i] for i in called)
    n_good, n_bad = shown[GOOD], len(frames) - shown[GOOD]
    person_fpr = _rate(found[GOOD], n_good) or 0.0
    out: dict[str, Any] = {
        "set": key["set"],
        "frames": len(frames),
        "person": {
            "hit_rate": _rate(sum(found[f] for f in shown if f != GOOD), n_bad),
            "false_alarm_rate": person_fpr,
            "found_per_family": {f: f"{found[f]}/{shown[f]}" for f in sorted(shown) if f != GOOD},
        },
    }
    if args.predictions:
        out["model"] = model_at(Path(key["set"]), args.predictions, person_fpr, sorted(f for f in shown if f != GOOD))
    return out


def model_at(root: Path, predictions: Path, fpr: float, families: list[str]) -> dict[str, Any]:
    """The model's hit rate per family over the whole test set at the threshold that flags ``fpr`` of its good
    frames (the good frames' (1 − fpr) quantile of ``anomaly_score``)."""
    truth = {Path(r["path"]).name: r["label"] for r in _rows(root / "test.csv")}
    scores: dict[str, list[float]] = {}
    for r in _rows(predictions):
        label = truth.get(Path(r["path"]).name)
        if label is not None and r.get("anomaly_score"):
            scores.setdefault(label, []).append(float(r["anomaly_score"]))
    if not scores.get(GOOD):
        raise ValueError(f"{predictions}: no good frames of {root} scored")
    thr = float(np.quantile(scores[GOOD], 1.0 - fpr)) if fpr > 0 else max(scores[GOOD])
    per = {f: float(np.mean(np.array(scores.get(f, [])) > thr)) for f in families if scores.get(f)}
    return {"threshold": thr, "hit_rate_mean_of_families": float(np.mean(list(per.values()))), "hit_rate": per}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = render(args) if args.cmd == "render" else score(args)
    except (OSError, ValueError) as exc:
        print(f"blind_check: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
