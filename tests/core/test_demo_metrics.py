"""The demo's table: an `unknown` name counts as wrong and prints no scikit-learn warning."""

from __future__ import annotations

import warnings

import numpy as np

from sslinspect.demo_run import _metrics


def test_unknown_counts_as_wrong_without_a_warning() -> None:
    truth = ["good", "good", "crack", "crack", "spot", "spot"]
    said = ["good", "good", "crack", "unknown", "spot", "unknown"]
    scores = np.array([0.1, 0.2, 0.9, 0.8, 0.7, 0.95])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = _metrics("x", ("good", "crack", "spot"), truth, np.zeros((6, 3)), scores, scores > 0.5, said)
    assert abs(row.defect_type_balanced_accuracy - (1 + 0.5 + 0.5) / 3) < 1e-9
    assert row.anomaly_auroc == 1.0 and row.ok_ng_balanced_accuracy == 1.0
