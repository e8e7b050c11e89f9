"""The random draws of a training step, one source for single runs and vectorised seeds.

Components draw their noise here (``noise.randn_like(x)``, not ``torch.randn_like(x)``):

- in a single run the draw is exactly torch's, from the global generator, so runs and the
  reference tests are bit-identical to drawing from torch directly;
- inside a vectorised step (K seeds under ``torch.func.vmap``, see
  ``advrl.learner.replicas``) replica k draws from its own generator, in the same order
  and with the same shapes as the single-seed run with seed k. That is what makes replica k
  equal to the single run k; vmap's own ``randomness="different"`` draws all replicas from
  the one global generator and would not.

A component that calls ``torch.randn`` directly still works in single runs; in a vectorised
step vmap refuses it (``randomness="error"``), so the mistake shows on the first step.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Sequence

import torch

# (token, generators) while a vectorised step runs: token is the replica index, batched by vmap
_REPLICAS: contextvars.ContextVar[tuple[torch.Tensor, Sequence[torch.Generator]] | None] = contextvars.ContextVar(
    "advrl_replicas", default=None)


@contextlib.contextmanager
def replicas(token: torch.Tensor, generators: Sequence[torch.Generator]):
    """Within this block (inside vmap), draws come from ``generators[k]`` for replica k."""
    reset = _REPLICAS.set((token, generators))
    try:
        yield
    finally:
        _REPLICAS.reset(reset)


def _draw(kind: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, generator) -> torch.Tensor:
    if kind == "normal":
        return torch.randn(shape, dtype=dtype, device=device, generator=generator)
    return torch.rand(shape, dtype=dtype, device=device, generator=generator)


class _PerReplicaDraw(torch.autograd.Function):
    """A draw whose vmap rule takes each replica's sample from that replica's generator."""

    @staticmethod
    def forward(token, kind, shape, dtype, device):
        return _draw(kind, shape, dtype, device, None)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass  # noise is not differentiated

    @staticmethod
    def vmap(info, in_dims, token, kind, shape, dtype, device):
        # the token is arange(K) batched along dim 0, so batch entry k is replica k (reading
        # the token would be a host sync inside the step)
        _, generators = _REPLICAS.get()
        return torch.stack([_draw(kind, shape, dtype, device, generators[k]) for k in range(info.batch_size)]), 0


def _sample(kind: str, shape, dtype, device) -> torch.Tensor:
    shape = tuple(int(n) for n in shape)
    context = _REPLICAS.get()
    if context is None:
        return _draw(kind, shape, dtype, device, None)
    return _PerReplicaDraw.apply(context[0], kind, shape, dtype, torch.device(device))


def randn(*shape: int, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """Standard normal samples of ``shape`` (torch.randn)."""
    return _sample("normal", shape, dtype or torch.get_default_dtype(), device or "cpu")


def rand(*shape: int, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """Uniform samples in [0, 1) of ``shape`` (torch.rand)."""
    return _sample("uniform", shape, dtype or torch.get_default_dtype(), device or "cpu")


def randn_like(x: torch.Tensor) -> torch.Tensor:
    """Standard normal samples shaped like ``x`` (torch.randn_like)."""
    return _sample("normal", x.shape, x.dtype, x.device)
