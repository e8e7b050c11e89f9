"""Device choice (``auto`` is CUDA when available, else CPU) and compute precision, in one place."""

from __future__ import annotations

import contextlib
import functools
import re
import sys

import torch

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def device_error(name: str) -> str | None:
    """Why ``name`` cannot be used as ``train.device`` here, or None if it can.

    Checked when a recipe is loaded, so a run asking for a device this machine lacks fails
    before its folder and data are set up."""
    if not isinstance(name, str) or not DEVICE_PATTERN.fullmatch(name):
        return "is not a known device: use auto, cpu, cuda or cuda:N."
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            return "asks for CUDA, which is not available here: use auto (CUDA when present) or cpu."
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            return f"names CUDA device {index}, but this machine has {torch.cuda.device_count()}: use cuda:0 .. cuda:{torch.cuda.device_count() - 1}."
    return None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    error = device_error(name)
    if error:
        raise RuntimeError(f"train.device={name} {error}")
    return torch.device(name)


def fused_optimizers_supported(device: torch.device) -> bool:
    """Fused Adam kernels exist for CPU and CUDA (torch >= 2.4); ``meta`` has them too, which
    lets the tests run the CUDA path's optimiser on tensors without data (tests/learner/test_device_step.py)."""
    return device.type in ("cpu", "cuda", "meta")


# ---- precision (train.precision, components.<slot>.precision) ------------------------------
PRECISIONS = ("fp32", "bf16")


@functools.cache
def cpu_has_bf16() -> bool:
    """Native bf16 matrix instructions (AVX512-BF16 or AMX-BF16 on x86, BF16 on Arm): without
    them torch emulates bf16 and an autocast step is slower than float32, not faster."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = {flag for line in handle if line.startswith(("flags", "Features")) for flag in line.split(":", 1)[1].split()}
    except OSError:  # not Linux: no way to tell here, so trust torch's bf16 kernels
        return True
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "meta" or cpu_has_bf16()  # meta: the tests' stand-in for a device


_told: set[str] = set()


def compute_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype matrix products run in (None: plain float32, no autocast at all, so fp32 runs
    stay bit-identical to code that never heard of precision)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    if precision == "fp32":
        return None
    if not bf16_supported(device):
        if device.type not in _told:  # said once per process, not once per update or slot
            _told.add(device.type)
            print(f"advrl: train.precision=bf16, but this {device.type} has no native bf16 (CPU flags avx512_bf16/amx_bf16); "
                  "training in fp32.", file=sys.stderr, flush=True)
        return None
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None):
    """The context a term's compute runs in: autocast to ``dtype``, or nothing for float32.
    ``meta`` has no autocast; there the step runs as float32 (same code path otherwise)."""
    if dtype is None or device.type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def autocast_dtype(tensor: torch.Tensor) -> torch.dtype | None:
    """The dtype autocast runs matrix products in on ``tensor``'s device, None outside autocast."""
    kind = tensor.device.type
    if kind not in ("cpu", "cuda") or not torch.is_autocast_enabled(kind):
        return None
    return torch.get_autocast_dtype(kind)


def generator_like_global(device: torch.device) -> torch.Generator:
    """A generator on ``device`` holding the global generator's current state there: it draws
    what the process would draw next on that device (a vectorised seed's own stream)."""
    generator = torch.Generator(device=device)
    generator.set_state(torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state())
    return generator


def with_generator_state(rng: dict, generator: torch.Generator) -> dict:
    """``rng`` (``checkpoint.rng_state()``) with the entry of ``generator``'s device replaced by its
    state, so that restoring it continues that generator's stream on the global one."""
    rng = dict(rng)
    if generator.device.type == "cuda":
        states = list(rng["cuda"])
        states[generator.device.index or 0] = generator.get_state()
        rng["cuda"] = states
    else:
        rng["torch"] = generator.get_state()
    return rng
