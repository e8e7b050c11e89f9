"""IQL critic loss (Kostrikov et al. 2022, Eq. 6): regress Q(s, a) onto r + gamma V(s')."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advrl.component import Component, option, slot
from advrl.registry import register


@register("objective", "value_backup_critic")
class ValueBackupCriticLoss(Component):
    """y = r + gamma (1 - terminated) V(s'); loss = sum_i MSE(Q_i(s, a), y) (or the mean over
    members, ``ensemble_reduction: mean``, as CORL's IQL averages its two critics).

    The bootstrap uses a state-value net instead of a policy, so no out-of-distribution
    action is ever evaluated (IQL's in-sample learning).
    """

    @dataclass
    class Config:
        critic: str = slot("critic", "critic", "the Q ensemble to train")
        value: str = slot("value", "value", "state-value net providing V(s')")
        gamma: float = option(0.99, "discount factor", ge=0, le=1)
        ensemble_reduction: str = option("sum", "sum or mean of the members' MSEs (CORL's IQL: mean)", choices=("sum", "mean"))

    reads = ("observation", "action", "reward", "next.observation", "terminated")
    writes = ("td_target",)
    losses = ("loss_critic",)

    def compute(self, td, step):
        with torch.no_grad():
            next_v = self.ref("value")(td["next", "observation"])
            target = td["reward"] + self.config.gamma * (1.0 - td["terminated"]) * next_v
        q = self.ref("critic").q_all(td["observation"], td["action"])
        per_member = ((q - target) ** 2).mean(dim=1)
        loss = per_member.mean() if self.config.ensemble_reduction == "mean" else per_member.sum()
        return {"loss_critic": loss, "td_target": target}
