"""A fixed coefficient for every sample: the plain backbone of a state-adaptive method."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advrl.component import Component, option
from advrl.registry import register


@register("coefficient", "constant")
class ConstantCoefficient(Component):
    """Writes ``value`` for every sample under ``out_key``.

    With SSAR's TD3+BC form (alpha = 1 in the Q term), value = 1 / 2.5 = 0.4 reproduces TD3+BC.
    """

    @dataclass
    class Config:
        value: float = option(1.0, "the coefficient", ge=0)
        out_key: str = option("coefficient", "batch key written")

    reads = ("observation",)
    writes = ("{out_key}",)

    def __init__(self, config: Config, spec):
        super().__init__(config, spec)
        self.register_buffer("_value", torch.tensor(float(config.value)), persistent=False)

    def set_scale(self, value: float) -> None:
        """Multiply the written coefficient (annealing during offline-to-online fine-tuning)."""
        self._value.fill_(float(self.config.value) * float(value))

    def compute(self, td, step):
        return {self.config.out_key: self._value.expand(td["observation"].shape[0])}
