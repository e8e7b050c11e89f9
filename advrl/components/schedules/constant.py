"""A schedule that never changes."""

from __future__ import annotations

from dataclasses import dataclass

from advrl.component import Component, option
from advrl.registry import register


@register("schedule", "constant")
class ConstantSchedule(Component):
    """value(step) = value."""

    @dataclass
    class Config:
        value: float = option(1.0, "the value at every step")

    def value(self, step: int) -> float:
        return self.config.value
