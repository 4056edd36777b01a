"""The fitted inspection head: a linear few-shot classifier plus a k-NN anomaly model, saved as a plain ``.npz``
(no pickle: ``allow_pickle=False``), so loading a project never runs code from it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sslinspect.errors import CheckpointError
from sslinspect.fewshot.anomaly import KnnAnomaly
from sslinspect.fewshot.classifier import LinearHead
from sslinspect.fsutil import atomic_path
from sslinspect.project import GOOD


@dataclass(frozen=True, slots=True)
class InspectionHead:
    """Everything that sits on top of the backbone's L2-normalised features."""

    classifier: LinearHead
    anomaly: KnnAnomaly
    image_size: int

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names; ``good`` first when present."""
        return self.classifier.classes

    def predict(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities (N, C), anomaly scores (N,))`` for L2-normalised embeddings."""
        return self.classifier.predict_proba(emb), self.anomaly.score(emb)

    def decide(self, proba: np.ndarray, scores: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """``is_defect``: a defect class wins, or the anomaly score exceeds the threshold."""
        t = self.anomaly.threshold if threshold is None else threshold
        good = self.classes.index(GOOD) if GOOD in self.classes else -1
        pred = proba.argmax(1)
        return (pred != good) | (scores > t)

    def save(self, path: Path) -> None:
        """Write ``head.npz`` atomically."""
        with atomic_path(path) as tmp, tmp.open("wb") as fh:
            np.savez(
                fh,
                kind=np.array(self.classifier.kind),
                classes=np.array(self.classes, dtype=np.str_),
                weight=self.classifier.weight,
                bias=self.classifier.bias,
                bank=self.anomaly.bank,
                k=np.array(self.anomaly.k),
                threshold=np.array(self.anomaly.threshold),
                image_size=np.array(self.image_size),
            )

    @classmethod
    def load(cls, path: Path) -> InspectionHead:
        """Read a ``head.npz`` written by :meth:`save`.

        Raises:
            CheckpointError: if the file is missing or not a head.
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                classes = tuple(str(c) for c in z["classes"])
                clf = LinearHead(str(z["kind"]), classes, z["weight"].astype(np.float32), z["bias"].astype(np.float32))
                anomaly = KnnAnomaly(z["bank"].astype(np.float32), int(z["k"]), float(z["threshold"]))
                size = int(z["image_size"])
        except (OSError, KeyError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a readable inspection head ({exc})") from exc
        if clf.weight.shape != (len(classes), anomaly.bank.shape[1]):
            raise CheckpointError(f"{path}: classifier and memory bank sizes do not match")
        return cls(clf, anomaly, size)
