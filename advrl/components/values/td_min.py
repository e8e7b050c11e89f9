"""A2PR's state-value net: regression onto the smaller of two TD targets (Liu et al. 2024)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advrl.component import option, slot
from advrl.components.values._network import StateValueNet
from advrl.nn import ACTIVATIONS
from advrl.registry import register


@register("value", "td_min")
class TDMinValue(StateValueNet):
    """V(s) = MLP(s); loss = MSE(V(s), min(y_online, y_target)).

    y_target is the critic term's ``td_target`` (target critics at the smoothed target action
    ``next_action``); y_online = r + gamma (1 - terminated) min_i Q_i(s', next_action) with the
    online critic just updated in this step — as A2PR's official code does (its paper's value
    loss is not an expectile; there is no target network for V).
    Writes ``state_value``: V(s) before this step's update, detached (A2PR reuses that tensor).
    """

    @dataclass
    class Config:
        critic: str = slot("critic", "critic", "online critic for the second TD target")
        gamma: float = option(0.99, "discount factor (use the critic term's)", ge=0, le=1)
        hidden_sizes: list[int] = option([256, 256, 256, 256], "widths of the hidden layers (A2PR: 4 x 256)", ge=1)
        activation: str = option("relu", "hidden activation", choices=ACTIVATIONS)

    reads = ("observation", "reward", "next.observation", "terminated", "td_target", "next_action")
    writes = ("state_value",)
    losses = ("loss_value",)

    def compute(self, td, step):
        with torch.no_grad():
            next_q = self.ref("critic").q(td["next", "observation"], td["next_action"], reduce="min")
            online_target = td["reward"] + self.config.gamma * (1.0 - td["terminated"]) * next_q
            target = torch.minimum(online_target, td["td_target"])
        v = self(td["observation"])
        return {"loss_value": ((v - target) ** 2).mean(), "state_value": v.detach()}
