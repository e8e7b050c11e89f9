"""Select transitions whose advantage exceeds a threshold (A2PR's EPBL, SSAR's IQL selection)."""

from __future__ import annotations

from dataclasses import dataclass

from advrl.component import Component, option
from advrl.registry import register


@register("selector", "advantage_threshold")
class AdvantageThreshold(Component):
    """mask = 1[advantage > threshold] (or >= with ``strict: false``).

    A2PR trains its VAE only on dataset actions with A(s, a) > epsilon_A, epsilon_A = 0 in
    its code; SSAR's IQL selection trusts pairs with Q >= V (threshold 0, strict false).
    """

    @dataclass
    class Config:
        threshold: float = option(0.0, "epsilon_A")
        strict: bool = option(True, "compare with > (true) or >= (false)")
        out_key: str = option("mask", "batch key of the 0/1 mask")

    reads = ("advantage",)
    writes = ("{out_key}",)

    def compute(self, td, step):
        advantage = td["advantage"]
        selected = advantage > self.config.threshold if self.config.strict else advantage >= self.config.threshold
        return {self.config.out_key: selected.to(advantage.dtype)}
