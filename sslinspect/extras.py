"""Which install extra brings a missing module, so a command can say what to install instead of a traceback.

The base install (numpy, OpenCV) carries no ONNX Runtime: extras cannot remove a base dependency, and the CPU and
GPU builds of ONNX Runtime must never share a venv (both write the ``onnxruntime`` package folder). So the runtime
comes from exactly one extra: ``cpu`` (line PCs) or ``gpu`` (the GPU build with its CUDA/cuDNN libraries; ``all``
and ``dev`` use it).
"""

from __future__ import annotations

#: top-level module → (what it is, the extra that installs it)
EXTRA_FOR_MODULE: dict[str, tuple[str, str]] = {
    "torch": ("PyTorch", "train"),
    "torchvision": ("torchvision", "train"),
    "onnx": ("the ONNX exporter", "train"),
    "onnxscript": ("the ONNX exporter", "train"),
    "sklearn": ("scikit-learn", "train"),
    "onnxruntime": ("ONNX Runtime", "cpu"),
    "PySide6": ("Qt (PySide6)", "gui"),
    "pyqtgraph": ("pyqtgraph", "gui"),
    "superqt": ("superqt", "gui"),
}


def install_hint(extra: str) -> str:
    """The command that installs ``extra``; the runtime extras name their alternative."""
    if extra in ("cpu", "gpu"):
        return 'pip install "sslinspect[cpu]" (or "sslinspect[gpu]" for the CUDA build; never both)'
    return f'pip install "sslinspect[{extra}]"'


def missing_module_message(exc: ModuleNotFoundError) -> str | None:
    """A one-line message naming the extra to install for ``exc``, or None for a module no extra provides."""
    top = (exc.name or "").split(".")[0]
    found = EXTRA_FOR_MODULE.get(top)
    if found is None:
        return None
    what, extra = found
    return f"this command needs {what}, which is not installed: {install_hint(extra)}"
