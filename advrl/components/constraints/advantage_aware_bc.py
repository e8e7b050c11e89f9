"""A2PO's advantage-aware behaviour cloning (Qing et al. 2024, Eq. 8)."""

from __future__ import annotations

from dataclasses import dataclass

from advrl.component import Component, option, slot
from advrl.registry import register


@register("constraint", "advantage_aware_bc")
class AdvantageAwareBC(Component):
    """loss = weight * mean_{B x A}( (decoder(s, xi, pi(s, xi)) - a)^2 ) with each sample's own
    condition xi (read from ``condition_key``): low-advantage samples only constrain the
    low-xi part of the policy, which is never used when acting with xi = 1."""

    @dataclass
    class Config:
        actor: str = slot("actor", "actor", "conditioned actor", needs=("conditioned_action",))
        weight: float = option(1.0, "BC weight (A2PO's bc_weight)", ge=0)
        condition_key: str = option("xi", "batch key of each sample's condition")

    reads = ("observation", "action", "{condition_key}")
    losses = ("loss_bc",)

    def compute(self, td, step):
        cfg = self.config
        action = self.ref("actor").conditioned_action(td["observation"], td[cfg.condition_key].detach())
        return {"loss_bc": cfg.weight * ((action - td["action"]) ** 2).mean()}
