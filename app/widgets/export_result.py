"""The Export page's "Exported model" box: what the sidecar JSON next to a model says, in plain words (file, model,
the parity check against the training framework, the threshold), and an "Open folder" button."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFormLayout, QGroupBox, QLabel, QPushButton, QWidget

from app.glossary import tip

PASS, FAIL = "#2e7d32", "#c62828"
ROWS = (("file", "File", "ONNX"), ("model", "Model", "ONNX"), ("parity", "Parity check", "parity"),
        ("threshold", "Threshold", "threshold"))  # fmt: skip


def provider_words(provider: str) -> str:
    """ONNX Runtime's execution provider in plain words."""
    return {
        "CPUExecutionProvider": "run on the processor",
        "CUDAExecutionProvider": "run on the NVIDIA GPU",
        "TensorrtExecutionProvider": "run on the NVIDIA GPU with TensorRT",
    }.get(provider, f"run with {provider or 'ONNX Runtime'}")


def precision_text(meta: dict[str, Any]) -> str:
    """The sidecar's precision, and for INT8 what its accuracy check made the export keep in FP32."""
    precision = str(meta.get("precision", "?"))
    check = meta.get("precision_check") or {}
    kept = int(check.get("fp32_ops", 0) or 0)
    if precision == "int8" and kept:
        precision += f" (the backbone's first {kept} operators kept in fp32 to pass the accuracy check; slower)"
    if check.get("forced"):
        precision += " — written with --force beyond the accuracy tolerance"
    return precision


def parity_text(par: dict[str, Any]) -> str:
    """The parity check of a sidecar as one rich-text line without jargon."""
    ok = bool(par.get("passed"))
    return (
        f"<span style='color:{PASS if ok else FAIL}'><b>{'passed' if ok else 'FAILED'}</b></span>: on "
        f"{par.get('images')} real images the exported model ({provider_words(str(par.get('provider', '')))}) "
        f"{'answers like' if ok else 'differs from'} the training framework — largest difference "
        f"{par.get('max_abs_diff_probabilities', 0):.1e} in class probabilities and "
        f"{par.get('max_abs_diff_anomaly_score', 0):.1e} in anomaly score (allowed {par.get('atol')}); "
        f"OK/NG decisions {'agree' if par.get('decisions_agree') else 'DIFFER'}"
    )


class ExportResultBox(QGroupBox):
    """What an exported model is, read from its sidecar."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Exported model", parent)
        form = QFormLayout(self)
        self.values: dict[str, QLabel] = {}
        self.sidecar: dict[str, Any] = {}
        for key, text, term in ROWS:
            lab = QLabel("—")
            lab.setWordWrap(True)
            lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            tip(lab, term)
            self.values[key] = lab
            form.addRow(f"{text}:", lab)
        self.open_folder = QPushButton("Open folder")
        form.addRow(self.open_folder)

    def show_model(self, path: Path) -> bool:
        """Show what the sidecar JSON next to ``path`` says (parity result included); False without one."""
        side = path.with_suffix(".json")
        self.sidecar = {}
        if not path.is_file() or not side.is_file():
            for lab in self.values.values():
                lab.setText("—")
            return False
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
            par = meta["parity"]
            self.sidecar = meta
        except (OSError, ValueError, KeyError) as exc:
            self.values["file"].setText(f"{side}: unreadable ({exc})")
            return False
        v = self.values
        v["file"].setText(f"{path}\n{path.stat().st_size / 2**20:.1f} MB, sha256 {str(meta.get('sha256', ''))[:16]}…")
        prov = meta.get("provenance", {})
        v["model"].setText(
            f"{precision_text(meta)}, {meta.get('image_size')} px, classes {', '.join(meta.get('classes', []))}; "
            f"{prov.get('method', '?')}/{prov.get('backbone', '?')}"
        )
        v["parity"].setText(parity_text(par))
        v["threshold"].setText(f"{meta.get('threshold', float('nan')):.4f} (a model input: the line can override it)")
        return True
