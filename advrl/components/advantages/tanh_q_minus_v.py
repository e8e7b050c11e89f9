"""A2PO's advantage condition xi = tanh(Q(s, a) - V(s)) in (-1, 1) (Qing et al. 2024)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advrl.component import Component, option, slot
from advrl.components.critics.q_ensemble import REDUCTIONS
from advrl.registry import register


@register("advantage", "tanh_q_minus_v")
class TanhQMinusV(Component):
    """xi = tanh(Q(s, a) - V(s)), no gradient; with ``discrete``: -1 where xi < -epsilon, else
    1 where xi > epsilon, 0 otherwise.

    The dead zone thresholds tanh(Q - V), not Q - V, as the official code does (Plankson/A2PO,
    a2po.py ``OffRL.policy_train``, with main.py's ``l_thresold, r_thresold = -epsilon,
    epsilon``): a gap counts as positive only above atanh(epsilon). The -1 test comes first,
    as there, which decides the (unusual) negative epsilon.

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
        epsilon: float = option(0.0, "dead zone of the discrete condition, on tanh(Q - V) (official --epsilon)")
        out_key: str = option("xi", "batch key written")

    reads = ("observation", "action")
    writes = ("{out_key}",)

    def compute(self, td, step):
        cfg = self.config
        with torch.no_grad():
            q = self.ref("critic").q(td["observation"], td["action"], reduce=cfg.q)
            gap = q - self.ref("value")(td["observation"])
            xi = torch.tanh(gap)
            if cfg.discrete:
                xi = discretize(xi, cfg.epsilon)
        return {cfg.out_key: xi}


def discretize(xi: torch.Tensor, epsilon: float) -> torch.Tensor:
    """The official nested torch.where on the continuous xi: -1 below -epsilon, else 1 above
    epsilon, else 0 (ties at the thresholds go to 0)."""
    ones = torch.ones_like(xi)
    return torch.where(xi < -epsilon, -ones, torch.where(xi > epsilon, ones, torch.zeros_like(xi)))
