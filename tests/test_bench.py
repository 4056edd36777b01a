"""The pretraining benchmark's GPU peak table (the FLOP share is taken against the spec peak of the GPU found)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.conftest import REPO


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_pretrain", REPO / "bench" / "pretrain.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_spec_peaks_match_the_most_specific_gpu_name() -> None:
    peak = _bench().spec_peak_tflops
    assert peak("NVIDIA H200") == 989.4
    assert peak("NVIDIA H100 80GB HBM3") == 989.4 and peak("NVIDIA H100 PCIe") == 756.0
    assert peak("NVIDIA A100-SXM4-80GB") == 312.0 and peak("NVIDIA A10") == 125.0
    assert peak("NVIDIA L40S") == 362.1 and peak("NVIDIA L4") == 121.0
    assert peak("Tesla T4") == 65.0 and peak("NVIDIA GeForce RTX 4090") == 165.2
    assert peak("NVIDIA A10G") is None and peak("Some Future GPU") is None
