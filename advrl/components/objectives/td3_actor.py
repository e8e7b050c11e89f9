"""Deterministic policy-gradient term of TD3 / TD3+BC: -lambda * mean Q(s, pi(s))."""

from __future__ import annotations

from dataclasses import dataclass

from advrl.component import Component, option, slot
from advrl.components.critics.q_ensemble import REDUCTIONS
from advrl.registry import register


@register("objective", "td3_actor")
class TD3ActorLoss(Component):
    """loss = -lambda * mean_B Q(s, pi(s)).

    With ``normalize_q`` (TD3+BC, Fujimoto & Gu 2021, Eq. 3), lambda = alpha / mean_B |Q(s, pi(s))|
    with the mean detached; otherwise lambda = alpha (plain TD3 uses alpha = 1).
    Adding ``constraint: bc_mse`` with weight 1 gives TD3+BC.
    """

    @dataclass
    class Config:
        critic: str = slot("critic", "critic", "critic evaluating the policy action")
        alpha: float = option(2.5, "numerator of lambda; larger -> less behaviour cloning (TD3+BC: 2.5)", ge=0)
        normalize_q: bool = option(True, "divide by the detached batch mean |Q| (TD3+BC); false for TD3")
        q: str = option("q1", "which ensemble value to ascend: q1 (TD3), min or mean", choices=REDUCTIONS)

    reads = ("observation", "policy_action")
    losses = ("loss_actor",)
    logs = ("lambda",)

    def compute(self, td, step):
        q = self.ref("critic").q(td["observation"], td["policy_action"], reduce=self.config.q)
        lmbda = self.config.alpha / q.abs().mean().detach() if self.config.normalize_q else q.new_tensor(self.config.alpha)
        return {"loss_actor": -lmbda * q.mean(), "lambda": lmbda}
