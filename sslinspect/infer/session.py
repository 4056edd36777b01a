"""Open an ONNX Runtime session on the provider asked for, and say which one runs it and why.

``cuda`` means CUDA or a one-line error that says what is missing; ``auto`` takes CUDA when it loads and otherwise
the CPU, with the reason kept for the log and the output's metadata. ONNX Runtime's own log stays at warning
level: what it writes to stderr while a session is created is captured and passed on, except the messages known to
be harmless here (a missing CUDA library under ``auto`` becomes the reason instead).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from sslinspect.errors import ModelError

log = logging.getLogger(__name__)

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
#: How to get a working CUDA provider (the GPU build and the CUDA/cuDNN libraries it loads).
GPU_HINT = 'pip install "sslinspect[gpu]" (ONNX Runtime GPU build with its CUDA and cuDNN libraries)'
#: Batches have one steady shape (plus a smaller last one): an exhaustive cuDNN search per new shape costs more
#: than it gains, and the arena grows only by what is asked for.
CUDA_OPTIONS = {"cudnn_conv_algo_search": "HEURISTIC", "arena_extend_strategy": "kSameAsRequested"}
#: ONNX Runtime messages that are expected and say nothing the user must act on (matched against the text).
HARMLESS = (
    re.compile(r"Initializer \S+ appears in graph inputs and will not be treated as constant"),
    re.compile(r"Some nodes were not assigned to the preferred execution providers"),
    re.compile(r"Rerunning with verbose output on a non-minimal build will show node assignments"),
    re.compile(r"Memcpy nodes are added to the graph"),
)
_CUDA_LOAD = (
    re.compile(r"Failed to load library \S*providers_cuda\S* with error: (?P<why>.+)"),
    re.compile(r"Failed to create CUDAExecutionProvider"),
)
_LOG_LINE = re.compile(r"^\S+ \S+ \[(?P<sev>[VIWEF]):onnxruntime:[^\]]*\] (?P<msg>.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_preloaded: list[str] | None = None


@dataclass(frozen=True, slots=True)
class RuntimeInfo:
    """Which provider runs the model, what was asked for, and why CUDA is not used (empty when it is)."""

    provider: str
    requested: str
    reason: str = ""
    onnxruntime: str = ort.__version__

    def describe(self) -> str:
        """One line for the log, e.g. ``CPUExecutionProvider (auto: CUDA not usable: libcuda.so.1 missing)``."""
        return f"{self.provider} ({self.requested}: {self.reason})" if self.reason else self.provider


def _preload_cuda() -> list[str]:
    """Load the CUDA/cuDNN libraries from pip's ``nvidia-*`` packages (once); what it complained about."""
    global _preloaded
    if _preloaded is None:
        out = io.StringIO()
        preload = getattr(ort, "preload_dlls", None)  # ONNX Runtime ≥ 1.21
        if preload is not None:
            with contextlib.redirect_stdout(out):  # it prints; stdout may carry results or events
                try:
                    preload()
                except (OSError, RuntimeError) as exc:
                    out.write(f"Failed to preload the CUDA libraries: {exc}\n")
        _preloaded = [line for line in _ANSI.sub("", out.getvalue()).splitlines() if line.startswith("Failed")]
        for line in _preloaded:
            log.debug("onnxruntime.preload_dlls: %s", line)
    return _preloaded


@contextlib.contextmanager
def native_stderr(lines: list[str]) -> Iterator[None]:
    """Capture what native code writes to file descriptor 2 into ``lines`` (ANSI colours removed)."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (a windowed app): nothing to capture
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines += _ANSI.sub("", tmp.read().decode("utf-8", "replace")).splitlines()


def _triage(lines: list[str]) -> str:
    """Pass on ONNX Runtime's messages except harmless ones; return why the CUDA provider did not load."""
    reason = ""
    for line in lines:
        m = _LOG_LINE.match(line.strip())
        sev, msg = (m["sev"], m["msg"]) if m else ("W", line.strip())
        if not msg:
            continue
        load = next((p.search(msg) for p in _CUDA_LOAD if p.search(msg)), None)
        if load is not None:
            reason = reason or (load.groupdict().get("why") or "").strip()
            log.debug("onnxruntime: %s", msg)
        elif any(p.search(msg) for p in HARMLESS):
            log.debug("onnxruntime: %s", msg)
        else:
            log.log(logging.ERROR if sev in "EF" else logging.WARNING, "onnxruntime: %s", msg)
    return reason


def _why_not_cuda(load_error: str) -> str:
    if CUDA not in ort.get_available_providers():
        return "this ONNX Runtime build has no CUDA provider (CPU-only package)"
    preload = _preload_cuda()
    if "libcuda.so" in load_error or "nvcuda" in load_error:
        return "no NVIDIA driver (libcuda not found)"
    if load_error:
        return f"the CUDA provider did not load: {load_error}"
    if preload:
        return f"CUDA libraries missing ({preload[0]})"
    return "the CUDA provider did not start (no usable GPU)"


def open_session_info(
    path: Path, *, device: str = "auto", threads: int = 0
) -> tuple[ort.InferenceSession, RuntimeInfo]:
    """Create a session; returns it and which provider runs it (and why not CUDA, where that was wanted).

    Raises:
        ModelError: if the file cannot be loaded, or ``cuda`` was asked for and cannot be used (the message says
            what is missing and what to install).
    """
    cuda_built = CUDA in ort.get_available_providers()
    if device == "cuda" and not cuda_built:
        raise ModelError(f"{path}: --device cuda, but {_why_not_cuda('')}; {GPU_HINT}")
    providers: list[str | tuple[str, dict[str, str]]] = [CPU]
    if device in ("auto", "cuda") and cuda_built:
        _preload_cuda()
        providers.insert(0, (CUDA, CUDA_OPTIONS))
    opts = ort.SessionOptions()
    opts.log_severity_level = 2  # warnings and errors; harmless ones are filtered below by their text
    if threads > 0:
        opts.intra_op_num_threads = threads
    lines: list[str] = []
    try:
        with native_stderr(lines):
            session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # ORT raises its own exception types (Fail, InvalidGraph, ...), not a common base
        _triage(lines)
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: cannot load ONNX model ({first})") from exc
    load_error = _triage(lines)
    provider = session.get_providers()[0]
    reason = "" if provider == CUDA or device == "cpu" else _why_not_cuda(load_error)
    if device == "cuda" and provider != CUDA:
        hint = "install the NVIDIA driver" if reason.startswith("no NVIDIA driver") else GPU_HINT
        raise ModelError(f"{path}: --device cuda, but {reason}; {hint}")
    return session, RuntimeInfo(provider, device, reason)


def open_session(path: Path, *, device: str = "auto", threads: int = 0) -> tuple[ort.InferenceSession, str]:
    """Like :func:`open_session_info`, returning only the provider's name."""
    session, info = open_session_info(path, device=device, threads=threads)
    return session, info.provider
