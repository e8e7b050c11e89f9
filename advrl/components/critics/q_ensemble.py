"""Ensemble of Q networks evaluated in one batched matmul (no Python loop over members)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from advrl.component import Component, option
from advrl.nn import ACTIVATIONS, EnsembleLinear, TargetCopy, ensemble_mlp
from advrl.registry import register

REDUCTIONS = ("min", "mean", "q1")


@register("critic", "q_ensemble")
class QEnsemble(Component):
    """``num_q`` critics Q_i(s, a) stacked on a leading ensemble dimension.

    ``q_all`` returns [num_q, B]; ``q(obs, act, reduce)`` reduces with ``min`` (clipped
    double Q), ``mean`` or ``q1`` (the first member, as TD3's actor loss uses).
    Not a term itself: objectives and constraints evaluate it through their ``critic`` slot.
    """

    @dataclass
    class Config:
        num_q: int = option(2, "number of ensemble members", ge=1)
        hidden_sizes: list[int] = option([256, 256], "widths of the hidden layers", ge=1)
        activation: str = option("relu", "hidden activation", choices=ACTIVATIONS)
        layer_norm: bool = option(False, "LayerNorm after each hidden linear layer (SSAR, ReBRAC)")
        init: str = option("default", "'default' (nn.Linear) or 'orthogonal' (CORL CQL: gain sqrt 2, last 1e-2)", choices=("default", "orthogonal"))
        target: bool = option(True, "keep a Polyak-averaged target copy")

    reads = ("observation", "action")

    def __init__(self, config: Config, spec):
        super().__init__(config, spec)
        self.net = ensemble_mlp(
            spec.obs_dim + spec.action_dim, config.hidden_sizes, 1, config.num_q, config.activation, config.layer_norm
        )
        if config.init == "orthogonal":
            linears = [m for m in self.net if isinstance(m, EnsembleLinear)]
            for i, layer in enumerate(linears):
                gain = 1e-2 if i == len(linears) - 1 else math.sqrt(2.0)
                for member in range(config.num_q):  # orthogonal per member, on the [out, in] view
                    nn.init.orthogonal_(layer.weight.data[member].T, gain=gain)
                nn.init.zeros_(layer.bias)
        self.target_net = TargetCopy(self.net) if config.target else None

    def _run(self, net: nn.Module, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action], dim=-1)
        lead = x.shape[:-1]
        x = x.reshape(1, -1, x.shape[-1]).expand(self.config.num_q, -1, -1)
        return net(x).reshape(self.config.num_q, *lead)

    def q_all(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self._run(self.net, obs, action)

    def target_q_all(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        if self.target_net is None:
            raise TypeError("critic q_ensemble was built with target=false, but a term asked for target values.")
        return self._run(self.target_net, obs, action)

    @staticmethod
    def reduce(values: torch.Tensor, how: str) -> torch.Tensor:
        if how == "min":
            return values.min(dim=0).values
        if how == "mean":
            return values.mean(dim=0)
        if how == "q1":
            return values[0]
        raise ValueError(f"Unknown Q reduction {how!r}; choose one of {', '.join(REDUCTIONS)}.")

    def q(self, obs, action, reduce: str = "min", target: bool = False) -> torch.Tensor:
        if reduce == "q1":  # evaluate only the first member: half the work of the full ensemble
            if target and self.target_net is None:
                raise TypeError("critic q_ensemble was built with target=false, but a term asked for target values.")
            net = self.target_net.module if target else self.net
            return self._q1(net, obs, action)
        values = self.target_q_all(obs, action) if target else self.q_all(obs, action)
        return self.reduce(values, reduce)

    def _q1(self, net: nn.Sequential, obs, action) -> torch.Tensor:
        x = torch.cat([obs, action], dim=-1)
        for layer in net:
            if isinstance(layer, EnsembleLinear):
                x = torch.addmm(layer.bias[0], x.reshape(-1, x.shape[-1]), layer.weight[0]).reshape(*x.shape[:-1], -1)
            elif hasattr(layer, "width"):  # EnsembleLayerNorm
                x = torch.nn.functional.layer_norm(x, (layer.width,)) * layer.weight[0] + layer.bias[0]
            else:
                x = layer(x)
        return x.squeeze(-1)

    def update_targets(self, tau: float) -> None:
        if self.target_net is None:
            super().update_targets(tau)
        self.target_net.soft_update(self.net, tau)
