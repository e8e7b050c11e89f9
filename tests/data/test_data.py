"""Data path: Minari dataset -> transitions TensorDict; normalisation; reward transforms; errors."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from advrl.data.dataset import (
    DatasetError,
    content_fingerprint,
    dataset_info,
    load_offline_data,
    open_minari,
    read_episodes,
)
from advrl.evaluation import make_env_factory
from advrl.recipe import DataConfig, DatasetConfig

TINY_ID = "advrl/hopper/random-v0"


def configs(**data):
    dataset = OmegaConf.structured(DatasetConfig(id=TINY_ID))
    return dataset, OmegaConf.merge(OmegaConf.structured(DataConfig), data)


def test_transitions_match_the_minari_episodes(minari_root):
    ds = open_minari(TINY_ID)
    columns = read_episodes(ds)
    episodes = list(ds.iterate_episodes())
    assert len(columns["reward"]) == sum(len(e.rewards) for e in episodes) == 3000
    first = episodes[0]
    n = len(first.rewards)
    np.testing.assert_allclose(columns["observation"][:n], first.observations[:-1], rtol=1e-6)
    np.testing.assert_allclose(columns["next.observation"][:n], first.observations[1:], rtol=1e-6)
    np.testing.assert_allclose(columns["return_to_go"][0], first.rewards.sum(), rtol=1e-5)
    np.testing.assert_allclose(columns["return_to_go"][n - 1], first.rewards[-1], rtol=1e-5)
    assert np.all(columns["episode_return"][:n] == columns["return_to_go"][0])
    assert columns["episode"][n] == 1
    # every episode ends in a termination or a truncation
    ends = np.flatnonzero(np.diff(columns["episode"]) != 0)
    assert np.all(columns["terminated"][ends] + columns["truncated"][ends] >= 1)


def test_info_carries_reference_scores_and_env(minari_root):
    info = dataset_info(open_minari(TINY_ID))
    assert (info.obs_dim, info.action_dim, info.max_action) == (11, 3, 1.0)
    assert info.ref_min_score == pytest.approx(-20.272305)
    assert info.normalized_score(3234.3) == pytest.approx(100.0)
    assert info.normalized_score(-20.272305) == pytest.approx(0.0)


def test_fingerprint_tells_builds_apart_and_ignores_recipe_transforms(minari_root):
    columns = read_episodes(open_minari(TINY_ID))
    plain = load_offline_data(*configs(), torch.device("cpu")).info.fingerprint
    assert plain == content_fingerprint(columns)
    scaled = load_offline_data(*configs(reward_scale=100.0, normalize_observations=False), torch.device("cpu"))
    assert scaled.info.fingerprint == plain  # the stored data, not what a recipe makes of it
    other = dict(columns, reward=columns["reward"].copy())
    other["reward"][1234] += 1e-3
    assert content_fingerprint(other) != plain


def test_observations_are_standardised_and_sampled_on_device(minari_root):
    data = load_offline_data(*configs(), torch.device("cpu"))
    obs = data.transitions["observation"]
    assert torch.allclose(obs.mean(0), torch.zeros(11), atol=1e-4)
    raw = torch.from_numpy(read_episodes(open_minari(TINY_ID))["observation"])
    assert torch.allclose(data.normalizer(raw), obs, atol=1e-5)
    assert torch.allclose(data.normalizer.std, raw.double().std(0, unbiased=False).float() + 1e-3, rtol=1e-4)
    batch = data.sample(64)
    assert batch.batch_size == torch.Size([64])
    assert batch["next", "observation"].shape == (64, 11)
    data.select(["observation", "reward"])
    assert set(data.sample(8).keys()) == {"observation", "reward"}


def test_reward_transforms(minari_root):
    raw = load_offline_data(*configs(), torch.device("cpu")).transitions["reward"]
    scaled = load_offline_data(*configs(reward_scale=2.0, reward_shift=-1.0), torch.device("cpu")).transitions["reward"]
    assert torch.allclose(scaled, 2 * raw - 1, atol=1e-5)
    returns = read_episodes(open_minari(TINY_ID))["episode_return"]
    iql = load_offline_data(*configs(reward_normalization="returns"), torch.device("cpu")).transitions["reward"]
    assert torch.allclose(iql, raw * 1000.0 / float(returns.max() - returns.min()), rtol=1e-5)
    with pytest.raises(DatasetError, match="reward_normalization"):
        load_offline_data(*configs(reward_normalization="minmax"), torch.device("cpu"))


def test_missing_dataset_explains_how_to_get_it(minari_root):
    with pytest.raises(DatasetError, match=r"not in the local Minari store.*dataset.download=true"):
        open_minari("mujoco/hopper/medium-v0")


def test_remote_download_path_is_real_and_fails_clearly_offline(minari_root):
    with pytest.raises(DatasetError, match="Could not download Minari dataset 'mujoco/hopper/medium-v0'"):
        open_minari("mujoco/hopper/medium-v0", download=True)


def test_corrupt_dataset_is_reported_with_the_fix(minari_root):
    from advrl.data import catalog

    broken = "advrl/walker2d/random-v0"
    path = catalog.build(broken, size=50, seed=0)
    try:
        with open(os.path.join(path, "data", "main_data.hdf5"), "r+b") as handle:
            handle.truncate(100)
        with pytest.raises(DatasetError, match="corrupt or partially written: delete that folder"):
            open_minari(broken)
    finally:
        shutil.rmtree(path)


def test_dataset_that_does_not_fit_the_env_is_rejected(minari_root):
    info = dataset_info(open_minari(TINY_ID))
    with pytest.raises(DatasetError, match=r"does not fit the env"):
        make_env_factory(info, "HalfCheetah-v5")


def test_interrupted_build_leaves_no_loadable_dataset(minari_root, monkeypatch):
    import minari

    from advrl.data import collect

    def explode(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(minari, "create_dataset_from_buffers", explode)
    episodes = collect.collect_episodes("Hopper-v5", None, 50, seed=1)
    with pytest.raises(KeyboardInterrupt):
        collect.write_minari_dataset("advrl/hopper/interrupted-v0", episodes, "Hopper-v5", 0.0, 1.0, "x")
    assert "advrl/hopper/interrupted-v0" not in minari.list_local_datasets()
    assert not [p for p in os.listdir(minari_root) if p.startswith(".advrl-build-")]
