"""The CPU's vector instruction set, from its flags, and the nominal peak it implies.

    isa = detect_isa(read_cpu_flags())     # flags as in /proc/cpuinfo's "flags" line
    isa.name, isa.fp32_flop_per_cycle      # 'AVX-512', 64
    peak_gflops(isa, cores=2, ghz=2.1)     # nominal fp32 GFLOP/s

Nominal fp32 FLOP per cycle per core, from the widest fused multiply-add the flags allow, with
two FMA units as on the server cores we meet (one FMA = 2 FLOP per fp32 lane):
    AVX-512 (avx512f)          2 units x 16 lanes x 2 = 64
    AVX2 + FMA (avx2, fma)     2 units x  8 lanes x 2 = 32   (e.g. AMD EPYC before Zen 4)
    AVX without FMA (avx)      1 add + 1 multiply unit x 8 lanes = 16
    SSE2 or unknown            1 add + 1 multiply unit x 4 lanes = 8
A part with AVX-512 but one FMA unit, or 256-bit data paths (AMD Zen 4), reaches half of the
AVX-512 figure: the peak is what the instruction set allows, not a measurement.
AMX (amx_bf16) adds bf16 tile multiplies: one TDPBF16PS multiplies a 16x32 by a 32x16 bf16
tile into 16x16 fp32, 16 * 16 * 32 = 8,192 multiply-adds = 16,384 FLOP, and a core issues one
every 16 cycles: 1,024 bf16 FLOP per cycle per core.
AVX512-BF16 (avx512_bf16, e.g. AMD EPYC Zen 4, no AMX) adds VDPBF16PS: per fp32 lane, two bf16
products added into it, so twice the fp32 figure in bf16 (128 FLOP per cycle per core).
"""
from __future__ import annotations

from dataclasses import dataclass

AMX_BF16_FLOP_PER_CYCLE = 16 * 16 * 32 * 2 // 16  # = 1024, see the module docstring


@dataclass(frozen=True)
class Isa:
    name: str  # 'AVX-512', 'AVX2', 'AVX', 'SSE'
    fp32_flop_per_cycle: int  # nominal, per core
    how: str  # the derivation, for the printout
    amx_bf16: bool  # AMX tiles with bf16 multiplies are present
    avx512_bf16: bool = False  # AVX-512 bf16 dot products (VDPBF16PS) are present


def detect_isa(flags: str | set[str]) -> Isa:
    """The widest vector instruction set in a CPU's flags (a /proc/cpuinfo "flags" line)."""
    have = set(flags.split()) if isinstance(flags, str) else set(flags)
    amx = {"amx_tile", "amx_bf16"} <= have
    if "avx512f" in have:
        return Isa("AVX-512", 64, "2 FMA units x 16 fp32 lanes x 2 FLOP", amx, "avx512_bf16" in have)
    if {"avx2", "fma"} <= have:
        return Isa("AVX2", 32, "2 FMA units x 8 fp32 lanes x 2 FLOP", amx)
    if "avx" in have:
        return Isa("AVX", 16, "1 add + 1 multiply unit x 8 fp32 lanes", amx)
    return Isa("SSE", 8, "1 add + 1 multiply unit x 4 fp32 lanes", amx)


def read_cpu_flags(path: str = "/proc/cpuinfo") -> str:
    """The first "flags" line of /proc/cpuinfo ("" where there is none, e.g. not Linux)."""
    try:
        with open(path) as f:
            return next((line.split(":", 1)[1] for line in f if line.startswith("flags")), "")
    except OSError:
        return ""


def read_cpu_ghz(path: str = "/proc/cpuinfo") -> float:
    """The highest clock /proc/cpuinfo reports now, in GHz (0.0 when unknown)."""
    try:
        with open(path) as f:
            return max(float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")) / 1000
    except (OSError, ValueError):
        return 0.0


def peak_gflops(isa: Isa, cores: int, ghz: float) -> float:
    """Nominal fp32 GFLOP/s of cores at ghz."""
    return cores * ghz * isa.fp32_flop_per_cycle


def describe_peak(isa: Isa, cores: int, ghz: float) -> str:
    """One line: the fp32 peak with its derivation, and the bf16 peak of AMX's tiles or of
    AVX512-BF16's dot products when the CPU has them."""
    text = (f"{peak_gflops(isa, cores, ghz):.0f} GFLOP/s fp32 ({cores} cores x {ghz:.2f} GHz x "
            f"{isa.fp32_flop_per_cycle} FLOP/cycle, {isa.name}: {isa.how})")
    if isa.amx_bf16:
        text += (f"; AMX bf16 tiles present: {cores * ghz * AMX_BF16_FLOP_PER_CYCLE:.0f} GFLOP/s bf16 "
                 f"({AMX_BF16_FLOP_PER_CYCLE} FLOP/cycle/core: one 16x32x16 tile multiply per 16 cycles)")
    elif isa.avx512_bf16:
        text += (f"; AVX512-BF16 present: {2 * peak_gflops(isa, cores, ghz):.0f} GFLOP/s bf16 "
                 f"(VDPBF16PS: two bf16 products per fp32 lane)")
    return text
