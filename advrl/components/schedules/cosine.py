"""Cosine annealing (Loshchilov & Hutter 2017), e.g. IQL's actor learning rate."""

from __future__ import annotations

import math
from dataclasses import dataclass

from advrl.component import Component, option
from advrl.registry import register


@register("schedule", "cosine")
class CosineSchedule(Component):
    """value(step) = end + (start - end) * (1 + cos(pi * min(step / steps, 1))) / 2."""

    @dataclass
    class Config:
        start: float = option(1.0, "value at step 0")
        end: float = option(0.0, "value at step >= steps")
        steps: int = option(1, "length of the annealing, in gradient steps (e.g. ${train.steps})", ge=1)

    def value(self, step: int) -> float:
        cfg = self.config
        progress = min(step / max(cfg.steps, 1), 1.0)
        return cfg.end + (cfg.start - cfg.end) * 0.5 * (1.0 + math.cos(math.pi * progress))
