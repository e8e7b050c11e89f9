"""IQL critic loss (Kostrikov et al. 2022, Eq. 6): regress Q(s, a) onto r + gamma V(s')."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advrl.component import Component, option, slot
from advrl.registry import register


@register("objective", "value_backup_critic")
class ValueBackupCriticLoss(Component):
    """y = r + gamma (1 - terminated) V(s'); loss = sum_i MSE(Q_i(s, a), y).

    The bootstrap uses a state-value net instead of a policy, so no out-of-distribution
    action is ever evaluated (IQL's in-sample learning).
    """

    @dataclass
    class Config:
        critic: str = slot("critic", "critic", "the Q ensemble to train")
        value: str = slot("value", "value", "state-value net providing V(s')")
        gamma: float = option(0.99, "discount factor")

    reads = ("observation", "action", "reward", "next.observation", "terminated")
    writes = ("loss_critic", "td_target")

    def compute(self, td, step):
        with torch.no_grad():
            next_v = self.ref("value")(td["next", "observation"])
            target = td["reward"] + self.config.gamma * (1.0 - td["terminated"]) * next_v
        q = self.ref("critic").q_all(td["observation"], td["action"])
        loss = ((q - target) ** 2).mean(dim=1).sum()
        return {"loss_critic": loss, "td_target": target}
