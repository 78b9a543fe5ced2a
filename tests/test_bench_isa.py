"""benchmarks/cpu_peak.py: the instruction set from a CPU's flags and the nominal peak it implies
(the benchmark once printed the AVX-512 peak on an AVX2-only AMD EPYC)."""
import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """A module of benchmarks/ (a folder of scripts, not a package), as its scripts import it."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: its dataclass looks the module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


cpu_peak = load_benchmark("cpu_peak")

# /proc/cpuinfo "flags" lines of real machines
# Intel Xeon (Sapphire Rapids class): the project's 2-core machine
XEON_AMX = (
    'fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse '
    'sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid '
    'tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt '
    'tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch cpuid_fault '
    'fsgsbase tsc_adjust bmi1 hle avx2 smep bmi2 erms invpcid rtm avx512f avx512dq rdseed adx smap '
    'avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves '
    'avx_vnni avx512_bf16 arat avx512vbmi umip avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni '
    'avx512_bitalg avx512_vpopcntdq rdpid cldemote movdiri movdir64b fsrm serialize tsxldtrk amx_bf16 '
    'avx512_fp16 amx_tile amx_int8 arch_capabilities ')
# AMD EPYC (Zen 3): AVX2 only
EPYC_AVX2 = (
    'fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse '
    'sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl nonstop_tsc '
    'cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe '
    'popcnt aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse '
    '3dnowprefetch osvw topoext ssbd ibrs ibpb stibp vmmcall fsgsbase tsc_adjust bmi1 avx2 smep bmi2 '
    'erms invpcid rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 clzero xsaveerptr '
    'arat npt nrip_save umip vaes vpclmulqdq rdpid fsrm ')
XEON_AVX512 = XEON_AMX.replace("amx_bf16 ", "").replace("amx_tile ", "").replace("amx_int8 ", "")  # Ice Lake class
EPYC_ZEN4 = EPYC_AVX2.replace("avx2 ", "avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 avx512_vnni ")
SANDY_BRIDGE = "fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt aes xsave avx"
OLD = "fpu mmx sse sse2"


@pytest.mark.parametrize("flags, name, per_cycle, amx", [
    (EPYC_AVX2, "AVX2", 32, False),
    (XEON_AMX, "AVX-512", 64, True),
    (XEON_AVX512, "AVX-512", 64, False),
    (SANDY_BRIDGE, "AVX", 16, False),
    (OLD, "SSE", 8, False),
    ("", "SSE", 8, False),
    ("sse2 avx avx2", "AVX", 16, False),  # avx2 without fma: no fused multiply-add
])
def test_isa_from_flags(flags, name, per_cycle, amx):
    isa = cpu_peak.detect_isa(flags)
    assert (isa.name, isa.fp32_flop_per_cycle, isa.amx_bf16) == (name, per_cycle, amx)
    assert cpu_peak.detect_isa(set(flags.split())) == isa


def test_flags_are_whole_words():
    # avx512 extensions without the foundation, or amx_int8 alone, do not count
    assert cpu_peak.detect_isa("sse2 avx avx2 fma avx512_bf16 avx512_vnni amx_int8").name == "AVX2"
    assert not cpu_peak.detect_isa("avx512f amx_tile").amx_bf16


def test_peaks_and_their_description():
    amd = cpu_peak.detect_isa(EPYC_AVX2)
    assert cpu_peak.peak_gflops(amd, cores=2, ghz=2.5) == 160.0
    text = cpu_peak.describe_peak(amd, 2, 2.5)
    assert text.startswith("160 GFLOP/s fp32") and "32 FLOP/cycle" in text and "AVX2" in text
    assert "AMX" not in text and "AVX-512" not in text
    intel = cpu_peak.detect_isa(XEON_AMX)
    text = cpu_peak.describe_peak(intel, 2, 2.6)
    assert text.startswith("333 GFLOP/s fp32") and "64 FLOP/cycle" in text
    assert "AMX bf16 tiles present: 5325 GFLOP/s bf16" in text  # 2 x 2.6 x 1024
    assert "AVX512-BF16" not in text  # AMX's tiles are what counts there
    zen4 = cpu_peak.detect_isa(EPYC_ZEN4)
    assert (zen4.name, zen4.amx_bf16, zen4.avx512_bf16) == ("AVX-512", False, True)
    assert not cpu_peak.detect_isa(XEON_AVX512.replace("avx512_bf16 ", "")).avx512_bf16
    text = cpu_peak.describe_peak(zen4, 2, 2.6)
    assert text.startswith("333 GFLOP/s fp32") and "AVX512-BF16 present: 666 GFLOP/s bf16" in text


def test_flags_and_clock_from_a_cpuinfo_file(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\ncpu MHz\t\t: 2450.000\n"
                    f"flags\t\t: {EPYC_AVX2}\n\nprocessor\t: 1\ncpu MHz\t\t: 2500.000\nflags\t\t: {EPYC_AVX2}\n")
    assert cpu_peak.detect_isa(cpu_peak.read_cpu_flags(str(info))).name == "AVX2"
    assert cpu_peak.read_cpu_ghz(str(info)) == 2.5
    assert cpu_peak.read_cpu_flags(str(tmp_path / "missing")) == "" and cpu_peak.read_cpu_ghz(str(tmp_path / "missing")) == 0.0


def test_the_benchmark_prints_the_avx2_peak_on_an_avx2_cpu(monkeypatch):
    import torch
    load_benchmark("tutorial")
    train_speed = load_benchmark("train_speed")
    monkeypatch.setattr(train_speed, "read_cpu_flags", lambda: EPYC_AVX2)
    monkeypatch.setattr(train_speed, "read_cpu_ghz", lambda: 2.5)
    monkeypatch.setattr(train_speed.os, "cpu_count", lambda: 2)
    peak, text = train_speed.nominal_peak(torch.device("cpu"))
    assert peak == 160.0 and "AVX2" in text and "AVX-512" not in text and "AMX" not in text


def test_time_to_accuracy_names_an_instruction_set_cap(monkeypatch):
    # An AVX-512 machine capped to AVX2 runs as an AVX2 one: the figures must say so.
    sys.path.insert(0, str(BENCHMARKS))  # its own imports (cpu_peak, train_speed) are siblings
    tta = load_benchmark("time_to_accuracy")
    cpu = tta.torch.device("cpu")
    for name in tta.ISA_CAPS:
        monkeypatch.delenv(name, raising=False)
    assert "capped" not in tta.machine(cpu)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert "capped by ONEDNN_MAX_CPU_ISA=AVX2: computes with" in tta.machine(cpu)
