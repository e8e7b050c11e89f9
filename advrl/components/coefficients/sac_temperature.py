"""Automatic entropy temperature of SAC (Haarnoja et al. 2018b), as in CORL's cql.py."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from advrl.component import Component, option
from advrl.registry import register


@register("coefficient", "sac_temperature")
class SACTemperature(Component):
    """alpha = multiplier * exp(log_alpha); loss = -mean(log_alpha * (log pi + target_entropy)).

    Writes ``entropy_coef`` (alpha before this step's update, detached, one value per sample)
    for the actor loss. ``target_entropy`` null means -action_dim.
    """

    @dataclass
    class Config:
        init_log_alpha: float = option(0.0, "initial log alpha")
        target_entropy: float | None = option(None, "entropy target; null: -action_dim")
        multiplier: float = option(1.0, "constant factor on alpha (CORL alpha_multiplier)", ge=0)

    reads = ("policy_log_prob",)
    writes = ("entropy_coef",)
    losses = ("loss_temperature",)

    def __init__(self, config: Config, spec):
        super().__init__(config, spec)
        self.log_alpha = nn.Parameter(torch.tensor(float(config.init_log_alpha)))
        self.target_entropy = -float(spec.action_dim) if config.target_entropy is None else config.target_entropy

    def value(self) -> torch.Tensor:
        return self.config.multiplier * self.log_alpha.exp().detach()

    def compute(self, td, step):
        log_prob = td["policy_log_prob"].detach()
        loss = -(self.log_alpha * (log_prob + self.target_entropy)).mean()
        return {"loss_temperature": loss, "entropy_coef": self.value().expand(log_prob.shape[0])}
