"""Device choice, in one place: ``auto`` is CUDA when available, else CPU."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name!r} but CUDA is not available here; use train.device=auto or cpu.")
    return device


def fused_optimizers_supported(device: torch.device) -> bool:
    """Fused Adam kernels exist for CPU and CUDA (torch >= 2.4)."""
    return device.type in ("cpu", "cuda")
