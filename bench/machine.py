"""What machine a benchmark ran on: the same fields in every ``bench/`` JSON.

Figures from two machines are compared only with this in view. Two 2-core VMs that both call themselves
``AMD EPYC`` gave the quality benchmark different models for the same code and seed (final pretraining loss 1.770
against 1.796, image AUROC 0.924 against 0.940 on metal seed 1); VMs of that name have come with and without AVX-512,
the vector units choose torch's kernels, and a different rounding early in training ends in a different network. On
one machine, one epoch of pretraining run twice gave the same checkpoint bit for bit. So a change is judged against a
baseline measured on the same machine, and ``simd`` is recorded to tell machines apart.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

#: Vector extensions from the widest down; the first the CPU has names its level.
SIMD_LEVELS = ("amx_tile", "avx512_vnni", "avx512f", "avx2", "avx", "sse4_2")


def _cpuinfo() -> list[str]:
    info = Path("/proc/cpuinfo")
    return info.read_text(encoding="utf-8").splitlines() if info.exists() else []


def cpu_name(lines: list[str] | None = None) -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    lines = _cpuinfo() if lines is None else lines
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    return name or platform.processor() or platform.machine()


def simd(lines: list[str] | None = None) -> str | None:
    """The widest vector extension of :data:`SIMD_LEVELS` the CPU has (None where ``/proc/cpuinfo`` does not say).

    >>> simd(["flags : fpu sse4_2 avx avx2 fma"])
    'avx2'
    """
    lines = _cpuinfo() if lines is None else lines
    flags = set(next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), []))
    return next((level for level in SIMD_LEVELS if level in flags), None)


def describe(**extra: Any) -> dict[str, Any]:
    """Platform, CPU name and vector level, cores, load, Python; ``extra`` (library versions, threads) appended."""
    lines = _cpuinfo()
    return {
        "platform": platform.platform(),
        "cpu": cpu_name(lines),
        "simd": simd(lines),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        **extra,
    }
