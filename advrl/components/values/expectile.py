"""IQL state-value net trained by expectile regression (Kostrikov et al. 2022, Eq. 5)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advrl.component import option, slot
from advrl.components.critics.q_ensemble import REDUCTIONS
from advrl.components.values._network import StateValueNet
from advrl.nn import ACTIVATIONS
from advrl.registry import register


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """mean |tau - 1[u < 0]| u^2 with u = Q - V: tau > 0.5 weighs under-estimates more."""
    weight = torch.where(diff > 0, expectile, 1.0 - expectile)
    return (weight * diff**2).mean()


@register("value", "expectile")
class ExpectileValue(StateValueNet):
    """V(s) = MLP(s), trained towards the tau-expectile of Q(s, a) over dataset actions.

    The Q values come from the critic's target network reduced by ``q`` (IQL: min of two).
    Writes ``state_value``: V(s) before this step's update, detached, for advantage estimators,
    and ``value_target``: the Q(s, a) values V was regressed onto (``advantage: q_minus_v``
    can read them with ``q_key: value_target`` instead of evaluating the critic again).
    """

    @dataclass
    class Config:
        critic: str = slot("critic", "critic", "critic whose values V tracks")
        expectile: float = option(0.7, "tau; 0.5 = mean, -> 1 = max over in-data actions (IQL MuJoCo: 0.7)", gt=0, lt=1)
        hidden_sizes: list[int] = option([256, 256], "widths of the hidden layers", ge=1)
        activation: str = option("relu", "hidden activation", choices=ACTIVATIONS)
        q: str = option("min", "ensemble reduction of the critic: min, mean or q1", choices=REDUCTIONS)
        use_target_critic: bool = option(True, "use the critic's target network (IQL) or the online one")

    reads = ("observation", "action")
    writes = ("state_value", "value_target")
    losses = ("loss_value",)

    def compute(self, td, step):
        cfg = self.config
        with torch.no_grad():
            q = self.ref("critic").q(td["observation"], td["action"], reduce=cfg.q, target=cfg.use_target_critic)
        v = self(td["observation"])
        return {"loss_value": expectile_loss(q - v, cfg.expectile), "state_value": v.detach(), "value_target": q}
