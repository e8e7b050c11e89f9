"""Behaviour cloning towards a generative behaviour model's action (BCQ/BEAR-style support constraint)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advrl.component import Component, option, slot
from advrl.registry import register

MODES = ("sample", "reconstruct")


@register("constraint", "generative_bc")
class GenerativeBC(Component):
    """loss = weight * mean_{B x A}( (pi(s) - b(s))^2 ), b(s) from the behaviour model, detached:
    ``sample``: a decoder sample from the (clipped) prior, a ~ p(a|s) as BCQ draws it;
    ``reconstruct``: the model's reconstruction of the policy action (A2PR's a~), i.e. the
    nearest action the model considers in-distribution.
    """

    @dataclass
    class Config:
        behavior: str = slot("behavior", "behavior", "behaviour model providing the target", needs=("decode", "reconstruct"))
        weight: float = option(1.0, "weight of the term", ge=0)
        mode: str = option("sample", "sample (prior draw) or reconstruct (VAE(s, pi(s)))", choices=MODES)

    reads = ("observation", "policy_action")
    losses = ("loss_bc",)

    def compute(self, td, step):
        behavior, obs, policy_action = self.ref("behavior"), td["observation"], td["policy_action"]
        with torch.no_grad():
            if self.config.mode == "sample":
                target = behavior.decode(obs)
            else:
                target = behavior.reconstruct(obs, policy_action)[0]
        return {"loss_bc": self.config.weight * ((policy_action - target) ** 2).mean()}
