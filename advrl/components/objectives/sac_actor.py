"""Soft actor-critic policy loss (Haarnoja et al. 2018): mean(alpha log pi(a|s) - Q(s, a)), a ~ pi."""

from __future__ import annotations

from dataclasses import dataclass

from advrl.component import Component, option, slot
from advrl.components.critics.q_ensemble import REDUCTIONS
from advrl.registry import register


@register("objective", "sac_actor")
class SACActorLoss(Component):
    """loss = mean_B(alpha * log pi(a~|s) - Q(s, a~)) with a~ the actor's reparameterised sample
    (``policy_action``/``policy_log_prob``, written by a stochastic actor term) and alpha the
    detached ``entropy_coef`` written by a temperature coefficient."""

    @dataclass
    class Config:
        critic: str = slot("critic", "critic", "critic evaluating the sampled actions")
        q: str = option("min", "ensemble reduction: min (CQL/SAC), mean or q1", choices=REDUCTIONS)

    reads = ("observation", "policy_action", "policy_log_prob", "entropy_coef")
    losses = ("loss_actor",)

    def compute(self, td, step):
        q = self.ref("critic").q(td["observation"], td["policy_action"], reduce=self.config.q)
        return {"loss_actor": (td["entropy_coef"] * td["policy_log_prob"] - q).mean()}
