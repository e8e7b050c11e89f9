"""Select transitions of high-return trajectories (SSAR's 'traj' selection, Luo et al. 2025)."""

from __future__ import annotations

from dataclasses import dataclass

from advrl.component import Component, option
from advrl.registry import register


@register("selector", "return_threshold")
class ReturnThreshold(Component):
    """mask = 1[episode_return > threshold] (undiscounted return of the transition's episode,
    in the dataset's raw reward units, before any reward transform)."""

    @dataclass
    class Config:
        threshold: float = option(0.0, "return G_T above which a trajectory is selected")
        out_key: str = option("mask", "batch key of the 0/1 mask")

    reads = ("episode_return",)
    writes = ("{out_key}",)

    def compute(self, td, step):
        returns = td["episode_return"]
        return {self.config.out_key: (returns > self.config.threshold).to(returns.dtype)}
