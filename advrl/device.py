"""Device choice, in one place: ``auto`` is CUDA when available, else CPU."""

from __future__ import annotations

import re

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
    """Fused Adam kernels exist for CPU and CUDA (torch >= 2.4)."""
    return device.type in ("cpu", "cuda")
