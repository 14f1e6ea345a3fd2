"""Choose the compute dtype per device: what is fastest where it runs, always overridable."""

import platform
from functools import cache
from pathlib import Path

import torch

from dllg.errors import DllgError

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "float64": torch.float64,
}


@cache
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX); on AVX2 bf16 is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def cpu_description() -> str:
    """The CPU's model name and the instruction sets that decide the speed figures here, for benchmarks."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), ""
    )
    flags = set(
        next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    )
    found = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_int8") if f in flags]
    return f"{name} ({', '.join(found) or 'no AVX2'})"


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise DllgError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto") from exc


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """`auto`: bf16 on GPUs and on CPUs with native bf16, fp32 elsewhere (fp32 batches better on AVX2)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
            return torch.bfloat16
        return torch.float32
    if dtype not in DTYPES:
        raise DllgError(f"unknown dtype {dtype!r}: use one of auto, {', '.join(sorted(DTYPES))}")
    return DTYPES[dtype]
