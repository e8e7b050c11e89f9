"""The worked example of CONTRIBUTING.md: a new constraint term in one file.

Use it from a recipe without touching advrl, as ``td3bc_l1.yaml`` beside this file does:

    extends: advrl:td3bc.yaml
    imports: [l1_constraint]                 # a module beside the recipe, or any importable one
    components:
      constraint: {name: bc_l1, weight: 1.0}
"""

from __future__ import annotations

from dataclasses import dataclass

from advrl import Component, option, register


@register("constraint", "bc_l1")
class BCL1(Component):
    """loss = weight * mean_{B x A} |pi(s) - a|: behaviour cloning with an L1 distance, less
    dominated by the few dataset actions far from the policy than the squared error."""

    @dataclass
    class Config:
        weight: float = option(1.0, "weight of the term; larger -> closer to the data", ge=0)

    reads = ("action", "policy_action")  # batch keys used: the dataset action, the actor's output
    losses = ("loss_bc_l1",)  # minimised by the update that lists this term

    def compute(self, td, step):
        return {"loss_bc_l1": self.config.weight * (td["policy_action"] - td["action"]).abs().mean()}
