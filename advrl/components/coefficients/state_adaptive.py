"""SSAR's state-adaptive regularisation coefficient beta(s) (Luo et al., ICML 2025)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from advrl.component import Component, option, slot
from advrl.nn import mlp
from advrl.registry import register

FORMS = ("auto", "deterministic", "stochastic")


@register("coefficient", "state_adaptive")
class StateAdaptiveCoefficient(Component):
    """beta(s) = max_factor * init * sigmoid(MLP(s)), initialised to beta = init everywhere
    (xavier weights, zero biases, last bias ln 2: sigmoid(ln 2) * 1.5 = 1).

    Writes ``out_key`` = beta(s) (detached: the regularised losses never train beta) and
    ``loss_coefficient`` = mean(w(s).detach() * beta(s) * selected), minimised by beta's own
    optimiser (SSAR: lr 3e-8 for TD3+BC, 1e-8 for CQL, grad-norm clip 0.5), so beta falls
    where the policy already stays within n standard deviations of the data (w > 0) and
    rises where it does not:

    * deterministic policies (TD3+BC): w = (sigma * n)^2 - mean_A min((pi(s) - a)^2, 1),
      with pi(s) the ``policy_action`` of this step (before the actor's update);
    * stochastic tanh-Gaussian policies (CQL): w = mean_A(max(log pi_j(a_j|s), C_floor_n,j)
      - C_n,j), C_n,j = min(log p_j(a+), log p_j(a-)), a+- = tanh(mu +- n sigma) kept within
      +-0.1 n of tanh(mu) (SSAR's action_selection.py).

    n comes from the ``threshold`` schedule (SSAR's distribution-aware threshold), which is
    told the mean of w over selected samples at each of its checks, offline only: once
    fine-tuning freezes beta (``online.freeze``), n is no longer reported either.
    ``coefficient_mean`` (the batch mean of the written beta) and ``coefficient_n`` (the
    current n) are logged.
    """

    @dataclass
    class Config:
        init: float = option(0.4, "initial beta (TD3+BC: 1/alpha = 0.4; CQL: cql alpha, 10)", gt=0)
        max_factor: float = option(1.5, "beta lies in (0, max_factor * init)", gt=0)
        hidden_sizes: list[int] = option([512, 512, 512], "widths of the hidden layers", ge=1)
        form: str = option("auto", "beta loss form: auto (by the actor), deterministic or stochastic", choices=FORMS)
        actor: str = slot("actor", "actor", "the regularised policy")
        threshold: str | None = slot("schedule", "threshold", "schedule of n; null: constant n", needs=("value", "observe"))
        n: float = option(1.0, "n when no threshold schedule is given", ge=0)
        sigma: float = option(0.1, "deterministic form: exploration std delta (SSAR: 0.1)", ge=0)
        floor_n: float = option(10.0, "stochastic form: log pi is floored at C_floor_n (SSAR: 10)")
        select_key: str | None = option(None, "batch key of a 0/1 mask restricting beta learning; null: all")
        out_key: str = option("coefficient", "batch key written with beta(s)")

    reads = ("observation", "action", "policy_action", "{select_key}")
    writes = ("{out_key}", "coefficient_gap")
    losses = ("loss_coefficient",)
    logs = ("coefficient_mean", "coefficient_n")

    def __init__(self, config: Config, spec):
        super().__init__(config, spec)
        self.net = mlp(spec.obs_dim, config.hidden_sizes, 1)
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)
        nn.init.constant_(self.net[-1].bias, math.log(2.0))
        self.scale = 1.0  # annealing factor applied to the written beta (offline-to-online)
        self.learning = True  # False once fine-tuning freezes beta: n stops moving too

    def freeze(self) -> None:
        """SSAR moves n only offline: the threshold check sits inside the beta step, which runs
        only while online_steps == 0 (QinwenLuo/SSAR td3_bc.py and cql.py, ``train``)."""
        self.learning = False

    def set_scale(self, value: float) -> None:
        """Multiply the coefficient the regularised terms read (SSAR anneals beta online)."""
        self.scale = float(value)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.config.max_factor * self.config.init * torch.sigmoid(self.net(obs).squeeze(-1))

    def _n(self, step: int) -> torch.Tensor | float:
        return self.ref("threshold").value(step) if self.config.threshold is not None else self.config.n

    def _stochastic(self) -> bool:
        if self.config.form == "auto":
            return hasattr(self.ref("actor"), "per_dim_log_prob")
        return self.config.form == "stochastic"

    def deterministic_gap(self, policy_action, action, n) -> torch.Tensor:
        distance = torch.clamp((policy_action - action) ** 2, max=1.0).mean(-1)
        return (self.config.sigma * n) ** 2 - distance

    def stochastic_gap(self, obs, action, n) -> torch.Tensor:
        actor = self.ref("actor")
        log_prob = actor.per_dim_log_prob(obs, action)
        floor = actor.threshold_log_prob(obs, self.config.floor_n)
        return (torch.maximum(log_prob, floor) - actor.threshold_log_prob(obs, n)).mean(-1)

    def compute(self, td, step):
        cfg = self.config
        obs = td["observation"]
        beta = self(obs)
        n = self._n(step)
        with torch.no_grad():
            if self._stochastic():
                gap = self.stochastic_gap(obs, td["action"], n)
            else:
                gap = self.deterministic_gap(td["policy_action"].detach(), td["action"], n)
            selected = td[cfg.select_key] if cfg.select_key is not None else torch.ones_like(gap)
            if cfg.threshold is not None and self.learning:
                signal = (gap * selected).sum() / selected.sum().clamp(min=1.0)
                self.ref("threshold").observe(step, signal)
        loss = (gap * beta * selected).mean()
        written = beta.detach() if self.scale == 1.0 else beta.detach() * self.scale
        # logged: beta learns at lr 1e-8..3e-8, so how far it has moved from init and the
        # current n are the first things to look at when SSAR and its backbone differ
        diagnostics = {"coefficient_mean": written.mean(), "coefficient_n": torch.as_tensor(n, dtype=beta.dtype, device=beta.device)}
        return {cfg.out_key: written, "loss_coefficient": loss, "coefficient_gap": gap, **diagnostics}
