"""Linear interpolation between two values over a window of steps."""

from __future__ import annotations

from dataclasses import dataclass

from advrl.component import Component, option
from advrl.registry import register


@register("schedule", "linear")
class LinearSchedule(Component):
    """value(step) = start + (end - start) * clip((step - begin) / steps, 0, 1)."""

    @dataclass
    class Config:
        start: float = option(1.0, "value at step <= begin")
        end: float = option(0.0, "value at step >= begin + steps")
        steps: int = option(1, "length of the ramp, in gradient steps", ge=1)
        begin: int = option(0, "step at which the ramp starts", ge=0)

    def value(self, step: int) -> float:
        cfg = self.config
        progress = min(max((step - cfg.begin) / max(cfg.steps, 1), 0.0), 1.0)
        return cfg.start + (cfg.end - cfg.start) * progress
