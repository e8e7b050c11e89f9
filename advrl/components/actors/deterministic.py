"""Deterministic tanh policy of TD3 (Fujimoto et al. 2018) and TD3+BC (Fujimoto & Gu 2021)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advrl.component import Component, option
from advrl.nn import ACTIVATIONS, TargetCopy, mlp
from advrl.registry import register


@register("actor", "deterministic")
class DeterministicActor(Component):
    """a = max_action * tanh(MLP(s)). As a term it writes the policy action (with grad)."""

    @dataclass
    class Config:
        hidden_sizes: list[int] = option([256, 256], "widths of the hidden layers", ge=1)
        activation: str = option("relu", "hidden activation: relu, tanh, elu, gelu, silu", choices=ACTIVATIONS)
        target: bool = option(True, "keep a Polyak-averaged target copy (TD3 target policy)")

    reads = ("observation",)
    writes = ("policy_action",)

    def __init__(self, config: Config, spec):
        super().__init__(config, spec)
        self.net = mlp(spec.obs_dim, config.hidden_sizes, spec.action_dim, config.activation)
        self.target_net = TargetCopy(self.net) if config.target else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.spec.max_action * torch.tanh(self.net(obs))

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return self(obs)

    def target_act(self, obs: torch.Tensor) -> torch.Tensor:
        net = self.target_net if self.target_net is not None else self.net
        return self.spec.max_action * torch.tanh(net(obs))

    def compute(self, td, step):
        return {"policy_action": self(td["observation"])}

    def update_targets(self, tau: float) -> None:
        if self.target_net is None:
            super().update_targets(tau)
        self.target_net.soft_update(self.net, tau)
