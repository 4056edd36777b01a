"""The fitted inspection head: a linear few-shot classifier plus an anomaly model (patch memory bank or image k-NN),
saved as a plain ``.npz`` (no pickle: ``allow_pickle=False``), so loading a project never runs code from it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from sslinspect.errors import CheckpointError
from sslinspect.fewshot.anomaly import ANOMALY_KINDS, AnomalyModel
from sslinspect.fewshot.classifier import LinearHead
from sslinspect.fsutil import atomic_path
from sslinspect.project import GOOD

DESCRIPTORS = ("global", "defect")
DECISIONS = ("anomaly", "anomaly_or_class")


@dataclass(frozen=True, slots=True)
class InspectionHead:
    """Everything that sits on top of the backbone.

    Attributes:
        classifier: Linear head on the ``descriptor`` features.
        anomaly: Bank, thresholds and heatmap normalisation.
        image_size: The backbone's input side (one tile).
        tiles: Tiles per side: the model input is ``image_size · tiles`` px square.
        descriptor: ``global`` (pooled features) or ``defect`` (global + patch at the anomaly peak).
        decision: ``anomaly`` (NG when the score exceeds the threshold) or ``anomaly_or_class`` (also NG when the
            classifier's top class is a defect class).
    """

    classifier: LinearHead
    anomaly: AnomalyModel
    image_size: int
    tiles: int = 1
    descriptor: str = "global"
    decision: str = "anomaly_or_class"

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names; ``good`` first when present."""
        return self.classifier.classes

    @property
    def input_size(self) -> int:
        """Side of the square model input in pixels."""
        return self.image_size * self.tiles

    @property
    def good_index(self) -> int:
        """Index of ``good`` in :attr:`classes`, or -1."""
        return self.classes.index(GOOD) if GOOD in self.classes else -1

    def decide(
        self, proba: np.ndarray, scores: np.ndarray, threshold: float | None = None, review: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(is_defect, decision)``; decision 0 = OK, 1 = review, 2 = NG (the graph computes the same)."""
        t = self.anomaly.threshold if threshold is None else threshold
        r = self.anomaly.review_threshold if review is None else review
        is_defect = scores > t
        if self.decision == "anomaly_or_class":
            is_defect = is_defect | (proba.argmax(1) != self.good_index)
        decision = np.where(is_defect, 2, np.where(scores > r, 1, 0)).astype(np.int64)
        return is_defect, decision

    def with_thresholds(self, threshold: float, review_threshold: float | None = None) -> InspectionHead:
        """A copy with new decision thresholds (the heatmap normalisation is kept).

        Raises:
            ValueError: if the review threshold lies above the threshold.
        """
        review = threshold if review_threshold is None else review_threshold
        if review > threshold:
            raise ValueError(f"review threshold {review:g} must not exceed the NG threshold {threshold:g}")
        return replace(self, anomaly=replace(self.anomaly, threshold=float(threshold), review_threshold=float(review)))

    def save(self, path: Path) -> None:
        """Write ``head.npz`` atomically."""
        a = self.anomaly
        with atomic_path(path) as tmp, tmp.open("wb") as fh:
            np.savez(
                fh,
                kind=np.array(self.classifier.kind),
                classes=np.array(self.classes, dtype=np.str_),
                weight=self.classifier.weight,
                bias=self.classifier.bias,
                anomaly_kind=np.array(a.kind),
                bank=a.bank,
                k=np.array(a.k),
                threshold=np.array(a.threshold),
                review_threshold=np.array(a.review_threshold),
                map_low=np.array(a.map_low),
                map_high=np.array(a.map_high),
                map_spread=np.array(a.spread),
                map_sharp_low=np.array(a.sharp_low),
                map_sharp_high=np.array(a.sharp_high),
                map_kinds=np.array(a.kinds),
                image_size=np.array(self.image_size),
                tiles=np.array(self.tiles),
                descriptor=np.array(self.descriptor),
                decision=np.array(self.decision),
            )

    @classmethod
    def load(cls, path: Path) -> InspectionHead:
        """Read a ``head.npz`` written by :meth:`save` (heads of the first format load as image k-NN models).

        Raises:
            CheckpointError: if the file is missing or not a head.
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                classes = tuple(str(c) for c in z["classes"])
                clf = LinearHead(str(z["kind"]), classes, z["weight"].astype(np.float32), z["bias"].astype(np.float32))
                threshold = float(z["threshold"])

                def opt(key: str, default: object) -> object:
                    return z[key].item() if key in z.files else default

                anomaly = AnomalyModel(
                    kind=str(opt("anomaly_kind", "knn")),
                    bank=z["bank"].astype(np.float32),
                    k=int(z["k"]),
                    threshold=threshold,
                    review_threshold=float(opt("review_threshold", threshold)),  # type: ignore[arg-type]
                    map_low=float(opt("map_low", 0.0)),  # type: ignore[arg-type]
                    map_high=float(opt("map_high", threshold)),  # type: ignore[arg-type]
                    spread=int(opt("map_spread", 0)),  # type: ignore[call-overload]
                    sharp_low=float(opt("map_sharp_low", 0.0)),  # type: ignore[arg-type]
                    sharp_high=float(opt("map_sharp_high", 0.0)),  # type: ignore[arg-type]
                    kinds=int(opt("map_kinds", 0)),  # type: ignore[call-overload]
                )
                head = cls(
                    clf,
                    anomaly,
                    int(z["image_size"]),
                    tiles=int(opt("tiles", 1)),  # type: ignore[call-overload]
                    descriptor=str(opt("descriptor", "global")),
                    decision=str(opt("decision", "anomaly_or_class")),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a readable inspection head ({exc})") from exc
        if anomaly.kind not in ANOMALY_KINDS or head.descriptor not in DESCRIPTORS or head.decision not in DECISIONS:
            raise CheckpointError(f"{path}: unknown head kind ({anomaly.kind}, {head.descriptor}, {head.decision})")
        return head
