"""Advantage of the dataset action: A(s, a) = Q(s, a) - V(s)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advrl.component import Component, option, slot
from advrl.components.critics.q_ensemble import REDUCTIONS
from advrl.registry import register


@register("advantage", "q_minus_v")
class QMinusV(Component):
    """A(s, a) = Q(s, a) - V(s), no gradient.

    V(s) is read from ``state_value`` (written by a value term earlier in the step), Q from
    the critic: ``q`` picks the first member (A2PR, A2PO code) or the ensemble min (IQL,
    A2PO paper); ``use_target_critic`` picks the target network (IQL) or the online one.
    With ``q_key`` set, Q(s, a) is read from that batch key instead (IQL: ``value_target``,
    the same target-critic min the value net just used), saving two critic evaluations.
    """

    @dataclass
    class Config:
        critic: str = slot("critic", "critic", "critic providing Q(s, a)")
        q: str = option("min", "ensemble reduction: min, mean or q1", choices=REDUCTIONS)
        use_target_critic: bool = option(True, "target network (IQL) or online network (A2PR)")
        q_key: str | None = option(None, "batch key holding Q(s, a) already; null: evaluate the critic")

    reads = ("observation", "action", "state_value", "{q_key}")
    writes = ("advantage",)

    def estimate(self, observation: torch.Tensor, action: torch.Tensor, state_value: torch.Tensor) -> torch.Tensor:
        """A(s, a) for any actions (e.g. A2PR's reconstructed policy action), no gradient."""
        cfg = self.config
        with torch.no_grad():
            q = self.ref("critic").q(observation, action, reduce=cfg.q, target=cfg.use_target_critic)
        return q - state_value

    def compute(self, td, step):
        if self.config.q_key is not None:
            return {"advantage": td[self.config.q_key].detach() - td["state_value"]}
        return {"advantage": self.estimate(td["observation"], td["action"], td["state_value"])}
