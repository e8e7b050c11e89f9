"""Policy evaluation in the dataset's Gymnasium environment, with D4RL-style normalised scores."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from advrl.data.dataset import DatasetError, DatasetInfo, build_record, recorded_eval_env


def recorded_spec(info: DatasetInfo):
    """The dataset's evaluation env spec, from its build record (advrl.json) when it has one.

    ``dataset_info`` already takes it from there; a run saved before it did carries minari's
    metadata instead, which can name another env of the same shapes: the local build record of
    its dataset, when there is one, still decides.
    """
    if info.eval_env_from is None and not info.id.startswith("online:"):
        try:
            spec = recorded_eval_env(build_record(info.id))
        except DatasetError:
            spec = None
        if spec is not None:
            return spec
    return info.eval_env_spec


def make_env_factory(info: DatasetInfo, env_id: str | None = None) -> Callable[[], gym.Env]:
    """A factory for the evaluation env: ``env_id`` if given, else the dataset's eval env spec
    (see :func:`recorded_spec`).

    The env's observation and action shapes are checked against the dataset's.
    """
    spec = env_id if env_id is not None else recorded_spec(info)
    if spec is None:
        raise DatasetError(f"Dataset {info.id!r} records no evaluation environment; set eval.env to a Gymnasium id, or eval.episodes=0 to train without evaluating.")
    if isinstance(spec, str) and spec.lstrip().startswith("{"):
        spec = gym.envs.registration.EnvSpec.from_json(spec)

    def factory() -> gym.Env:
        return gym.make(spec)

    probe = factory()
    obs_shape, act_shape = probe.observation_space.shape, probe.action_space.shape
    probe.close()
    if obs_shape != (info.obs_dim,) or act_shape != (info.action_dim,):
        name = spec if isinstance(spec, str) else spec.id
        raise DatasetError(
            f"Dataset {info.id!r} has observations of shape ({info.obs_dim},) and actions ({info.action_dim},), "
            f"but its evaluation environment {name} has {obs_shape} and {act_shape}: the dataset does not fit the env. "
            "Set eval.env to the environment the dataset was collected in."
        )
    return factory


def evaluate(
    policy: Callable[[np.ndarray], np.ndarray],
    env_factory: Callable[[], gym.Env],
    episodes: int,
    seed: int,
    info: DatasetInfo | None = None,
    obs_noise: float | np.ndarray = 0.0,
) -> dict[str, float]:
    """Run ``episodes`` episodes in lockstep (one batched policy call per time step).

    Episode i resets with seed ``seed + i``, so every evaluation starts from the same states.
    ``obs_noise`` adds N(0, obs_noise^2) to each raw observation the policy sees (A2PR's
    robustness study), before advrl's observation standardisation; an array gives each
    dimension its own std (:func:`noise_std`). The noise has its own generator seeded with
    ``seed``, so every level draws the same standard normal numbers, scaled.
    """
    envs = [env_factory() for _ in range(episodes)]
    noise_rng = np.random.default_rng(seed)
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]).astype(np.float32)
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=np.int64)
    active = np.ones(episodes, dtype=bool)
    scale = np.asarray(obs_noise, dtype=np.float64)
    while active.any():
        idx = np.flatnonzero(active)
        seen = obs[idx]
        if np.any(scale > 0):
            seen = seen + (noise_rng.standard_normal(size=seen.shape) * scale).astype(np.float32)
        actions = policy(seen)
        for row, i in enumerate(idx):
            next_obs, reward, terminated, truncated, _ = envs[i].step(actions[row])
            obs[i] = next_obs
            returns[i] += reward
            lengths[i] += 1
            if terminated or truncated:
                active[i] = False
    for env in envs:
        env.close()
    result = {
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "length_mean": float(lengths.mean()),
    }
    if info is not None and info.normalized_score(0.0) is not None:
        scores = np.array([info.normalized_score(r) for r in returns])
        result["score_mean"] = float(scores.mean())
        result["score_std"] = float(scores.std())
    return result


# Where σ of ``--obs-noise`` applies. raw: N(0, σ²) on the observation as the environment gives
# it, before advrl standardises it (A2PR's study; one σ for every dimension, whatever its
# scale). standardised: σ in units of each dimension's dataset std, i.e. N(0, σ²) on the
# standardised observation the actor reads (raw noise of std σ·std_i on dimension i).
NOISE_SPACES = ("raw", "standardised")


def noise_std(obs_noise: float, space: str, std: np.ndarray) -> float | np.ndarray:
    """The std of the noise added to each raw observation dimension for ``obs_noise`` in
    ``space``; ``std`` is the run's observation standardisation std (ones when it is off, where
    both spaces are one)."""
    if space not in NOISE_SPACES:
        raise ValueError(f"noise space must be one of {', '.join(NOISE_SPACES)}, not {space!r}.")
    return float(obs_noise) if space == "raw" else float(obs_noise) * np.asarray(std, dtype=np.float64)
