"""Run an exported SSL Inspect model with ONNX Runtime (CUDA when present, CPU otherwise). No torch needed.

The predictor refuses ONNX files that do not carry SSL Inspect metadata and input spec, decodes images with the
same code as training (:mod:`sslinspect.imageio`) in a thread pool a bounded number of batches ahead of inference,
and keeps going on unreadable files (each is reported).
"""

from __future__ import annotations

import glob
import json
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from sslinspect.defects.naming import NamedDefect, name_defect
from sslinspect.defects.typing_head import TypingHead, decode_head
from sslinspect.errors import DataError, ImageReadError, ModelError
from sslinspect.imageio import IMAGE_EXTENSIONS, read_image, resize_square
from sslinspect.infer.feeds import ANOMALY_MAP, KIND_MAP, SHARP_MAP, threshold_feeds
from sslinspect.infer.metadata import check_metadata, check_probabilities, decision_of
from sslinspect.infer.session import RuntimeInfo, open_session, open_session_info
from sslinspect.names import GOOD

__all__ = ["Prediction", "Predictor", "RuntimeInfo", "expand_inputs", "open_session", "read_metadata"]

METADATA_KEY = "sslinspect"
MODEL_FORMAT_PREFIX = "sslinspect.onnx/"
SUPPORTED_FORMAT = "sslinspect.onnx/3"
READABLE_FORMATS = ("sslinspect.onnx/1", "sslinspect.onnx/2", SUPPORTED_FORMAT)
DECISIONS = ("OK", "review", "NG")
#: Batches decoded ahead of the one being inferred (bounds memory on huge folders).
PREFETCH_BATCHES = 2


def read_metadata(session: ort.InferenceSession, path: Path) -> dict[str, Any]:
    """The SSL Inspect metadata of a session's model, validated.

    Raises:
        ModelError: if the model is not an SSL Inspect model or its input spec is not the one described.
    """
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if raw is None:
        raise ModelError(f"{path}: not an SSL Inspect model (no '{METADATA_KEY}' metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: corrupt SSL Inspect metadata") from exc
    fmt = str(meta.get("format", ""))
    if not fmt.startswith(MODEL_FORMAT_PREFIX):
        raise ModelError(f"{path}: unknown model format {fmt!r}")
    if fmt not in READABLE_FORMATS:
        raise ModelError(f"{path}: model format {fmt} needs a newer SSL Inspect (this one reads {SUPPORTED_FORMAT})")
    inputs = {i.name: i for i in session.get_inputs()}
    spec = meta.get("input", {})
    size = int(meta.get("image_size", 0))
    inp = inputs.get(spec.get("name", ""))
    if inp is None or inp.type != "tensor(uint8)" or list(inp.shape[1:]) != [size, size, 3]:
        raise ModelError(f"{path}: the model's input does not match its metadata (expected uint8 N×{size}×{size}×3)")
    outs = [o.name for o in session.get_outputs()]
    declared = list(meta.get("outputs", []))
    if outs[:3] != declared[:3] or any(o not in outs for o in declared):
        raise ModelError(f"{path}: the model's outputs do not match its metadata")
    check_metadata(meta, {o.name: list(o.shape) for o in session.get_outputs()}, path)
    return meta


@dataclass(frozen=True, slots=True)
class Prediction:
    """One image's result; ``error`` is set (and the rest empty) when it could not be read.

    ``label`` is ``good`` for a part the model passes as OK, with ``confidence`` the whole-image classifier's
    probability of ``good``; otherwise the type of its main defect (or, without a typing head, the classifier's top
    class). ``confidence`` is the probability of ``label`` (for ``unknown``, the top type probability).

    ``anomaly_map`` (normalised, model input size) and ``image`` (the decoded original) are only kept when asked
    for, to draw heatmaps. ``region`` is the named defect's box ``(x0, y0, x1, y1)`` in the original image's pixels
    (end-exclusive) and ``novelty`` its distance to the nearest labelled type over that type's radius (above 1:
    ``unknown``), for parts the model does not pass as OK when it carries a typing head; ``region_mask`` (model
    input size) is kept with the maps. ``type_sure`` says whether that name is sure (a type, not ``unknown``, named
    with a confidence at or above the typing head's calibrated cut); None for parts that were not named.
    """

    path: str
    label: str = ""
    confidence: float = float("nan")
    anomaly_score: float = float("nan")
    is_defect: bool = False
    probabilities: tuple[float, ...] = ()
    error: str = ""
    decision: str = ""
    anomaly_map: np.ndarray | None = field(default=None, repr=False, compare=False)
    image: np.ndarray | None = field(default=None, repr=False, compare=False)
    region: tuple[int, int, int, int] | None = None
    novelty: float = float("nan")
    region_mask: np.ndarray | None = field(default=None, repr=False, compare=False)
    type_sure: bool | None = None


class Predictor:
    """An exported model, ready to score images."""

    def __init__(
        self,
        model_path: Path,
        *,
        device: str = "auto",
        threshold: float | None = None,
        threads: int = 0,
        review_threshold: float | None = None,
        keep_maps: bool = True,
    ) -> None:
        """Load and validate ``model_path``; ``threshold``/``review_threshold`` override the calibrated ones.

        ``keep_maps=False`` never fetches the full-resolution anomaly map from the runtime (it is only needed for
        heatmaps), which saves a device-to-host copy of ``N×S×S`` floats per batch.

        Raises:
            ModelError: if the file is not a usable SSL Inspect model.
        """
        self.path = Path(model_path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found")
        self.session, self.runtime = open_session_info(self.path, device=device, threads=threads)
        self.provider = self.runtime.provider
        self.meta = read_metadata(self.session, self.path)
        self.classes: tuple[str, ...] = tuple(self.meta["classes"])
        self._good = self.classes.index(GOOD) if GOOD in self.classes else None
        self.image_size = int(self.meta["image_size"])
        self.threshold = float(self.meta["threshold"] if threshold is None else threshold)
        review = self.meta.get("review_threshold", self.threshold) if review_threshold is None else review_threshold
        self.review_threshold = min(float(review), self.threshold)
        self._input = str(self.meta["input"]["name"])
        self._threshold_input = str(self.meta.get("threshold_input", "threshold"))
        self._review_input = self.meta.get("review_threshold_input")
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        # format 3: one threshold per image ([N]); formats 1 and 2 took one value ([1]) with a baked-in default
        self._per_image = shapes.get(self._threshold_input, [1])[0] != 1
        self.outputs: list[str] = list(self.meta["outputs"])
        self.has_maps = ANOMALY_MAP in self.outputs
        #: The region typing head (locate, describe, name), run on the anomaly map (and, for the defect-aware
        #: model, the sharp map) after the graph; None: types come from the graph's whole-image classifier.
        self.typing = _typing_head(self.meta, self.path, self.outputs) if self.has_maps else None
        self._naming_pool: ThreadPoolExecutor | None = None
        #: The outputs :meth:`predict_paths` fetches (the sharp map and the kind probabilities only to name defects
        #: with).
        naming = self.typing is not None
        needs_sharp = self.typing is not None and self.typing.needs_sharp
        self.fetch = [
            o
            for o in self.outputs
            if (o != ANOMALY_MAP or keep_maps or naming) and (o not in (SHARP_MAP, KIND_MAP) or needs_sharp)
        ]

    def provider_note(self) -> str:
        """The provider, and why not CUDA where CUDA was wanted (for logs and the results' metadata)."""
        return self.runtime.describe()

    def run_all(self, images: np.ndarray, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The outputs ``names`` (default: all), by name, for ``uint8 (N, S, S, 3)`` RGB images."""
        fetch = list(self.outputs if names is None else names)
        feeds = threshold_feeds(
            images,
            self.threshold,
            self.review_threshold,
            names=(self._input, self._threshold_input, str(self._review_input or "")),
            per_image=self._per_image,
        )
        return dict(zip(fetch, self.session.run(fetch, feeds), strict=True))

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(probabilities, anomaly_score, is_defect)`` for ``uint8 (N, S, S, 3)`` RGB images."""
        out = self.run_all(images, [o for o in self.outputs if o not in (ANOMALY_MAP, SHARP_MAP, KIND_MAP)])
        return out["probabilities"], out["anomaly_score"], out["is_defect"]

    def _load(self, path: Path, keep_image: bool) -> _Decoded | str:
        try:
            rgb, _ = read_image(path)
        except ImageReadError as exc:
            return exc.reason
        return _Decoded(resize_square(rgb, self.image_size), rgb if keep_image else None, rgb.shape[:2])

    def predict_paths(
        self, paths: Sequence[Path], *, batch_size: int = 16, workers: int = 0, keep_maps: bool = False
    ) -> Iterator[Prediction]:
        """Predictions for ``paths`` in order; unreadable files yield a :class:`Prediction` with ``error`` set.

        Images are decoded in a thread pool up to :data:`PREFETCH_BATCHES` batches ahead of inference, so decoding
        overlaps inference and memory stays bounded. ``keep_maps`` keeps each anomaly map and decoded image.
        """
        chunks = [list(paths[i : i + batch_size]) for i in range(0, len(paths), batch_size)]
        n_workers = workers or min(4, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="decode") as pool:
            queue: deque[list[Future[_Decoded | str]]] = deque()
            for k in range(min(PREFETCH_BATCHES + 1, len(chunks))):
                queue.append([pool.submit(self._load, p, keep_maps) for p in chunks[k]])
            for k, chunk in enumerate(chunks):
                decoded = [f.result() for f in queue.popleft()]
                if k + PREFETCH_BATCHES + 1 < len(chunks):
                    queue.append([pool.submit(self._load, p, keep_maps) for p in chunks[k + PREFETCH_BATCHES + 1]])
                yield from self._predict_decoded(chunk, decoded, keep_maps)

    def predict_images(self, images: np.ndarray, *, batch_size: int = 16) -> list[Prediction]:
        """Predictions for ``uint8 (N, S, S, 3)`` RGB images already at the model's input size, decided and named
        exactly as :meth:`predict_paths` decides and names files (``path`` is the image's index)."""
        out: list[Prediction] = []
        for s in range(0, len(images), batch_size):
            chunk = images[s : s + batch_size]
            decoded: list[_Decoded | str] = [_Decoded(np.asarray(im), None, im.shape[:2]) for im in chunk]
            out.extend(self._predict_decoded([Path(str(s + k)) for k in range(len(chunk))], decoded, False))
        return out

    def _predict_decoded(
        self, chunk: list[Path], decoded: list[_Decoded | str], keep_maps: bool
    ) -> Iterator[Prediction]:
        ok = {k: d for k, d in enumerate(decoded) if not isinstance(d, str)}
        results: dict[int, Prediction] = {}
        if ok:
            want_maps = keep_maps or self.typing is not None
            names = [o for o in self.fetch if want_maps or o != ANOMALY_MAP]
            out = self.run_all(np.stack([d.model_input for d in ok.values()]), names)
            prob, score, defect = out["probabilities"], out["anomaly_score"], out["is_defect"]
            decision = out.get("decision")
            maps = out.get(ANOMALY_MAP)
            check_probabilities(prob.shape[1], self.classes, self.path)
            for j, (k, d) in enumerate(ok.items()):
                code = int(decision[j]) if decision is not None else (2 if defect[j] else 0)
                verdict = decision_of(code, bool(defect[j]), self.path)
                # a part that passes is good, whatever the whole-image classifier's top guess (it decided nothing)
                c = self._good if verdict == "OK" and self._good is not None else int(prob[j].argmax())
                pred = Prediction(
                    str(chunk[k]),
                    self.classes[c],
                    float(prob[j, c]),
                    float(score[j]),
                    bool(defect[j]),
                    tuple(float(v) for v in prob[j]),
                    decision=verdict,
                    anomaly_map=maps[j] if keep_maps and maps is not None else None,
                    image=d.original,
                )
                results[k] = pred
            if self.typing is not None and maps is not None:
                self._name_flagged(results, ok, maps, out.get(SHARP_MAP), out.get(KIND_MAP), keep_maps)
        for k, p in enumerate(chunk):
            yield results.get(k) or Prediction(str(p), error=str(decoded[k]))

    def _name_flagged(
        self,
        results: dict[int, Prediction],
        ok: dict[int, _Decoded],
        maps: np.ndarray,
        sharp: np.ndarray | None,
        kinds: np.ndarray | None,
        keep_maps: bool,
    ) -> None:
        """Name the main defect of every part of a batch that is not OK, in threads (OpenCV releases the GIL)."""
        head = self.typing
        assert head is not None
        flagged = [(k, j) for j, k in enumerate(ok) if results[k].decision != "OK"]
        if not flagged:
            return
        if self._naming_pool is None:
            self._naming_pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="name")
        named = self._naming_pool.map(
            lambda kj: name_defect(
                head,
                ok[kj[0]].model_input,
                maps[kj[1]],
                sharp[kj[1]] if sharp is not None else None,
                kinds[kj[1]] if kinds is not None else None,
            ),
            flagged,
        )
        for (k, _), n in zip(flagged, named, strict=True):
            results[k] = self._named(results[k], n, ok[k].shape, keep_maps)

    def _named(self, pred: Prediction, named: NamedDefect, shape: tuple[int, int], keep_maps: bool) -> Prediction:
        """``pred`` with its label, confidence and probabilities from the region typing of its main defect (the
        probabilities of ``good`` and of classes the typing head does not know are 0)."""
        assert self.typing is not None
        by_name = dict(zip(self.typing.classes, named.proba.tolist(), strict=True))
        box = None
        if named.region is not None:
            x0, y0, x1, y1 = named.region.bbox
            sy, sx = shape[0] / self.image_size, shape[1] / self.image_size
            box = (int(x0 * sx), int(y0 * sy), min(round(x1 * sx), shape[1]), min(round(y1 * sy), shape[0]))
        return replace(
            pred,
            label=named.label,
            confidence=named.confidence,
            probabilities=tuple(float(by_name.get(c, 0.0)) for c in self.classes),
            region=box,
            novelty=named.novelty,
            region_mask=named.region.mask if keep_maps and named.region is not None else None,
            type_sure=named.sure,
        )


@dataclass(frozen=True, slots=True)
class _Decoded:
    """A decoded image: the model input, the original (only to draw heatmaps) and the original's ``(H, W)``."""

    model_input: np.ndarray
    original: np.ndarray | None
    shape: tuple[int, int]


def _typing_head(meta: dict[str, Any], path: Path, outputs: Sequence[str]) -> TypingHead | None:
    """The typing head in a model's metadata, or None (an older model, or fewer than two labelled types).

    Raises:
        ModelError: if the entry is there but unusable (or cuts a map the graph does not output).
    """
    entry = meta.get("typing")
    if entry is None:
        return None
    try:
        head = decode_head(str(entry["head"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path}: the model's defect-typing metadata is unusable ({exc})") from exc
    if len(head.classes) < 2 or not all(isinstance(c, str) and c for c in head.classes):
        raise ModelError(f"{path}: the model's defect-typing metadata has no valid type list")
    if head.needs_sharp and SHARP_MAP not in outputs:
        raise ModelError(f"{path}: the model's defect typing needs the {SHARP_MAP} output, which the graph lacks")
    return head


def expand_inputs(inputs: Sequence[str | Path], *, include_hidden: bool = False) -> list[Path]:
    """Files, folders (recursive; image extensions only) and glob patterns → a sorted, de-duplicated file list.

    A name that exists is taken as it is even when it holds glob characters (``line[3]``).

    Raises:
        DataError: for an input that matches nothing.
    """
    out: list[Path] = []
    for item in inputs:
        text = str(item)
        # An existing path is a path (`line[3]` is that folder, not `line3`); a pattern only when nothing has that
        # name. Path.glob cannot take absolute patterns; glob.glob can.
        pattern = glob.has_magic(text) and not (Path(text).exists() or Path(text).is_symlink())
        matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))] if pattern else [Path(text)]  # noqa: PTH207
        if not matches:
            raise DataError(f"{text}: no file matches this pattern")
        for m in matches:
            if m.is_dir():
                out += sorted(
                    p
                    for p in m.rglob("*")
                    if p.suffix.lower() in IMAGE_EXTENSIONS
                    and p.is_file()
                    and (include_hidden or not any(part.startswith(".") for part in p.relative_to(m).parts))
                )
            elif m.exists() or m.is_symlink():
                out.append(m)
            else:
                raise DataError(f"{m}: no such file or folder")
    seen: set[Path] = set()
    unique = [p for p in out if not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]
    return unique
