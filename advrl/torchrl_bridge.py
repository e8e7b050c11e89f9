"""A trained advrl policy and its evaluation environment as torchrl objects.

torchrl is the RL library of the stack advrl builds on (tensordict batches, Minari data);
this bridge lets a run's policy go where torchrl's users work — ``env.rollout``, collectors,
transforms, its own evaluation and fine-tuning loops — without copying weights:

    run = advrl.load_run("runs/td3bc/...")
    env = run.torchrl_env()                 # GymEnv of the dataset's evaluation env, float32
    rollout = env.rollout(1000, run.torchrl_policy())

The policy reads raw observations under ``"observation"`` (advrl's standardisation is inside
it, as during training) and writes the deterministic action under ``"action"``.

Why torchrl does not run advrl's own training step: its ``TanhNormal`` gives the same
tanh-Gaussian actions from the same seed but log-probabilities that differ in the last bits
and sampled about 4x slower here (torch 2.13 CPU), and its loss modules fix one loss per
module where advrl composes terms; ``tests/test_torchrl_crosscheck.py`` checks advrl's
TD3+BC terms against torchrl's ``TD3BCLoss``.
"""

from __future__ import annotations

import torch
from torch import nn

from advrl.data.dataset import DatasetInfo, ObservationNormalizer
from advrl.evaluation import make_env_factory


class _NormalisedPolicy(nn.Module):
    """observation (raw) -> action, standardised with the run's statistics first."""

    def __init__(self, actor: nn.Module, normalizer: ObservationNormalizer, device: torch.device):
        super().__init__()
        self.actor = actor
        self.normalizer, self.device = normalizer, device

    @torch.no_grad()
    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.actor.act(self.normalizer(observation.to(self.device, torch.float32)))


def policy_module(actor: nn.Module, normalizer: ObservationNormalizer, device: torch.device):
    """The deterministic policy as a torchrl ``Actor`` (in_keys ``observation``, out_keys ``action``)."""
    from torchrl.modules import Actor

    return Actor(_NormalisedPolicy(actor, normalizer, device), in_keys=["observation"], out_keys=["action"])


def make_env(info: DatasetInfo, env_id: str | None = None):
    """The dataset's evaluation environment (the same one ``advrl eval`` scores in) as a torchrl
    env with float32 observations, matching what the policy was trained on."""
    from torchrl.envs import DoubleToFloat, GymWrapper, TransformedEnv

    return TransformedEnv(GymWrapper(make_env_factory(info, env_id)()), DoubleToFloat())
