"""bench/machine.py: the machine fields every bench JSON carries, read from /proc/cpuinfo-style lines."""

from __future__ import annotations

from bench.machine import cpu_name, describe, simd

INTEL = ["processor : 0", "model name : Intel(R) Xeon(R) Platinum 8488C", "flags : fpu sse4_2 avx avx2 avx512f"]
AMD = ["processor : 0", "model name : AMD EPYC", "flags : fpu sse4_2 avx avx2 fma"]


def test_two_machines_of_different_vector_width_are_told_apart() -> None:
    assert cpu_name(INTEL) == "Intel(R) Xeon(R) Platinum 8488C" and cpu_name(AMD) == "AMD EPYC"
    assert simd(INTEL) == "avx512f" and simd(AMD) == "avx2"
    assert simd(["processor : 0"]) is None  # no flags line: unknown, not a guess


def test_describe_keeps_the_callers_fields() -> None:
    m = describe(torch="2.14.1", threads=1)
    assert m["torch"] == "2.14.1" and m["threads"] == 1
    assert m["cpu"] and m["cpu_count"] >= 1 and m["python"].count(".") == 2
