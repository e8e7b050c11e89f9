"""Roll a policy out in a Gymnasium environment and write the episodes as a Minari dataset.

The dataset is written under a temporary Minari root and moved into place with one
``rename``, so an interrupted build leaves nothing that loads as a complete dataset.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable

import gymnasium as gym
import numpy as np

Policy = Callable[[np.ndarray], np.ndarray]


def collect_episodes(env_id: str, policy: Policy | None, n_steps: int, seed: int) -> list:
    """Exactly ``n_steps`` transitions; the last episode is cut (truncated) at the budget.

    ``policy`` None draws uniform random actions from the action space (seeded).
    """
    from minari.data_collector import EpisodeBuffer

    env = gym.make(env_id)
    env.action_space.seed(seed)
    episodes, steps, episode_id = [], 0, 0
    obs, _ = env.reset(seed=seed)
    while steps < n_steps:
        observations, actions, rewards, terms, truncs = [obs], [], [], [], []
        while True:
            action = env.action_space.sample() if policy is None else np.asarray(policy(obs), dtype=np.float32)
            obs, reward, terminated, truncated, _ = env.step(action)
            steps += 1
            truncated = truncated or steps >= n_steps
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            terms.append(terminated)
            truncs.append(truncated and not terminated)
            if terminated or truncated:
                break
        episodes.append(
            EpisodeBuffer(
                id=episode_id,
                seed=seed if episode_id == 0 else None,
                observations=np.asarray(observations, dtype=np.float64),
                actions=np.asarray(actions, dtype=np.float32),
                rewards=list(map(float, rewards)),
                terminations=list(map(bool, terms)),
                truncations=list(map(bool, truncs)),
            )
        )
        episode_id += 1
        obs, _ = env.reset()
    env.close()
    return episodes


def write_minari_dataset(
    dataset_id: str,
    episodes: list,
    env_id: str,
    ref_min_score: float | None,
    ref_max_score: float | None,
    description: str,
    algorithm_name: str = "advrl",
) -> str:
    """Create ``dataset_id`` in the Minari store from episode buffers; returns its path."""
    import minari
    from minari.storage.datasets_root_dir import get_dataset_path

    root = str(get_dataset_path())
    final = os.path.join(root, dataset_id)
    if os.path.exists(final):
        raise FileExistsError(f"Dataset {dataset_id!r} already exists at {final}; delete it to rebuild.")
    os.makedirs(root, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".advrl-build-", dir=root)
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = staging
    try:
        minari.create_dataset_from_buffers(
            dataset_id=dataset_id,
            buffer=episodes,
            env=env_id,
            eval_env=env_id,
            algorithm_name=algorithm_name,
            author="advrl",
            author_email="advrl@localhost",
            code_permalink="advrl",
            ref_min_score=ref_min_score,
            ref_max_score=ref_max_score,
            description=description,
        )
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.rename(os.path.join(staging, dataset_id), final)
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous
        shutil.rmtree(staging, ignore_errors=True)
    return final
