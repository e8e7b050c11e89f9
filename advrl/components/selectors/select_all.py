"""Select every transition (registry name `all`; the file is not all.py, a Python builtin)."""

from __future__ import annotations

from dataclasses import dataclass

from advrl.component import Component, option
from advrl.registry import register


@register("selector", "all")
class SelectAll(Component):
    """mask = 1 for every sample, so a recipe with a selector slot can switch selection off
    with one override (``components.selector.name=all``)."""

    @dataclass
    class Config:
        out_key: str = option("mask", "batch key of the 0/1 mask")

    reads = ("observation",)
    writes = ("{out_key}",)

    def compute(self, td, step):
        observation = td["observation"]
        return {self.config.out_key: observation.new_ones(observation.shape[0])}
