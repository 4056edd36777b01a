"""Run an exported SSL Inspect model with ONNX Runtime (CUDA when present, CPU otherwise). No torch needed.

The predictor refuses ONNX files that do not carry SSL Inspect metadata and input spec, decodes images with the
same code as training (:mod:`sslinspect.imageio`) in a thread pool while the previous batch runs, and keeps going on
unreadable files (each is reported).
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from sslinspect.errors import DataError, ImageReadError, ModelError
from sslinspect.imageio import IMAGE_EXTENSIONS, load_for_model

METADATA_KEY = "sslinspect"
MODEL_FORMAT_PREFIX = "sslinspect.onnx/"
SUPPORTED_FORMAT = "sslinspect.onnx/1"


def open_session(path: Path, *, device: str = "auto", threads: int = 0) -> tuple[ort.InferenceSession, str]:
    """Create an ONNX Runtime session; returns it and the provider actually in use.

    ``auto`` tries CUDA and falls back to CPU; ``cuda`` fails loudly when CUDA cannot be used.

    Raises:
        ModelError: if the file cannot be loaded, or ``cuda`` was asked for and is not available.
    """
    want = ["CPUExecutionProvider"]
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        want.insert(0, "CUDAExecutionProvider")
    opts = ort.SessionOptions()
    if threads > 0:
        opts.intra_op_num_threads = threads
    # onnxruntime-gpu logs CUDA library load failures as errors on machines without a GPU; they are expected here.
    ort.set_default_logger_severity(4 if device == "auto" else 3)
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=want)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: cannot load ONNX model ({first})") from exc
    finally:
        ort.set_default_logger_severity(2)
    provider = session.get_providers()[0]
    if device == "cuda" and provider != "CUDAExecutionProvider":
        raise ModelError(f"{path}: CUDA was requested but ONNX Runtime runs on {provider} (no usable GPU)")
    return session, provider


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
    if fmt != SUPPORTED_FORMAT:
        raise ModelError(f"{path}: model format {fmt} needs a newer SSL Inspect (this one reads {SUPPORTED_FORMAT})")
    inputs = {i.name: i for i in session.get_inputs()}
    spec = meta.get("input", {})
    size = int(meta.get("image_size", 0))
    inp = inputs.get(spec.get("name", ""))
    if inp is None or inp.type != "tensor(uint8)" or list(inp.shape[1:]) != [size, size, 3]:
        raise ModelError(f"{path}: the model's input does not match its metadata (expected uint8 N×{size}×{size}×3)")
    outs = [o.name for o in session.get_outputs()]
    if outs[:3] != list(meta.get("outputs", []))[:3]:
        raise ModelError(f"{path}: the model's outputs do not match its metadata")
    return meta


@dataclass(frozen=True, slots=True)
class Prediction:
    """One image's result; ``error`` is set (and the rest empty) when it could not be read."""

    path: str
    label: str = ""
    confidence: float = float("nan")
    anomaly_score: float = float("nan")
    is_defect: bool = False
    probabilities: tuple[float, ...] = ()
    error: str = ""


class Predictor:
    """An exported model, ready to score images."""

    def __init__(
        self, model_path: Path, *, device: str = "auto", threshold: float | None = None, threads: int = 0
    ) -> None:
        """Load and validate ``model_path``; ``threshold`` overrides the calibrated one.

        Raises:
            ModelError: if the file is not a usable SSL Inspect model.
        """
        self.path = Path(model_path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found")
        self.session, self.provider = open_session(self.path, device=device, threads=threads)
        self.meta = read_metadata(self.session, self.path)
        self.classes: tuple[str, ...] = tuple(self.meta["classes"])
        self.image_size = int(self.meta["image_size"])
        self.threshold = float(self.meta["threshold"] if threshold is None else threshold)
        self._input = str(self.meta["input"]["name"])
        self._threshold_input = str(self.meta.get("threshold_input", "threshold"))
        self._outputs = list(self.meta["outputs"])

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(probabilities, anomaly_score, is_defect)`` for ``uint8 (N, S, S, 3)`` RGB images."""
        feeds = {
            self._input: np.ascontiguousarray(images, dtype=np.uint8),
            self._threshold_input: np.array([self.threshold], dtype=np.float32),
        }
        p, s, d = self.session.run(self._outputs, feeds)
        return p, s, d

    def predict_paths(self, paths: Sequence[Path], *, batch_size: int = 16, workers: int = 0) -> Iterator[Prediction]:
        """Predictions for ``paths`` in order; unreadable files yield a :class:`Prediction` with ``error`` set.

        Decoding runs in a thread pool one batch ahead of inference.
        """

        def load(p: Path) -> np.ndarray | str:
            try:
                return load_for_model(p, self.image_size)
            except ImageReadError as exc:
                return exc.reason

        with ThreadPoolExecutor(
            max_workers=workers or min(4, os.cpu_count() or 1), thread_name_prefix="decode"
        ) as pool:
            chunks = [list(paths[i : i + batch_size]) for i in range(0, len(paths), batch_size)]
            pending = pool.map(lambda c: [load(p) for p in c], chunks)  # lazily one chunk ahead
            for chunk, decoded in zip(chunks, pending, strict=True):
                good = [k for k, d in enumerate(decoded) if isinstance(d, np.ndarray)]
                results: dict[int, Prediction] = {}
                if good:
                    batch = np.stack([decoded[k] for k in good])
                    prob, score, defect = self.run(batch)
                    for j, k in enumerate(good):
                        c = int(prob[j].argmax())
                        results[k] = Prediction(
                            str(chunk[k]),
                            self.classes[c],
                            float(prob[j, c]),
                            float(score[j]),
                            bool(defect[j]),
                            tuple(float(v) for v in prob[j]),
                        )
                for k, p in enumerate(chunk):
                    yield results.get(k) or Prediction(str(p), error=str(decoded[k]))


def expand_inputs(inputs: Sequence[str | Path], *, include_hidden: bool = False) -> list[Path]:
    """Files, folders (recursive; image extensions only) and glob patterns → a sorted, de-duplicated file list.

    Raises:
        DataError: for an input that matches nothing.
    """
    out: list[Path] = []
    for item in inputs:
        text = str(item)
        # Path.glob cannot take absolute patterns; glob.glob can.
        matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))] if glob.has_magic(text) else [Path(text)]  # noqa: PTH207
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
