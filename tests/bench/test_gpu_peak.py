"""The pretraining benchmark's GPU peak table (the FLOP share is taken against the spec peak of the GPU found)."""

from __future__ import annotations

from bench.gpu_peak import spec_peak_tflops as peak


def test_spec_peaks_match_the_most_specific_gpu_name() -> None:
    assert peak("NVIDIA H200") == 989.4
    assert peak("NVIDIA H100 80GB HBM3") == 989.4 and peak("NVIDIA H100 PCIe") == 756.0
    assert peak("NVIDIA A100-SXM4-80GB") == 312.0 and peak("NVIDIA A10") == 125.0
    assert peak("NVIDIA L40S") == 362.1 and peak("NVIDIA L4") == 121.0
    assert peak("Tesla T4") == 65.0 and peak("NVIDIA GeForce RTX 4090") == 165.2
    assert peak("NVIDIA A10G") is None and peak("Some Future GPU") is None
