"""The arithmetic of a run, resolved once, saved in the run and reused when it resumes.

    a = resolve(cfg.precision, uses_channels_last(cfg), device)
    # {'precision': 'bf16', 'memory_format': 'channels_last', 'cuda': {...} on CUDA only}

precision auto is bf16 where the hardware does bf16 natively (a CPU with AMX tiles or with
AVX512-BF16 dot products, a GPU of compute capability 8.0 or newer), else fp32; once a run has
started, its choice is part of the run: a resumed run keeps it on any machine that can compute
it (bf16 autocast works on every CPU, emulated and slower without either) and otherwise refuses,
saying how to switch.
On CUDA the run also fixes TF32 off (fp32 means IEEE fp32, as on the CPU) and cuDNN's
autotuner on (kernels are chosen per process, so CUDA runs are not bitwise reproducible).
Evaluation runs under true_fp32(): no autocast and no TF32, whatever the process set; a recipe
with eval_precision = "train" evaluates in the run's own precision instead (eval_precision).
"""
from __future__ import annotations

import contextlib
import os
import warnings

import torch

from ..errors import CnnlabError, CnnlabWarning

CUDA_DEFAULTS = {"tf32": False, "cudnn_benchmark": True, "cudnn_deterministic": False}


# The variables that cap oneDNN's (torch's CPU conv and matmul library) instruction set: the
# current name first, then the older one.
ONEDNN_CAPS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")


def onednn_isa_cap() -> str | None:
    """The instruction-set cap oneDNN obeys, if one is set (e.g. "AVX2"); None where unset."""
    for name in ONEDNN_CAPS:
        value = os.environ.get(name, "").strip()
        if value:
            return value.upper()
    return None


# oneDNN's instruction-set names that let it use AVX512-BF16's dot products (VDPBF16PS); the
# AMX ones (every name with AMX in it) and ALL/DEFAULT include them too.
BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512", "AVX10_2_512")


def _cap_allows(names: tuple[str, ...]) -> bool:
    """Whether oneDNN's cap, if any, lets it use an instruction set named in names or AMX."""
    cap = onednn_isa_cap()
    return cap is None or cap in ("ALL", "DEFAULT") or "AMX" in cap or cap in names


def _cpu_has(probe: str) -> bool:
    try:  # private API; without it, assume not
        return bool(getattr(torch.cpu, probe)())
    except (AttributeError, RuntimeError):
        return False


def has_amx() -> bool:
    """Whether this CPU has AMX tiles (native bf16 matrix arithmetic) that oneDNN may use: a cap
    below AMX (ONEDNN_MAX_CPU_ISA=AVX2, say) leaves bf16 emulated, so it counts as none."""
    return _cap_allows(()) and _cpu_has("_is_amx_tile_supported")


def has_avx512_bf16() -> bool:
    """Whether this CPU has AVX512-BF16 dot products (Intel Cooper Lake and later, AMD Zen 4 and
    later) that oneDNN may use: bf16 convs run there at about twice the speed of fp32 (AMD EPYC
    Zen 4, 2 cores: fast-94's step 0.95 s against 1.8 s), less than AMX's tiles give."""
    return _cap_allows(BF16_ISAS) and _cpu_has("_is_avx512_bf16_supported")


def native_bf16_cpu() -> bool:
    """Whether this CPU computes bf16 in hardware (AMX or AVX512-BF16) that oneDNN may use."""
    return has_amx() or has_avx512_bf16()


def _cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def native_bf16(device: torch.device) -> bool:
    """bf16 in hardware on this device: AMX or AVX512-BF16 on a CPU; compute capability >= 8.0 on
    the GPU chosen (torch.cuda.is_bf16_supported() also counts the slow emulation of V100 and T4)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(_cuda_index(device)) >= (8, 0)
    return native_bf16_cpu()


def can_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast runs here at all, natively or emulated."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=True)
    return True  # CPU autocast computes bf16 on any CPU


def resolve(precision: str, channels_last: bool, device: torch.device) -> dict:
    """The arithmetic a new run on device uses, as plain values for config.json."""
    if precision == "auto":
        precision = "bf16" if native_bf16(device) else "fp32"
    out = {"precision": precision, "memory_format": "channels_last" if channels_last else "contiguous"}
    if device.type == "cuda":
        out["cuda"] = dict(CUDA_DEFAULTS)
    return out


def for_resume(saved: dict, device: torch.device, precision: str | None = None) -> tuple[dict, dict | None]:
    """(the arithmetic a resumed run uses here, the change to record or None).

    saved is the run's arithmetic; precision is --precision given again (None or auto: keep).
    """
    now = {**saved}
    if device.type == "cuda":  # a CPU run's fp32 stays IEEE fp32: TF32 off
        now["cuda"] = {**CUDA_DEFAULTS, **saved.get("cuda", {})}
    change = None
    if precision not in (None, "auto", saved["precision"]):
        now["precision"] = precision
        change = {"precision": [saved["precision"], precision]}
    if now["precision"] == "bf16" and not can_bf16(device):
        raise CnnlabError(f"this run trains in bf16 but {device} cannot compute bf16: resume it "
                          f"where bf16 works, or pass --precision fp32 to continue in fp32 (the "
                          f"switch is recorded in config.json)")
    if now["precision"] == "bf16" and change is None and not native_bf16(device):
        warnings.warn(f"this run trains in bf16, which {device} emulates (slower); it stays bf16 so "
                      f"the run stays the same; --precision fp32 switches (recorded)", CnnlabWarning)
    return now, change


def _get_tf32() -> tuple[bool, bool]:
    try:
        return (torch.backends.cudnn.conv.fp32_precision == "tf32",
                torch.backends.cuda.matmul.fp32_precision == "tf32")
    except AttributeError:  # torch before the fp32_precision settings
        return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


def _set_tf32(conv: bool, matmul: bool) -> None:
    try:
        torch.backends.cudnn.conv.fp32_precision = "tf32" if conv else "ieee"
        torch.backends.cuda.matmul.fp32_precision = "tf32" if matmul else "ieee"
    except AttributeError:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul


def apply(arith: dict, device: torch.device) -> None:
    """Set the process-wide CUDA switches the run's arithmetic names (nothing on a CPU run)."""
    if device.type != "cuda":
        return
    cuda = {**CUDA_DEFAULTS, **arith.get("cuda", {})}
    _set_tf32(cuda["tf32"], cuda["tf32"])
    torch.backends.cudnn.benchmark = cuda["cudnn_benchmark"]
    torch.backends.cudnn.deterministic = cuda["cudnn_deterministic"]


@contextlib.contextmanager
def true_fp32(device: torch.device):
    """IEEE fp32 for what runs inside: TF32 off on CUDA (restored after); nothing to do on a CPU."""
    if device.type != "cuda":
        yield
        return
    before = _get_tf32()
    _set_tf32(False, False)
    try:
        yield
    finally:
        _set_tf32(*before)


def eval_precision(setting: str, arith: dict) -> str:
    """The precision of a run's validation and test: its recipe's eval_precision setting, fp32
    (IEEE, the default) or train (the run's own: bf16 when it trains in bf16)."""
    return arith["precision"] if setting == "train" else "fp32"


def eval_arithmetic(precision: str, device: torch.device):
    """A context for evaluation in precision: bf16 autocast, or true_fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return true_fp32(device)
