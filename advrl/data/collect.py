"""Roll a policy out in a Gymnasium environment and write the episodes as a Minari dataset.

The dataset is written under a temporary Minari root and moved into place with one
``rename``, so an interrupted build leaves nothing that loads as a complete dataset.
advrl's own build record (``advrl.json``: behaviour policies, proportions, seed, return
statistics, and the content fingerprint, evaluation env spec and reference returns that
loading checks the build against) is written beside minari's ``data/`` folder inside that
staging directory, so it appears together with the data or not at all.

Determinism: episode ``k`` of collection stream ``s`` resets the environment with the seed
``reset_seed(seed, s, k)`` (recorded per episode in the dataset), random actions come from
a generator seeded with ``(seed, s)``, and policies run single-threaded, so the same
policy, size and seed give the same arrays on the same machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from advrl.data.dataset import minari_store
from advrl.locks import try_lock

Policy = Callable[[np.ndarray], np.ndarray]
RECORD_FILE = "advrl.json"


def reset_seed(seed: int, stream: int, episode: int) -> int:
    """The environment seed of one episode: independent across streams and episodes."""
    return int(np.random.SeedSequence([seed, stream, episode]).generate_state(1)[0])


def stream_rng(seed: int, stream: int) -> np.random.Generator:
    """The generator of a collection stream's random choices (uniform actions, episode picks)."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream, 2**31 - 1]))


def uniform_policy(action_space: gym.spaces.Box, rng: np.random.Generator) -> Policy:
    """Uniform actions in the action box from ``rng`` (one row per observation row)."""
    low = np.asarray(action_space.low, dtype=np.float64)
    high = np.asarray(action_space.high, dtype=np.float64)

    def policy(obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        shape = low.shape if obs.ndim <= 1 else (obs.shape[0], *low.shape)
        return rng.uniform(low, high, size=shape).astype(np.float32)

    return policy


@contextlib.contextmanager
def single_threaded():
    """Run torch on one thread (bit-stable matmuls), restoring the previous setting."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def collect_episodes(env_id: str, policy: Policy | None, n_steps: int, seed: int, stream: int = 0) -> list:
    """Exactly ``n_steps`` transitions; the last episode is cut (truncated) at the budget.

    ``policy`` None draws uniform random actions (seeded by ``seed`` and ``stream``).
    Episode ``k`` resets with ``reset_seed(seed, stream, k)``; ids count from 0.
    """
    from minari.data_collector import EpisodeBuffer

    env = gym.make(env_id)
    if policy is None:
        policy = uniform_policy(env.action_space, stream_rng(seed, stream))
    episodes, steps, episode_id = [], 0, 0
    with single_threaded():
        while steps < n_steps:
            episode_seed = reset_seed(seed, stream, episode_id)
            obs, _ = env.reset(seed=episode_seed)
            observations, actions, rewards, terms, truncs = [obs], [], [], [], []
            while True:
                action = np.asarray(policy(obs), dtype=np.float32)
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
                    seed=episode_seed,
                    observations=np.asarray(observations, dtype=np.float64),
                    actions=np.asarray(actions, dtype=np.float32),
                    rewards=list(map(float, rewards)),
                    terminations=list(map(bool, terms)),
                    truncations=list(map(bool, truncs)),
                )
            )
            episode_id += 1
    env.close()
    return episodes


def renumber(episodes: list, start: int = 0) -> list:
    """Episode buffers with consecutive ids (minari stores ``episode_<id>`` in order)."""
    return [dataclasses.replace(episode, id=start + i) for i, episode in enumerate(episodes)]


def episode_length(episode) -> int:
    return len(episode.rewards)


def episode_return(episode) -> float:
    return float(np.sum(np.asarray(episode.rewards, dtype=np.float64)))


def write_minari_dataset(
    dataset_id: str,
    episodes: list,
    env_id,
    ref_min_score: float | None,
    ref_max_score: float | None,
    description: str,
    algorithm_name: str = "advrl",
    record: dict | None = None,
    started: float | None = None,
    eval_env=None,
    spaces: tuple | None = None,
) -> str:
    """Create ``dataset_id`` in the Minari store from episode buffers; returns its path.

    ``env_id`` (and ``eval_env``, default the same) may be a Gymnasium id or EnvSpec, or None
    for data without an environment, whose (observation, action) ``spaces`` are then given.
    ``record`` is written as ``advrl.json`` beside ``data/``, with ``build_seconds``
    measured from ``started`` (a ``time.perf_counter()`` value) when given.
    """
    import minari
    from minari.storage.datasets_root_dir import get_dataset_path

    root = str(get_dataset_path())
    final = os.path.join(root, dataset_id)
    if os.path.exists(final):
        raise FileExistsError(f"Dataset {dataset_id!r} already exists at {final}; delete it to rebuild.")
    with staging_folder(root, ".advrl-build-") as staging:
        with minari_store(staging):
            minari.create_dataset_from_buffers(
                dataset_id=dataset_id,
                buffer=episodes,
                env=env_id,
                eval_env=env_id if eval_env is None else eval_env,
                algorithm_name=algorithm_name,
                observation_space=spaces[0] if spaces else None,
                action_space=spaces[1] if spaces else None,
                author="advrl",
                author_email="advrl@localhost",
                code_permalink="advrl",
                ref_min_score=ref_min_score,
                ref_max_score=ref_max_score,
                description=description,
            )
        if record is not None:
            record = dict(record, **written_facts(staging, dataset_id))
            if started is not None:
                record["build_seconds"] = round(time.perf_counter() - started, 3)
            with open(os.path.join(staging, dataset_id, RECORD_FILE), "w") as handle:
                json.dump(record, handle, indent=2, sort_keys=False)
                handle.write("\n")
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.rename(os.path.join(staging, dataset_id), final)
    return final


STAGING_LOCK = ".staging-lock"  # beside each staging folder, locked while its process lives


@contextlib.contextmanager
def staging_folder(root: str, prefix: str):
    """A new folder under the store ``root`` to build or unpack a dataset in before it lands,
    removed afterwards. Each holds a ``flock`` on ``<folder>.staging-lock`` for its process's
    life (the kernel drops it when a build is killed), so a later build can tell the folders
    of killed builds (removed here) from those of builds still running (left alone)."""
    os.makedirs(root, exist_ok=True)
    with _store_lock(root):  # folders and their locks appear together for every other process
        remove_stale_staging(root)
        staging = tempfile.mkdtemp(prefix=prefix, dir=root)
        holder = open(staging + STAGING_LOCK, "w")
        try_lock(holder)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        os.unlink(staging + STAGING_LOCK)
        holder.close()


def remove_stale_staging(root: str) -> None:
    """Delete the staging folders of builds and unpacks that were killed (their lock is free)."""
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if not name.startswith((".advrl-build-", ".advrl-unpack-")):
            continue
        if name.endswith(STAGING_LOCK):
            path, name = path[: -len(STAGING_LOCK)], name[: -len(STAGING_LOCK)]
        elif not os.path.isdir(path):
            continue  # e.g. the first-use build locks, .advrl-build-<id>.lock
        lock_path = path + STAGING_LOCK
        if os.path.exists(lock_path):
            with open(lock_path, "a") as lock:
                if not try_lock(lock):
                    continue  # its build is still running
        shutil.rmtree(path, ignore_errors=True)
        if os.path.exists(lock_path):
            os.unlink(lock_path)


@contextlib.contextmanager
def _store_lock(root: str):
    with open(os.path.join(root, ".advrl-staging.lock"), "a") as handle:
        try_lock(handle, wait=True)
        yield  # closing the file releases the lock


def written_facts(root: str, dataset_id: str) -> dict:
    """What loading later checks the dataset against (see :func:`advrl.data.dataset.data_problems`):
    the content fingerprint, the evaluation env spec and the reference returns, read back from
    the files minari wrote, so that they are exactly what a load will see."""
    import minari

    from advrl.data.dataset import REF_SCORES, content_fingerprint, metadata_env_spec, read_episodes

    with minari_store(root):
        ds = minari.load_dataset(dataset_id, download=False)
        spec = metadata_env_spec(ds, "eval_env_spec")
        return {
            "fingerprint": content_fingerprint(read_episodes(ds)),
            "eval_env_spec": spec if spec is None or isinstance(spec, str) else spec.to_json(),
            "ref_scores": {key: ds.storage.metadata.get(key) for key in REF_SCORES},
        }


def check_new_id(new_id: str, example: str) -> None:
    """A dataset id minari accepts (namespace/name-v0), else one line with an ``example``."""
    from minari.dataset.minari_dataset import parse_dataset_id

    from advrl.data.dataset import DatasetError

    try:
        parse_dataset_id(new_id)
    except (ValueError, TypeError):  # minari raises TypeError for an id without a version ("x")
        raise DatasetError(
            f"Dataset id {new_id!r} is malformed: use namespace/name-v0 (a namespace of two or more characters), "
            f"e.g. {example}."
        ) from None


def refuse_existing(dataset_id: str) -> None:
    """A new dataset never replaces one in the store."""
    from advrl.data.dataset import DatasetError

    path = dataset_path(dataset_id)
    if os.path.exists(path):
        raise DatasetError(f"Dataset {dataset_id!r} already exists at {path}; delete that folder or choose another id.")


def sha256_file(path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks (records name their source files by it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dataset_path(dataset_id: str) -> str:
    from minari.storage.datasets_root_dir import get_dataset_path

    return os.path.join(str(get_dataset_path()), dataset_id)


def read_record(dataset_id: str) -> dict | None:
    """advrl's build record of a local dataset (None for datasets advrl did not build)."""
    path = os.path.join(dataset_path(dataset_id), RECORD_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        return json.load(handle)
