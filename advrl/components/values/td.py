"""A state-value net regressed onto the critic's TD target (A2PO's V head, Qing et al. 2024)."""

from __future__ import annotations

from dataclasses import dataclass

from advrl.component import option
from advrl.components.values._network import StateValueNet
from advrl.nn import ACTIVATIONS
from advrl.registry import register


@register("value", "td")
class TDValue(StateValueNet):
    """V(s) = MLP(s); loss = MSE(V(s), td_target), the target the critic term of the same
    update wrote. In A2PO's code V is a head of the critic module trained on the same target
    y = r + gamma min Q'(s', a*) with a* the decoded target-policy action, so V approximates
    E_{a ~ D}[Q(s, a)]. Writes ``state_value`` (V(s) before this update, detached)."""

    @dataclass
    class Config:
        hidden_sizes: list[int] = option([256, 256, 256], "widths of the hidden layers (A2PO: 3 x 256)", ge=1)
        activation: str = option("relu", "hidden activation", choices=ACTIVATIONS)

    reads = ("observation", "td_target")
    writes = ("state_value",)
    losses = ("loss_value",)

    def compute(self, td, step):
        v = self(td["observation"])
        return {"loss_value": ((v - td["td_target"].detach()) ** 2).mean(), "state_value": v.detach()}
