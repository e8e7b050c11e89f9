"""A2PO's advantage condition xi = tanh(Q(s, a) - V(s)) in (-1, 1) (Qing et al. 2024)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advrl.component import Component, option, slot
from advrl.components.critics.q_ensemble import REDUCTIONS
from advrl.registry import register


@register("advantage", "tanh_q_minus_v")
class TanhQMinusV(Component):
    """xi = tanh(Q(s, a) - V(s)), no gradient; with ``discrete``: 1 where Q - V > epsilon,
    -1 where Q - V < -epsilon, 0 otherwise.

    Q and V are evaluated now (after any update earlier in the step), from the critic and
    value slots: the official code uses Q1 (``q: q1``), the paper the ensemble min. Any value
    component serves (A2PO's TD-trained head, IQL's expectile value for an ablation).
    """

    @dataclass
    class Config:
        critic: str = slot("critic", "critic", "critic providing Q(s, a)")
        value: str = slot("value", "value", "value net providing V(s)")
        q: str = option("q1", "ensemble reduction: q1 (official code), min (paper) or mean", choices=REDUCTIONS)
        discrete: bool = option(False, "map to {-1, 0, 1} instead of tanh")
        epsilon: float = option(0.0, "dead zone of the discrete condition", ge=0)
        out_key: str = option("xi", "batch key written")

    reads = ("observation", "action")
    writes = ("{out_key}",)

    def compute(self, td, step):
        cfg = self.config
        with torch.no_grad():
            q = self.ref("critic").q(td["observation"], td["action"], reduce=cfg.q)
            gap = q - self.ref("value")(td["observation"])
            if cfg.discrete:
                xi = (gap > cfg.epsilon).float() - (gap < -cfg.epsilon).float()
            else:
                xi = torch.tanh(gap)
        return {cfg.out_key: xi}
