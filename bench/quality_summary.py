"""Quality benchmark: the summary of its per-surface, per-seed results (means, spreads over seeds and label draws)
and its markdown table. Used by ``bench/quality.py`` (also for ``--collect``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.quality_defects import FAMILIES


def _mean(values: list[float | None]) -> float | None:
    v = [x for x in values if x is not None and x == x]
    return float(np.mean(v)) if v else None


def _sd(values: list[float | None]) -> float | None:
    v = [x for x in values if x is not None and x == x]
    return float(np.std(v, ddof=1)) if len(v) >= 2 else None


def _held_out_unknown(r: dict[str, Any]) -> float | None:
    """The share of the held-out family's test images named ``unknown``."""
    labelled_as = r["model"]["held_out"].get("labelled_as") or {}
    n = sum(labelled_as.values())
    return labelled_as.get("unknown", 0) / n if n else None


#: Summary keys of the held-out family read from ``model.held_out`` (missing in older result files: NaN).
HELD_OUT_KEYS = {
    "held_out_auroc": "auroc",
    "held_out_unknown_or_unsure_flagged": "unknown_or_unsure_flagged",
    "held_out_unknown_or_unsure": "unknown_or_unsure",
    "held_out_confidently_mislabelled": "confidently_mislabelled",
}
#: Summary keys added after the first results were saved: read with a NaN default, so ``--collect`` still works.
NAMING_KEYS = ("type_sure_coverage_flagged", "type_sure_accuracy_flagged")
#: The map's per-region overlap (``quality_metrics.aupro``, added 2026-12-08): also read with a NaN default.
LATER_KEYS = (*NAMING_KEYS, "aupro")


def _value(r: dict[str, Any], key: str) -> float | None:
    if key in HELD_OUT_KEYS:
        return r["model"]["held_out"].get(HELD_OUT_KEYS[key], float("nan"))
    return r["model"].get(key, float("nan")) if key in LATER_KEYS else r["model"][key]


DRAWS_KEY = "defect_type_balanced_accuracy_over_draws"


def _draws_summary(rs: list[dict[str, Any]]) -> dict[str, Any]:
    """Type accuracy over every (seed, label draw) of one surface's runs: mean, sample sd, the spread over draws
    within a seed (mean of the per-seed sds), per-type recall; empty where a run has no label draws."""
    if not rs or not all(r.get("label_draws") for r in rs):
        return {}
    draws = [d for r in rs for d in r["label_draws"]]
    values = [d["defect_type_balanced_accuracy"] for d in draws]
    within = [_sd([d["defect_type_balanced_accuracy"] for d in r["label_draws"]]) for r in rs]
    types = list(draws[0]["per_type_recall"])
    return {
        DRAWS_KEY: _mean(values),
        f"{DRAWS_KEY}_sd": _sd(values),
        f"{DRAWS_KEY}_sd_within_seed": _mean(within),
        "label_draws": len(draws),
        "per_type_recall_over_draws": {t: _mean([d["per_type_recall"][t] for d in draws]) for t in types},
        "held_out_unknown_or_unsure_over_draws": _mean([d["held_out"]["unknown_or_unsure"] for d in draws]),
    }


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Means (and, with several seeds, sample standard deviations ``<key>_sd``) over seeds per surface; over surfaces
    the mean, and the spread over seeds of the per-seed means over surfaces."""
    keys = (
        "image_auroc",
        "pixel_auroc",
        "ok_ng_balanced_accuracy",
        "defect_type_balanced_accuracy",
        "defect_type_balanced_accuracy_flagged",
    )
    per: dict[str, Any] = {}
    for surface in dict.fromkeys(r["surface"] for r in results):
        rs = [r for r in results if r["surface"] == surface]
        row: dict[str, Any] = {k: _mean([r["model"][k] for r in rs]) for k in keys}
        row.update({f"{k}_sd": _sd([r["model"][k] for r in rs]) for k in keys})
        for k in (*HELD_OUT_KEYS, *LATER_KEYS):
            row[k] = _mean([_value(r, k) for r in rs])
            row[f"{k}_sd"] = _sd([_value(r, k) for r in rs])
        row["held_out_unknown"] = _mean([_held_out_unknown(r) for r in rs])
        row["seeds"] = sorted(r.get("seed", 0) for r in rs)
        row["per_family_auroc"] = {f: _mean([r["model"]["per_family_auroc"][f] for r in rs]) for f in FAMILIES}
        if all(r["floors"] for r in rs):
            names = [k for k in rs[0]["floors"] if k != "seconds"]
            row["floors_image_auroc"] = {n: _mean([r["floors"][n]["image_auroc"] for r in rs]) for n in names}
            row["floor_patch_knn_pixel_auroc"] = _mean([r["floors"]["patch_knn"]["pixel_auroc"] for r in rs])
        row["seconds"] = {s: _mean([r["seconds"][s] for r in rs]) for s in rs[0]["seconds"]}
        row.update(_draws_summary(rs))
        per[surface] = row
    means = (*keys, *HELD_OUT_KEYS, *LATER_KEYS)
    overall: dict[str, Any] = {k: _mean([v[k] for v in per.values()]) for k in means}
    if all(DRAWS_KEY in v for v in per.values()):
        overall[DRAWS_KEY] = _mean([v[DRAWS_KEY] for v in per.values()])
        overall[f"{DRAWS_KEY}_min_surface"] = min(v[DRAWS_KEY] for v in per.values())
    seeds = sorted({r.get("seed", 0) for r in results})
    for k in means:
        per_seed = []
        for seed in seeds:
            rs = [r for r in results if r.get("seed", 0) == seed]
            if len(rs) == len(per):  # a seed that ran on every surface
                per_seed.append(_mean([_value(r, k) for r in rs]))
        overall[f"{k}_sd"] = _sd(per_seed)
    return {"per_surface": per, "mean": overall}


def table(summary: dict[str, Any]) -> str:
    """A markdown table of the summary."""

    def f(v: float | None, sd: float | None = None) -> str:
        return "–" if v is None else f"{v:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")

    def g(r: dict[str, Any], key: str) -> str:
        return f(r[key], r.get(f"{key}_sd"))

    head = (
        "| surface | image AUROC | pixel AUROC | AUPRO | OK/NG bal.acc | type bal.acc | held-out AUROC "
        "| best floor (image) | held-out NG unknown/unsure | held-out confidently mislabelled | sure coverage (NG) "
        "| sure accuracy (NG) |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    naming = (
        "held_out_unknown_or_unsure_flagged",
        "held_out_confidently_mislabelled",
        "type_sure_coverage_flagged",
        "type_sure_accuracy_flagged",
    )
    for s, r in summary["per_surface"].items():
        fl = r.get("floors_image_auroc") or {}
        best = max(fl.items(), key=lambda kv: kv[1] or 0.0) if fl else None
        best_txt = f"{f(best[1])} ({best[0]})" if best else "–"
        lines.append(
            f"| {s} | {g(r, 'image_auroc')} | {g(r, 'pixel_auroc')} | {g(r, 'aupro')} | "
            f"{g(r, 'ok_ng_balanced_accuracy')} | {g(r, 'defect_type_balanced_accuracy')} | "
            f"{g(r, 'held_out_auroc')} | {best_txt} | " + " | ".join(g(r, k) for k in naming) + " |"
        )
    m = summary["mean"]
    lines.append(
        f"| **mean** | {g(m, 'image_auroc')} | {g(m, 'pixel_auroc')} | {g(m, 'aupro')} | "
        f"{g(m, 'ok_ng_balanced_accuracy')} | {g(m, 'defect_type_balanced_accuracy')} | {g(m, 'held_out_auroc')} | | "
        + " | ".join(g(m, k) for k in naming)
        + " |"
    )
    if DRAWS_KEY in m:
        lines += [
            "",
            "| surface | label draws (all seeds) | type bal.acc over draws | sd within a seed | lowest type recall |",
            "|---|---|---|---|---|",
        ]
        for s, r in summary["per_surface"].items():
            low = min(r["per_type_recall_over_draws"].items(), key=lambda kv: kv[1])
            lines.append(
                f"| {s} | {r['label_draws']} | {g(r, DRAWS_KEY)} | {f(r[f'{DRAWS_KEY}_sd_within_seed'])} | "
                f"{low[0]} {f(low[1])} |"
            )
        lines.append(f"| **mean** | | {f(m[DRAWS_KEY])} (lowest surface {f(m[f'{DRAWS_KEY}_min_surface'])}) | | |")
    return "\n".join(lines)
