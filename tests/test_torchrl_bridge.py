"""A trained run's policy and evaluation environment as torchrl objects (advrl.torchrl_bridge)."""

from __future__ import annotations

import numpy as np
import torch
from tensordict import TensorDict
from torchrl.envs import EnvBase
from torchrl.modules import Actor

import advrl


def test_a_run_rolls_out_in_torchrl_with_the_actions_advrl_takes(minari_root, tiny_overrides, tmp_path):
    advrl.train("recipes/td3bc.yaml", [*tiny_overrides, "components.actor.hidden_sizes=[16]"], run_dir=tmp_path / "run", progress=False)
    run = advrl.load_run(tmp_path / "run")
    env, policy = run.torchrl_env(), run.torchrl_policy()
    assert isinstance(env, EnvBase) and isinstance(policy, Actor)
    env.set_seed(0)
    rollout = env.rollout(25, policy, break_when_any_done=True)
    observations = rollout["observation"]
    assert observations.dtype == torch.float32 and observations.shape[-1] == run.info.obs_dim
    # advrl's own acting (standardise, then act), one observation at a time as the rollout did
    expected = np.stack([run.policy(obs) for obs in observations.numpy()])
    np.testing.assert_array_equal(rollout["action"].numpy(), expected)
    assert np.abs(expected).max() <= run.info.max_action


def test_the_torchrl_policy_standardises_raw_observations(minari_root, tiny_overrides, tmp_path):
    advrl.train("recipes/bc.yaml", tiny_overrides, run_dir=tmp_path / "run", progress=False)
    run = advrl.load_run(tmp_path / "run")
    raw = torch.randn(4, run.info.obs_dim) * 3 + 1
    out = run.torchrl_policy()(TensorDict({"observation": raw}, batch_size=[4]))
    with torch.no_grad():
        by_hand = run.actor.act((raw - run.normalizer.mean) / run.normalizer.std)
    torch.testing.assert_close(out["action"], by_hand, rtol=0, atol=0)
    assert not torch.equal(run.normalizer.std, torch.ones_like(run.normalizer.std))  # the check means something
