"""SSAR's distribution-aware threshold n (Luo et al., ICML 2025, arXiv 2505.19923)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from advrl.component import Component, option
from advrl.registry import register


@register("schedule", "distribution_aware_threshold")
class DistributionAwareThreshold(Component):
    """n starts at ``start``; every ``period`` steps the owner reports a signal (SSAR: the mean
    of C_n - d over selected samples). If the signal is > 0 (the constraint holds on average)
    n is frozen for good; otherwise n <- min(end, n + (end - start) / increments).

    State (n, frozen, a pending report) lives in buffers on the device and is saved with
    checkpoints; updating it needs no host sync. ``value(step)`` returns n as a 0-d tensor.
    """

    @dataclass
    class Config:
        start: float = option(1.0, "n_start")
        end: float = option(3.0, "n_end")
        period: int = option(50_000, "T_inc: steps between checks", ge=1)
        increments: int = option(10, "number of equal steps from start to end (SSAR code: 10)", ge=1)

    def __init__(self, config: Config, spec):
        super().__init__(config, spec)
        self.register_buffer("n", torch.tensor(float(config.start)))
        self.register_buffer("frozen", torch.tensor(False))
        self.register_buffer("pending_signal", torch.tensor(0.0))
        self.register_buffer("has_pending", torch.tensor(False))
        # step of the report not applied yet; -1 in a fresh process, so a report saved in a
        # checkpoint at a check step is applied at the first call after resuming
        self._pending_step = -1

    def value(self, step: int) -> torch.Tensor:
        if self._pending_step is not None and step > self._pending_step:
            self._apply_pending()
            self._pending_step = None
        return self.n

    @torch.no_grad()
    def observe(self, step: int, signal: torch.Tensor) -> None:
        """Report the check signal at a check step. Several reports in one step (a coefficient
        used in two updates) keep the last; it takes effect after the step, so every term of
        the check step sees the same n."""
        if step % self.config.period != 0:
            return
        self.pending_signal.copy_(signal)
        self.has_pending.fill_(True)
        self._pending_step = step

    @torch.no_grad()
    def _apply_pending(self) -> None:
        cfg = self.config
        holds = self.pending_signal > 0
        grow = self.has_pending & ~self.frozen & ~holds
        step_size = (cfg.end - cfg.start) / cfg.increments
        self.n.copy_(torch.where(grow, torch.clamp(self.n + step_size, max=cfg.end), self.n))
        self.frozen.logical_or_(self.has_pending & holds)
        self.has_pending.fill_(False)
