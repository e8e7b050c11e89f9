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

    def compute(self, td, step):
        cfg = self.config
        if cfg.q_key is not None:
            return {"advantage": td[cfg.q_key].detach() - td["state_value"]}
        with torch.no_grad():
            q = self.ref("critic").q(td["observation"], td["action"], reduce=cfg.q, target=cfg.use_target_critic)
        return {"advantage": q - td["state_value"]}
