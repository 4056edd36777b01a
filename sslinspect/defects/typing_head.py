"""Name a described defect: standardised descriptor → defect type, or ``unknown`` when it is far from every type.

Inference only, numpy only (the line-side predictor calls it; fitting lives in
:mod:`sslinspect.fewshot.typing_fit`). Three classifier kinds share one open-set rule:

- ``prototype``: softmax of ``-d² / (2 τ)`` over the distances ``d`` to the class means;
- ``logistic``: ``softmax(x W^T + b)``;
- ``trees``: the mean leaf class shares of a small tree ensemble, stored as flat node arrays;
- ``ensemble``: the mean of the three kinds' probabilities (one head holds all three: ``tau`` is the prototype's
  temperature, ``weight``/``bias`` the logistic regression, ``trees`` the trees);
- ``levels``: one head per cut (``members``, each an ``ensemble`` fitted on the regions cut at its own level of
  its own map: the spread ``anomaly_map`` or, for the defect-aware model, the ``anomaly_map_sharp`` before
  spreading); its input is the members' descriptors side by side (member order: the main map's cuts by level,
  then the sharp map's), its probabilities their mean and its novelty the mean of theirs. A name then does not
  hang on where exactly one cut runs.

Open set: distances to a class mean weigh each standardised entry by its inverse within-class variance (pooled
over the types). Every class keeps a radius, a margin times the largest leave-one-out distance of its labelled
regions to the mean of the others. A region farther than its radius from every class mean is ``unknown`` (``novelty``,
the smallest distance / radius ratio, is above 1). The head is a dict of arrays (``.npz``-friendly, no pickle).

Confidence: the head keeps ``sure_cut``, the top probability from which its named types were right often enough
out of fold (calibrated at fit time, :func:`sslinspect.fewshot.typing_fit.confidence_cut`); a name below it, or
``unknown``, is not *sure*. A ``levels`` head with ``sure_agree`` (what ``fit`` writes for the spread and the sharp
map's cuts) also needs its members to agree: two views of the defect that name it differently make no sure name
(on the benchmark's development set, a type the head never saw was reported unknown or unsure 0.56 → 0.70 of the
time, bench/RESULTS.md). Heads written before the cut existed read as ``sure_cut = 0``: every name that is not
``unknown`` counts as sure, as those names were reported before (fit again to calibrate).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

UNKNOWN = "unknown"
KINDS = ("prototype", "logistic", "trees", "ensemble")
#: The kind of a head made of one member head per map level (not fitted by itself: see ``TypingHead.of_levels``).
LEVELS_KIND = "levels"
# ``sure_cut`` was added without a version bump: it is an optional key (absent: 0), and older programs ignore it.
# An ``ensemble`` head is written as format 2, which programs that predate the kind refuse in one line at load time
# (rather than failing on the first flagged part); the other kinds stay format 1, readable by every version.
# A ``levels`` head is format 3 (its members are stored under ``m<i>_`` prefixes); one with a member cut from the
# sharp map is format 4 (programs before it would cut that member's region from the wrong map, so they refuse it), and
# one with a member cut at the sharp map's core is format 5 (programs before it know no such cut), and one with a member
# cut at the sharp region's image outline is format 6 (likewise).
FORMAT_VERSION = 6
_FORMAT_OF_KIND = {"ensemble": 2, LEVELS_KIND: 3}
_SHARP_FORMAT = 4
_CORE_FORMAT = 5
_REFINED_FORMAT = 6
#: The map a head's regions are cut from: the spread anomaly map (``anomaly_map``; every head before format 4)...
MAP_SOURCE = "map"
#: ...or the defect-aware model's map before spreading (``anomaly_map_sharp``): its regions follow the defect's
#: own outline where the spread map's are blobs round it.
SHARP_SOURCE = "sharp"
#: The key of the defect-aware model's kind probabilities ``(K, h, w)`` in the maps a region is described from (no
#: cut is taken on it: they become the ``kind_*`` entries of every cut's descriptor).
KIND_SOURCE = "kinds"
#: ...or the core of the sharp map's region: its pixels ``CORE_SHARE`` of the way up to the region's peak or higher
#: (:func:`sslinspect.defects.naming.core_region`). Where the sharp map's region is a band a few pixels wider than
#: a scratch, its core follows the scratch. Cut from the sharp map (``anomaly_map_sharp``); no map of its own.
CORE_SOURCE = "core"
#: ...or the sharp map's region redrawn by the image: the pixels of the region (grown by a pixel or two) that depart
#: from the texture filled in from around it, on the side the region departs to
#: (:func:`sslinspect.defects.naming.refined_region`). Where the map's region is a band round a scratch or a crack,
#: this follows the line itself. Cut from the sharp map and the image; no map of its own.
REFINED_SOURCE = "refined"
SOURCES = (MAP_SOURCE, SHARP_SOURCE, CORE_SOURCE, REFINED_SOURCE)
#: The cuts taken from the sharp map (``anomaly_map_sharp``), alone or narrowed.
SHARP_SOURCES = (SHARP_SOURCE, CORE_SOURCE, REFINED_SOURCE)
#: ``sure_cut`` when no cut reached the wanted precision at fit time: above every probability, so no name is sure.
NEVER_SURE = 2.0
#: ``sure_cut`` of a head written before the cut existed (and the default): every name but ``unknown`` is sure.
UNCALIBRATED_CUT = 0.0
_TREE_KEYS = ("feature", "threshold", "left", "right", "value", "roots")


@dataclass(frozen=True, slots=True)
class TypeResult:
    """Typing of N regions.

    Attributes:
        labels: Type name per region, or ``unknown``.
        proba: ``(N, C)`` class probabilities (over the labelled types; they do not include ``unknown``).
        unknown: ``(N,)`` True where the region is far from every labelled type.
        novelty: ``(N,)`` smallest distance-to-class-mean / class radius; above 1 is ``unknown``.
        agree: ``(N,)`` True where every member head (a ``levels`` head's) gives the same top type; all True for
            a single head.
    """

    labels: list[str]
    proba: np.ndarray
    unknown: np.ndarray
    novelty: np.ndarray
    agree: np.ndarray


@dataclass(frozen=True, slots=True)
class TypingHead:
    """A fitted typing head.

    Attributes:
        kind: ``prototype``, ``logistic``, ``trees``, ``ensemble`` or ``levels``.
        classes: Type names, in the order of ``proba``'s columns.
        names: Descriptor entry names (the input's columns).
        mean: ``(D,)`` standardisation offset.
        scale: ``(D,)`` standardisation divisor.
        centroids: ``(C, D)`` class means of the standardised labelled descriptors.
        metric: ``(D,)`` per-entry weights of the distance to a class mean: the inverse pooled within-class
            variance (of the standardised descriptors), so an entry that is tight inside every type counts most.
        radius: ``(C,)`` open-set radius of each class.
        weight: ``(C, D)`` logistic weights (zeros for the other kinds).
        bias: ``(C,)`` logistic bias; for ``prototype`` ``bias[0]`` is the temperature τ.
        trees: Flat node arrays of the ensemble (``trees`` only; empty otherwise).
        level: The anomaly-map level the described regions were cut at (``sslinspect.defects.naming``): a part
            must be described the same way to be typed.
        sure_cut: A named type is *sure* when its top probability is at least this (and it is not ``unknown``);
            :data:`NEVER_SURE` (above 1) when no cut was precise enough, :data:`UNCALIBRATED_CUT` for old heads.
        members: A ``levels`` head's heads, one per cut (main map by ascending level, then the sharp map); empty
            for the other kinds. A ``levels`` head's own arrays are empty, its ``names`` are the members' prefixed
            with their cut (``1:log_area``, ``sharp1:log_area``) and its ``level`` is the main map's level whose
            region is shown.
        source: The map the regions are cut from (:data:`MAP_SOURCE` or :data:`SHARP_SOURCE`); a ``levels``
            head's own is :data:`MAP_SOURCE` (its members say theirs).
        sure_agree: A ``levels`` head: a name is sure only where the members' top types agree (and its
            confidence reaches ``sure_cut``); False for older heads and the other kinds.
    """

    kind: str
    classes: tuple[str, ...]
    names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    centroids: np.ndarray
    metric: np.ndarray
    radius: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    trees: dict[str, np.ndarray] = field(default_factory=dict)
    level: float = 0.5
    sure_cut: float = UNCALIBRATED_CUT
    tau: float = 0.0  # the prototype temperature of an ``ensemble`` head (a ``prototype`` head keeps it in bias[0])
    members: tuple[TypingHead, ...] = ()
    source: str = MAP_SOURCE
    sure_agree: bool = False

    @classmethod
    def of_levels(
        cls, members: Sequence[TypingHead], shown_level: float, sure_cut: float, *, sure_agree: bool = False
    ) -> TypingHead:
        """A ``levels`` head of ``members`` (one per cut, the same classes and descriptor entries)."""
        if any(h.source not in SOURCES for h in members):
            raise ValueError(f"a typing head's map must be one of {SOURCES}")
        heads = tuple(sorted(members, key=lambda h: (SOURCES.index(h.source), h.level)))
        if not heads or any(h.members for h in heads):
            raise ValueError("a levels head needs member heads that are not levels heads themselves")
        if any(h.classes != heads[0].classes or h.names != heads[0].names for h in heads):
            raise ValueError("the member heads of a levels head must share classes and descriptor entries")
        if len({h.cut for h in heads}) != len(heads):
            raise ValueError("the member heads of a levels head must be at different levels")
        if (MAP_SOURCE, float(shown_level)) not in {h.cut for h in heads}:
            raise ValueError(f"the shown level {shown_level:g} is not one of the member heads' levels")
        empty = np.zeros(0)
        names = tuple(f"{cut_name(h.cut)}:{n}" for h in heads for n in h.names)
        return cls(
            LEVELS_KIND, heads[0].classes, names, empty, empty, np.zeros((0, 0)), empty, empty, np.zeros((0, 0)),
            empty, level=float(shown_level), sure_cut=float(sure_cut), members=heads, sure_agree=bool(sure_agree),
        )  # fmt: skip

    @property
    def cut(self) -> tuple[str, float]:
        """``(source, level)``: the map and level this (member) head's regions are cut at."""
        return (self.source, float(self.level))

    @property
    def cuts(self) -> tuple[tuple[str, float], ...]:
        """The cuts a part's regions are made at to be typed (each cut's descriptor, side by side, in this order)."""
        return tuple(h.cut for h in self.members) if self.members else (self.cut,)

    @property
    def levels(self) -> tuple[float, ...]:
        """The levels of the main (spread) map a part's regions are cut at (:attr:`cuts` has every map's)."""
        return tuple(lv for src, lv in self.cuts if src == MAP_SOURCE)

    @property
    def needs_sharp(self) -> bool:
        """Whether naming needs the sharp map (``anomaly_map_sharp``) besides the anomaly map."""
        return any(src in SHARP_SOURCES for src, _ in self.cuts)

    def _format(self) -> int:
        """The oldest format that holds this head (older programs refuse newer ones in one line at load time)."""
        if any(src == REFINED_SOURCE for src, _ in self.cuts):
            return _REFINED_FORMAT
        if any(src == CORE_SOURCE for src, _ in self.cuts):
            return _CORE_FORMAT
        if self.needs_sharp:
            return _SHARP_FORMAT
        return _FORMAT_OF_KIND.get(self.kind, 1)

    def _split(self, x: np.ndarray) -> list[np.ndarray]:
        """A ``levels`` head's input ``(N, L·D)`` as the members' ``(N, D)`` descriptors."""
        x = np.atleast_2d(np.asarray(x, np.float64))
        if x.shape[1] != len(self.names):
            raise ValueError(f"descriptor has {x.shape[1]} entries, the head expects {len(self.names)}")
        return np.split(x, len(self.members), axis=1)

    def is_sure(self, label: str, confidence: float, agree: bool = True) -> bool:
        """Whether a name given with top probability ``confidence`` is sure: a type (not ``unknown``) at or above
        :attr:`sure_cut`, and, for a head with :attr:`sure_agree`, named alike by every member (``agree``, from
        :attr:`TypeResult.agree`)."""
        return label != UNKNOWN and confidence >= self.sure_cut and (agree or not self.sure_agree)

    def standardise(self, x: np.ndarray) -> np.ndarray:
        """``(x - mean) / scale`` as float64 ``(N, D)``."""
        x = np.atleast_2d(np.asarray(x, np.float64))
        if x.shape[1] != len(self.mean):
            raise ValueError(f"descriptor has {x.shape[1]} entries, the head expects {len(self.mean)}")
        return (x - self.mean) / self.scale

    def distances(self, z: np.ndarray) -> np.ndarray:
        """Distances ``(N, C)`` of standardised rows to the class means, weighted by ``metric``."""
        zw, cw = z * np.sqrt(self.metric), self.centroids * np.sqrt(self.metric)
        d2 = (zw * zw).sum(1)[:, None] - 2 * zw @ cw.T + (cw**2).sum(1)[None, :]
        return np.sqrt(np.maximum(d2, 0.0))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, C)`` of raw descriptors ``x``."""
        if self.members:
            return np.mean(self._member_proba(x), axis=0)
        z = self.standardise(x)
        if self.kind == "prototype":
            return self._prototype_proba(z, float(self.bias[0]))
        if self.kind == "logistic":
            return _softmax(z @ self.weight.T + self.bias)
        if self.kind == "trees":
            return tree_proba(self.trees, z, len(self.classes))
        if self.kind == "ensemble":
            proto = self._prototype_proba(z, self.tau)
            return (proto + _softmax(z @ self.weight.T + self.bias) + tree_proba(self.trees, z, len(self.classes))) / 3
        raise ValueError(f"unknown typing head kind {self.kind!r}")

    def _member_proba(self, x: np.ndarray) -> list[np.ndarray]:
        """Each member's class probabilities ``(N, C)`` of its part of a ``levels`` head's input."""
        return [h.predict_proba(xi) for h, xi in zip(self.members, self._split(x), strict=True)]

    def _prototype_proba(self, z: np.ndarray, tau: float) -> np.ndarray:
        """Softmax of ``-d² / (2 τ)`` over the distances of standardised rows to the class means."""
        return _softmax(-0.5 * self.distances(z) ** 2 / max(tau, 1e-9))

    def predict(self, x: np.ndarray) -> TypeResult:
        """Labels (``unknown`` beyond every class radius), probabilities and novelty of raw descriptors ``x``."""
        if self.members:  # the members' probabilities once: their mean, and whether their top types agree
            parts = self._member_proba(x)
            proba = np.mean(parts, axis=0)
            agree = members_agree(parts)
        else:
            proba = self.predict_proba(x)
            agree = np.ones(len(proba), bool)
        novelty = self._novelty(x)
        unknown = novelty > 1.0
        labels = [UNKNOWN if u else self.classes[int(i)] for u, i in zip(unknown, proba.argmax(1), strict=True)]
        return TypeResult(labels, proba.astype(np.float32), unknown, novelty.astype(np.float32), agree)

    def _novelty(self, x: np.ndarray) -> np.ndarray:
        """Smallest distance / radius ratio of each row (a ``levels`` head: the mean of its members')."""
        if self.members:
            parts = [h._novelty(xi) for h, xi in zip(self.members, self._split(x), strict=True)]
            return np.mean(parts, axis=0)
        return (self.distances(self.standardise(x)) / self.radius[None, :]).min(1)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every field as a numpy array (strings as unicode arrays): ``np.savez`` it, no pickle needed."""
        if self.members:
            out = {
                "version": np.array(self._format()),
                "kind": np.array(self.kind),
                "classes": np.array(self.classes, dtype=str),
                "names": np.array(self.names, dtype=str),
                "level": np.array(self.level),
                "sure_cut": np.array(self.sure_cut),
                "members": np.array(len(self.members)),
            }
            if self.sure_agree:  # absent: False (heads before format 4)
                out["sure_agree"] = np.array(True)
            for i, h in enumerate(self.members):
                out.update({f"m{i}_{k}": v for k, v in h.to_arrays().items()})
            return out
        out = {
            "version": np.array(self._format()),
            "kind": np.array(self.kind),
            "classes": np.array(self.classes, dtype=str),
            "names": np.array(self.names, dtype=str),
            "mean": self.mean,
            "scale": self.scale,
            "centroids": self.centroids,
            "metric": self.metric,
            "radius": self.radius,
            "weight": self.weight,
            "bias": self.bias,
            "level": np.array(self.level),
            "sure_cut": np.array(self.sure_cut),
            "tau": np.array(self.tau),
        }
        out.update({f"tree_{k}": v for k, v in self.trees.items()})
        if self.source != MAP_SOURCE:  # absent: the main map (every head before format 4)
            out["source"] = np.array(self.source)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TypingHead:
        """Inverse of :meth:`to_arrays` (accepts an open ``np.load`` archive)."""
        version = int(arrays["version"])
        if version > FORMAT_VERSION:
            raise ValueError(f"typing head format {version} is newer than this program ({FORMAT_VERSION})")
        kind = str(arrays["kind"])
        if kind == LEVELS_KIND:
            members = [
                cls.from_arrays({k[len(f"m{i}_") :]: v for k, v in arrays.items() if k.startswith(f"m{i}_")})
                for i in range(int(arrays["members"]))
            ]
            agree = bool(arrays["sure_agree"]) if "sure_agree" in arrays else False
            return cls.of_levels(members, float(arrays["level"]), float(arrays["sure_cut"]), sure_agree=agree)
        trees = {k: np.asarray(arrays[f"tree_{k}"]) for k in _TREE_KEYS} if kind in ("trees", "ensemble") else {}
        return cls(
            kind=kind,
            classes=tuple(str(c) for c in arrays["classes"]),
            names=tuple(str(n) for n in arrays["names"]),
            mean=np.asarray(arrays["mean"], np.float64),
            scale=np.asarray(arrays["scale"], np.float64),
            centroids=np.asarray(arrays["centroids"], np.float64),
            metric=np.asarray(arrays["metric"], np.float64),
            radius=np.asarray(arrays["radius"], np.float64),
            weight=np.asarray(arrays["weight"], np.float64),
            bias=np.asarray(arrays["bias"], np.float64),
            trees=trees,
            level=float(arrays["level"]) if "level" in arrays else 0.5,
            sure_cut=float(arrays["sure_cut"]) if "sure_cut" in arrays else UNCALIBRATED_CUT,
            tau=float(arrays["tau"]) if "tau" in arrays else 0.0,
            source=str(arrays["source"]) if "source" in arrays else MAP_SOURCE,
        )


#: How a note reads the agreement rule (the fit's note in the log and the GUI's Fit page).
SURE_AGREE_TEXT = "where every cut names the same type"


def members_agree(probas: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """``(N,)`` True where every member's ``(N, C)`` probabilities (a list, or stacked ``(M, N, C)``) have the same top
    type."""
    tops = np.stack([np.asarray(p).argmax(1) for p in probas])
    return np.asarray((tops == tops[0]).all(0), bool)


def cut_name(cut: tuple[str, float]) -> str:
    """A cut's name: ``1`` for the main map's cut at 1 (as heads before format 4 named it), ``sharp1`` for the sharp
    map's (the prefix of a ``levels`` head's entry names, and the keys of ``metrics.json``'s ``typing.levels``)."""
    source, level = cut
    return f"{level:g}" if source == MAP_SOURCE else f"{source}{level:g}"


def parse_cut_name(name: str) -> tuple[str, float]:
    """The cut a :func:`cut_name` names: ``"sharp1"`` → ``("sharp", 1.0)``, ``"0.5"`` (or ``"1.0"``, as runs before
    the sharp map wrote it) → ``("map", 0.5)``. Raises ``ValueError`` for a name of no known map."""
    source = next((s for s in SOURCES if s != MAP_SOURCE and name.startswith(s)), MAP_SOURCE)
    level = name if source == MAP_SOURCE else name[len(source) :]
    try:
        return source, float(level)
    except ValueError:
        raise ValueError(f"not a typing cut name: {name!r} (a level, or one of {SOURCES[1:]} and a level)") from None


#: How a person reads each map a region is cut from.
SOURCE_TEXT = {
    MAP_SOURCE: "the anomaly map",
    SHARP_SOURCE: "the sharp map",
    CORE_SOURCE: "the sharp map's core",
    REFINED_SOURCE: "the sharp map's region redrawn by the image",
}


def cuts_text(names: Sequence[str]) -> str:
    """The cuts ``names`` (:func:`cut_name`s, e.g. ``metrics["typing"]["levels"]``'s keys) as a person reads them:
    ``["0.5", "1"]`` → "the anomaly map at 0.5, 1 × its threshold"; ``["1", "sharp1", "core1"]`` → "the anomaly map
    at 1 × its threshold, the sharp map at 1 × its threshold and the sharp map's core at 1 × its threshold" (the
    sharp map: the anomaly map before it is spread over the defect's neighbourhood; its core: the pixels of that
    region near its peak)."""
    by_map: dict[str, list[str]] = {}
    for name in names:
        source, level = parse_cut_name(name)
        by_map.setdefault(SOURCE_TEXT[source], []).append(f"{level:g}")
    parts = [f"{text} at {', '.join(levels)} × its threshold" for text, levels in by_map.items()]
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else "".join(parts)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def save_head(path: Path, head: TypingHead) -> None:
    """Write ``head`` as an ``.npz``."""
    with path.open("wb") as fh:
        np.savez(fh, **head.to_arrays())  # type: ignore[arg-type]


def load_head(path: Path) -> TypingHead:
    """Read a head written by :func:`save_head` (no pickle: loading never runs code from the file)."""
    with np.load(path, allow_pickle=False) as data:
        return TypingHead.from_arrays({k: data[k] for k in data.files})


def encode_head(head: TypingHead) -> str:
    """``head`` as base64 text of its ``.npz`` (for the exported model's JSON metadata)."""
    buf = io.BytesIO()
    np.savez(buf, **head.to_arrays())  # type: ignore[arg-type]
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_head(text: str) -> TypingHead:
    """Inverse of :func:`encode_head` (no pickle).

    Raises:
        ValueError: if ``text`` is not an encoded typing head.
    """
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            return TypingHead.from_arrays({k: data[k] for k in data.files})
    except (ValueError, KeyError, OSError) as exc:
        raise ValueError(f"not a typing head: {exc}") from exc


def tree_proba(trees: dict[str, np.ndarray], z: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean leaf class shares ``(N, C)`` of a flat tree ensemble.

    ``feature[i] < 0`` marks a leaf; ``left``/``right`` are absolute node indices; ``value`` is ``(nodes, C)``
    class shares; ``roots`` the first node of each tree. A row goes left when ``z[feature] <= threshold``.
    """
    feature, threshold = trees["feature"], trees["threshold"]
    left, right, value = trees["left"], trees["right"], trees["value"]
    rows = np.arange(len(z))
    out = np.zeros((len(z), n_classes))
    for root in trees["roots"]:
        node = np.full(len(z), int(root), np.int64)
        while True:
            f = feature[node]
            inner = f >= 0
            if not inner.any():
                break
            go_left = z[rows, np.maximum(f, 0)] <= threshold[node]
            node = np.where(inner, np.where(go_left, left[node], right[node]), node)
        out += value[node]
    return out / max(len(trees["roots"]), 1)
