"""Network building blocks shared by components: MLPs, batched ensembles, target copies."""

from __future__ import annotations

import contextlib
import contextvars
import copy
import math

import torch
from torch import nn

from advrl.device import autocast_dtype

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU, "silu": nn.SiLU}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}.")
    return ACTIVATIONS[name]()


class Stack(nn.Sequential):
    """``nn.Sequential`` whose forward calls the common layers' kernels directly.

    Same layers, indexing and ``state_dict`` keys as ``nn.Sequential``; skipping the
    per-layer ``Module.__call__`` (hooks, dispatch) saves a few microseconds per layer, which
    adds up to a few percent of a small-MLP training step.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fresh = False  # x is a tensor this forward made (not the caller's input)
        low = bias_dtype(x)
        for layer in self:
            kind = type(layer)
            if kind is nn.Linear:
                x = torch.nn.functional.linear(x, layer.weight, autocast_bias(layer.bias, low))
            elif kind is EnsembleLinear:
                x = torch.baddbmm(autocast_bias(layer.bias, low), x, layer.weight)
            elif kind is nn.ReLU:
                # in place on the layer output just made: linear/baddbmm backward does not read
                # its output, and a large ensemble activation ([E, n*B, 256] in CQL's penalty)
                # otherwise costs a fresh allocation and an extra pass over memory
                x = torch.relu_(x) if fresh else torch.relu(x)
            else:
                x = layer(x)
            fresh = kind in (nn.Linear, EnsembleLinear)
        return x


# True while a ReplicaStack runs one replica's code under vmap (advrl/learner/replicas.py)
_UNDER_VMAP: contextvars.ContextVar[bool] = contextvars.ContextVar("advrl_under_vmap", default=False)


@contextlib.contextmanager
def under_vmap():
    """Marks the networks' forwards in this block as running under ``torch.func.vmap``."""
    reset = _UNDER_VMAP.set(True)
    try:
        yield
    finally:
        _UNDER_VMAP.reset(reset)


def bias_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The dtype to cast a layer's bias to before it meets ``x``: autocast's, under vmap only.

    Under vmap (vectorised seeds) ``linear`` and ``baddbmm`` decompose into a matrix product
    and an add; autocast casts the product but not the add, so a float32 bias would promote
    the layer's output, and every activation after it, to float32: twice the memory traffic
    and other rounding than the same network in a single run. A single run is left to
    autocast, which casts the bias itself (once per region, cached across calls): unchanged,
    so single runs stay bit-identical to before."""
    return autocast_dtype(x) if _UNDER_VMAP.get() else None


def autocast_bias(bias: torch.Tensor | None, low: torch.dtype | None) -> torch.Tensor | None:
    return bias if low is None or bias is None else bias.to(low)


def mlp(in_dim: int, hidden_sizes: list[int], out_dim: int, act: str = "relu", layer_norm: bool = False) -> nn.Sequential:
    """Linear -> [LayerNorm] -> activation per hidden layer, then a linear output layer."""
    layers: list[nn.Module] = []
    for width in hidden_sizes:
        layers.append(nn.Linear(in_dim, width))
        if layer_norm:
            layers.append(nn.LayerNorm(width))
        layers.append(activation(act))
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return Stack(*layers)


class EnsembleLinear(nn.Module):
    """``E`` independent linear layers applied in one batched matmul: [E, B, in] -> [E, B, out].

    Each member is initialised like ``nn.Linear`` so an ensemble of one equals a plain MLP
    in distribution.
    """

    def __init__(self, in_dim: int, out_dim: int, ensemble_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_dim))
        bound = 1.0 / math.sqrt(in_dim)
        for member in range(ensemble_size):
            # nn.Linear's default: kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(in), 1/sqrt(in))
            nn.init.uniform_(self.weight[member], -bound, bound)
            nn.init.uniform_(self.bias[member], -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(autocast_bias(self.bias, bias_dtype(x)), x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over features with separate affine parameters per ensemble member."""

    def __init__(self, width: int, ensemble_size: int):
        super().__init__()
        self.width = width
        self.weight = nn.Parameter(torch.ones(ensemble_size, 1, width))
        self.bias = nn.Parameter(torch.zeros(ensemble_size, 1, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.layer_norm(x, (self.width,)) * self.weight + self.bias


def ensemble_mlp(
    in_dim: int, hidden_sizes: list[int], out_dim: int, ensemble_size: int, act: str = "relu", layer_norm: bool = False
) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden_sizes:
        layers.append(EnsembleLinear(in_dim, width, ensemble_size))
        if layer_norm:
            layers.append(EnsembleLayerNorm(width, ensemble_size))
        layers.append(activation(act))
        in_dim = width
    layers.append(EnsembleLinear(in_dim, out_dim, ensemble_size))
    return Stack(*layers)


class TargetCopy(nn.Module):
    """A frozen copy of ``source`` that follows it by Polyak averaging.

    Registered as a submodule by its owner, so it is saved in ``state_dict``; its parameters
    do not require grad, so optimisers built from ``requires_grad`` parameters skip it.
    """

    def __init__(self, source: nn.Module):
        super().__init__()
        self.module = copy.deepcopy(source).requires_grad_(False)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    @torch.no_grad()
    def soft_update(self, source: nn.Module, tau: float) -> None:
        """target <- (1 - tau) * target + tau * source, in one fused kernel per dtype."""
        targets = [p.data for p in self.module.parameters()]
        sources = [p.data for p in source.parameters()]
        torch._foreach_lerp_(targets, sources, tau)
