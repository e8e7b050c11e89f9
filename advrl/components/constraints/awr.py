"""Advantage-weighted regression (Peng et al. 2019), IQL's policy extraction (Kostrikov et al. 2022, Eq. 7)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advrl.component import Component, option, slot
from advrl.registry import register


@register("constraint", "awr")
class AWR(Component):
    """loss = mean_B( min(exp(beta * A(s, a)), max_weight) * -log pi(a|s) ).

    Reads the per-sample ``advantage`` (e.g. from ``advantage: q_minus_v``); needs an actor
    with a log-density. beta -> 0 gives BC, large beta keeps only the best actions.
    """

    @dataclass
    class Config:
        actor: str = slot("actor", "actor", "policy whose log-likelihood is weighted", needs=("log_prob",))
        beta: float = option(3.0, "inverse temperature of the advantage weights (IQL MuJoCo: 3.0)", ge=0)
        max_weight: float = option(100.0, "clamp of exp(beta * A) (IQL: 100)", gt=0)

    reads = ("observation", "action", "advantage")
    writes = ("awr_weight",)
    losses = ("loss_awr",)

    def compute(self, td, step):
        weight = torch.exp(self.config.beta * td["advantage"].detach()).clamp(max=self.config.max_weight)
        log_prob = self.ref("actor").log_prob(td["observation"], td["action"])
        return {"loss_awr": (weight * -log_prob).mean(), "awr_weight": weight}
