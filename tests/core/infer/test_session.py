"""Provider choice on the line: CUDA or a clear error, ``auto`` says what it used, ORT's log filtered by content."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from sslinspect.errors import ModelError
from sslinspect.infer import session as sess
from sslinspect.infer.onnx_predictor import Predictor, expand_inputs


@pytest.fixture
def model(trained_project: Path) -> Path:
    return trained_project / "exports" / "model" / "model.onnx"


def _cuda_works(model: Path) -> bool:
    try:
        return sess.open_session_info(model, device="cuda")[1].provider == sess.CUDA
    except ModelError:
        return False


def test_auto_says_why_it_runs_on_the_cpu_and_prints_no_raw_runtime_errors(model: Path, capfd) -> None:  # type: ignore[no-untyped-def]
    if _cuda_works(model):
        pytest.skip("CUDA works here: nothing to fall back from")
    capfd.readouterr()
    p = Predictor(model, device="auto")
    err = capfd.readouterr().err
    assert p.provider == sess.CPU and p.runtime.reason
    assert p.provider_note().startswith("CPUExecutionProvider (auto: ")
    assert "onnxruntime:" not in err and "Failed to" not in err, err  # expected noise is not shown raw


def test_cuda_asked_and_unusable_is_one_clear_line(model: Path) -> None:
    if _cuda_works(model):
        pytest.skip("CUDA works here")
    with pytest.raises(ModelError) as exc:
        Predictor(model, device="cuda")
    text = str(exc.value)
    assert "\n" not in text and "--device cuda" in text
    assert "pip install" in text or "NVIDIA driver" in text


def test_runtime_messages_are_filtered_by_content(caplog: pytest.LogCaptureFixture) -> None:
    lines = [
        "2026-01-01 00:00:00.1 [W:onnxruntime:, graph.cc:1 Graph] Initializer threshold appears in graph inputs "
        "and will not be treated as constant value/weight.",
        "2026-01-01 00:00:00.2 [E:onnxruntime:Default, provider_bridge_ort.cc:2458 operator()] Failed to load "
        "library /x/libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: cannot open shared object file",
        "2026-01-01 00:00:00.3 [W:onnxruntime:Default, x.cc:1 f] Something the user should see",
    ]
    with caplog.at_level(logging.DEBUG, logger=sess.log.name):
        reason = sess._triage(lines)
    assert reason.startswith("libcublasLt.so.13")
    shown = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert shown == ["onnxruntime: Something the user should see"]


def test_preload_runs_once_and_keeps_stdout_clean(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    calls: list[int] = []

    def fake_preload(**_: Any) -> None:
        calls.append(1)
        print("Failed to load libcublasLt.so.13: cannot open shared object file")

    monkeypatch.setattr(ort, "preload_dlls", fake_preload, raising=False)
    monkeypatch.setattr(sess, "_preloaded", None)
    assert sess._preload_cuda() == ["Failed to load libcublasLt.so.13: cannot open shared object file"]
    sess._preload_cuda()
    assert calls == [1] and capsys.readouterr().out == ""


class _Spy:
    def __init__(self, inner: ort.InferenceSession) -> None:
        self.inner, self.fetched = inner, []  # type: ignore[var-annotated]

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.fetched.append(list(names))
        return self.inner.run(names, feeds)


@pytest.mark.parametrize("keep_maps", [False, True])
def test_only_the_outputs_needed_are_fetched(model: Path, demo_data, keep_maps: bool) -> None:  # type: ignore[no-untyped-def]
    p = Predictor(model, device="cpu", keep_maps=keep_maps)
    spy = _Spy(p.session)
    p.session = spy
    preds = list(p.predict_paths(expand_inputs([demo_data.test_dir])[:2], keep_maps=keep_maps))
    needed = keep_maps or p.typing is not None  # naming a flagged part needs its map
    assert spy.fetched and all(("anomaly_map" in names) == needed for names in spy.fetched)
    assert all((x.anomaly_map is not None) == keep_maps for x in preds)


def test_an_exported_model_loads_without_any_runtime_message(model: Path) -> None:
    lines: list[str] = []
    with sess.native_stderr(lines):
        ort.InferenceSession(str(model), providers=[sess.CPU])
    assert lines == []  # no initializer-as-input warning (the thresholds are plain inputs) and nothing else
