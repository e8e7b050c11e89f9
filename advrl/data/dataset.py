"""Load a Minari dataset into transitions on the training device and sample batches there.

Why minari directly rather than torchrl's ``MinariExperienceReplay``: the latter re-converts
the whole dataset into its own memmap cache on every ``load_from_local_minari`` construction,
reads only the HDF5 format, and does not expose ``ref_min_score``/``ref_max_score``/
``eval_env_spec``, which advrl needs for normalised scores and evaluation. Reading the
episodes once with minari gives all of it, for both storage formats, and the transitions
then live in one TensorDict on the device, sampled with ``torch.randint`` (no host
round-trip per batch).
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from tensordict import TensorDict

from advrl.locks import pid_lock

DATASET_KEYS = (
    "observation",
    "action",
    "reward",
    "next.observation",
    "terminated",
    "truncated",
    "episode",
    "episode_return",
    "return_to_go",
    "index",  # position of the transition in the dataset (per-transition caches, e.g. trust labels)
)


class DatasetError(RuntimeError):
    """A dataset that cannot be found, opened, or used with this recipe."""


@dataclass
class DatasetInfo:
    id: str
    obs_dim: int
    action_dim: int
    max_action: float
    n_transitions: int
    n_episodes: int
    ref_min_score: float | None
    ref_max_score: float | None
    eval_env_spec: Any  # gymnasium EnvSpec (or None)
    # content hash of the transitions as stored (see content_fingerprint); None when not read
    fingerprint: str | None = None
    # where eval_env_spec comes from: "advrl.json" (advrl's build record, the authority for
    # advrl builds) or "minari metadata" (datasets advrl did not build); None in old checkpoints
    eval_env_from: str | None = None

    def facts(self) -> dict:
        return {"obs_dim": self.obs_dim, "action_dim": self.action_dim, "max_action": self.max_action}

    def normalized_score(self, episode_return: float) -> float | None:
        """D4RL convention: 100 * (return - ref_min) / (ref_max - ref_min)."""
        if self.ref_min_score is None or self.ref_max_score is None:
            return None
        return 100.0 * (episode_return - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)


def datasets_root() -> str:
    from minari.storage.datasets_root_dir import get_dataset_path

    return str(get_dataset_path())


@contextmanager
def minari_store(root: str):
    """Point Minari's store (an environment variable) at ``root`` for a while: builds and
    archives are written or checked in a staging folder before they land."""
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = root
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


def _build_on_first_use(dataset_id: str) -> None:
    """Build a buildable id once, even when several runs start on it together (a benchmark
    harness with one run per core): the first takes a lock and builds, the others wait for
    the lock and then find the dataset there."""
    import sys

    from advrl.data import catalog

    def say(message):
        print(f"advrl: {message}", file=sys.stderr, flush=True)

    root = datasets_root()
    os.makedirs(root, exist_ok=True)
    lock_path = os.path.join(root, ".advrl-build-" + dataset_id.replace("/", "--") + ".lock")
    with pid_lock(lock_path):  # concurrent first uses wait for one build
        if os.path.isdir(os.path.join(root, dataset_id)):
            return  # another process built it while this one waited
        say(f"building {dataset_id} locally on first use (into {root}) ...")
        catalog.build(dataset_id, log=say)


def open_minari(dataset_id: str, download: bool = False):
    """Open a Minari dataset: local ids from MINARI_DATASETS_PATH; remote ids through
    minari's own download path when ``download`` is true."""
    import minari

    # a folder that exists counts as local even if minari cannot list it (it may be corrupt:
    # then loading says so, instead of a misleading "not found")
    local = os.path.isdir(os.path.join(datasets_root(), dataset_id))
    if not local:
        from advrl.data import catalog

        if catalog.is_buildable(dataset_id):
            _build_on_first_use(dataset_id)
        elif not download:
            raise DatasetError(
                f"Dataset {dataset_id!r} is not in the local Minari store ({datasets_root()}). "
                "Set dataset.download=true to fetch a remote Minari id, point MINARI_DATASETS_PATH "
                "at the folder holding it, or build one with `advrl data make`."
            )
        else:
            try:
                minari.download_dataset(dataset_id)
            except Exception as err:  # network, hub, unknown id: all end here
                raise DatasetError(f"Could not download Minari dataset {dataset_id!r}: {err}") from err
    try:
        ds = minari.load_dataset(dataset_id, download=False)
        next(iter(ds.storage.get_episodes([0])))  # minari opens lazily: read one episode to find corruption now
        return ds
    except Exception as err:
        raise corrupt_dataset_error(dataset_id, err) from err


def corrupt_dataset_error(dataset_id: str, err: Exception) -> DatasetError:
    path = os.path.join(datasets_root(), dataset_id)
    return DatasetError(
        f"Dataset {dataset_id!r} at {path} exists but cannot be read ({type(err).__name__}: {err}). "
        "It may be corrupt or partially written: delete that folder and build or download it again."
    )


def _box_dim(space, what: str, dataset_id: str) -> int:
    shape = getattr(space, "shape", None)
    if shape is None or len(shape) != 1:
        raise DatasetError(f"Dataset {dataset_id!r}: advrl needs a flat Box {what} space, got {space}.")
    return int(shape[0])


def read_episodes(ds) -> dict[str, np.ndarray]:
    """All transitions of a Minari dataset as flat numpy columns (float32), episode by episode."""
    columns: dict[str, list[np.ndarray]] = {key: [] for key in DATASET_KEYS if key != "index"}
    for index, episode in enumerate(ds.iterate_episodes()):
        obs = np.asarray(episode.observations, dtype=np.float32)
        rewards = np.asarray(episode.rewards, dtype=np.float32)
        length = len(rewards)
        if length == 0:
            continue
        columns["observation"].append(obs[:-1])
        columns["next.observation"].append(obs[1:])
        columns["action"].append(np.asarray(episode.actions, dtype=np.float32).reshape(length, -1))
        columns["reward"].append(rewards)
        columns["terminated"].append(np.asarray(episode.terminations, dtype=np.float32))
        columns["truncated"].append(np.asarray(episode.truncations, dtype=np.float32))
        columns["episode"].append(np.full(length, index, dtype=np.int64))
        returns_to_go = np.cumsum(rewards[::-1], dtype=np.float64)[::-1].astype(np.float32)
        columns["return_to_go"].append(returns_to_go)
        columns["episode_return"].append(np.full(length, returns_to_go[0], dtype=np.float32))
    if not columns["reward"]:
        raise DatasetError(f"Dataset {ds.spec.dataset_id!r} has no transitions.")
    flat = {key: np.concatenate(parts) for key, parts in columns.items()}
    flat["index"] = np.arange(len(flat["reward"]), dtype=np.int64)
    return flat


def dataset_info(ds) -> DatasetInfo:
    spec = ds.spec
    dataset_id = spec.dataset_id
    action_space = spec.action_space
    high = np.asarray(action_space.high, dtype=np.float64)
    if not np.allclose(high, high.flat[0]) or not np.allclose(np.asarray(action_space.low), -high):
        raise DatasetError(f"Dataset {dataset_id!r}: advrl expects a symmetric action box [-m, m], got {action_space}.")
    metadata = ds.storage.metadata
    eval_spec, source = recorded_eval_env(build_record(dataset_id)), "advrl.json"
    if eval_spec is None:
        eval_spec, source = metadata_env_spec(ds, "eval_env_spec") or metadata_env_spec(ds, "env_spec"), "minari metadata"
    return DatasetInfo(
        id=dataset_id,
        obs_dim=_box_dim(spec.observation_space, "observation", dataset_id),
        action_dim=_box_dim(action_space, "action", dataset_id),
        max_action=float(high.flat[0]),
        n_transitions=int(spec.total_steps),
        n_episodes=int(spec.total_episodes),
        ref_min_score=metadata.get("ref_min_score"),
        ref_max_score=metadata.get("ref_max_score"),
        eval_env_spec=eval_spec,
        eval_env_from=source if eval_spec is not None else None,
    )


# ---- checks at load: the data is what its build record says, and finite ----------------------
def build_record(dataset_id: str) -> dict | None:
    """advrl.json of a local dataset (None: advrl did not build it, e.g. a remote Minari id)."""
    from advrl.data.collect import read_record

    try:
        return read_record(dataset_id)
    except (OSError, ValueError) as err:  # unreadable JSON: the build record cannot vouch for the data
        raise DatasetError(
            f"Dataset {dataset_id!r}: its build record advrl.json cannot be read ({err}); {rebuild_hint(dataset_id, None)}."
        ) from err


def recorded_eval_env(record: dict | None):
    """The evaluation env a build record names: the full spec (JSON) recorded since advrl
    records it, else the collection env's id (older records)."""
    if not record:
        return None
    return record.get("eval_env_spec") or record.get("env_id")


def metadata_env_spec(ds, key: str):
    """``env_spec`` or ``eval_env_spec`` as minari's metadata holds it (an EnvSpec, its JSON, or None)."""
    if key == "env_spec":
        return ds.spec.env_spec or ds.storage.metadata.get(key)
    return getattr(ds.spec, key, None) or ds.storage.metadata.get(key)  # minari 0.5 keeps it in metadata only


def spec_fields(spec) -> dict | None:
    """What decides the environment a spec makes: id, constructor kwargs, episode limit."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if not spec.lstrip().startswith("{"):
            return {"id": spec}
        import json

        spec = json.loads(spec)
    elif not isinstance(spec, dict):
        spec = {"id": spec.id, "kwargs": spec.kwargs, "max_episode_steps": spec.max_episode_steps}
    return {k: spec.get(k) for k in ("id", "kwargs", "max_episode_steps") if k in spec}


def rebuild_hint(dataset_id: str, record: dict | None) -> str:
    """The fix for a damaged local advrl build: delete it and build it again."""
    from advrl.data import catalog

    path = os.path.join(datasets_root(), dataset_id)
    command = (record or {}).get("command") or (f"advrl data make {dataset_id}" if catalog.is_buildable(dataset_id) else None)
    how = f"`{command}`" if command else "the command that made it"
    return f"delete {path} and build it again with {how}"


REF_SCORES = ("ref_min_score", "ref_max_score")


def metadata_problem(ds, record: dict | None) -> str | None:
    """advrl.json is the authority on an advrl build: minari's metadata naming another
    environment (the same shapes pass every other check) would train and score the policy in
    the wrong one, and other reference returns would misstate every normalised score."""
    if not record or not record.get("env_id"):
        return None  # not an advrl build: minari's metadata is all there is
    metadata = ds.storage.metadata
    checks = [  # (what, what it decides, as advrl.json records it, as minari's metadata says)
        ("env_spec", "the env the data was collected in", {"id": record["env_id"]}, spec_fields(metadata_env_spec(ds, "env_spec"))),
        ("eval_env_spec", "the env scores are measured in", spec_fields(recorded_eval_env(record)),
         spec_fields(metadata_env_spec(ds, "eval_env_spec"))),
        ("reference returns", "what scores are normalised by", record.get("ref_scores"), {k: metadata.get(k) for k in REF_SCORES}),
    ]
    for what, decides, wanted, found in checks:
        if wanted is None or found is None:
            continue  # older records do not hold every fact
        differing = {k: (found.get(k), v) for k, v in wanted.items() if found.get(k) != v}
        if differing:
            named = "; ".join(f"{k} {got!r} there, {want!r} in advrl.json" for k, (got, want) in differing.items())
            return (
                f"Dataset {ds.spec.dataset_id!r}: its Minari metadata's {what} ({decides}) disagrees with its build record "
                f"advrl.json ({named}), so one was changed after the build; {rebuild_hint(ds.spec.dataset_id, record)}."
            )
    return None


def nonfinite_problem(dataset_id: str, columns: dict[str, np.ndarray], record: dict | None = None) -> str | None:
    """NaN/inf in the data turns every loss that touches it NaN, which would be reported much
    later as a diverged loss; name the first offending transition instead."""
    for key in ("observation", "action", "reward", "next.observation"):
        values = columns[key].reshape(len(columns[key]), -1)
        bad = ~np.isfinite(values).all(axis=1)
        if not bad.any():
            continue
        rows = np.flatnonzero(bad)
        first = int(rows[0])
        value = values[first][~np.isfinite(values[first])][0]
        episodes = np.unique(columns["episode"][rows])
        # a deterministic build reproduces a simulator's blow-up: leaving the episodes out may be the only fix
        rebuild = rebuild_hint(dataset_id, record) if record else "rebuild it"
        fix = f"{rebuild}, or write a copy of it without those episodes"
        return (
            f"Dataset {dataset_id!r}: {key} is not finite ({value}) at transition {first} (episode "
            f"{int(columns['episode'][first])}; {len(rows)} of {len(values)} transitions, in {len(episodes)} episode(s), are affected). "
            f"advrl cannot train on it: {fix}."
        )
    return None


def fingerprint_problem(dataset_id: str, fingerprint: str, record: dict | None) -> str | None:
    """A build whose stored values were changed after it was written (in place, by a tool or
    a damaged disk) still loads; only the fingerprint its record holds tells it apart."""
    recorded = (record or {}).get("fingerprint")
    if recorded is None or recorded == fingerprint:
        return None  # builds recorded before advrl wrote fingerprints cannot be checked
    return (
        f"Dataset {dataset_id!r} does not hold the data it was built with: its content fingerprint is {fingerprint}, "
        f"but its build record advrl.json names {recorded} (changed after the build); {rebuild_hint(dataset_id, record)}."
    )


def data_problems(ds, columns: dict[str, np.ndarray], fingerprint: str) -> list[str]:
    """Every check at load, one line each; empty when the data can be trained on."""
    dataset_id = ds.spec.dataset_id
    record = build_record(dataset_id)
    problems = [
        metadata_problem(ds, record),
        nonfinite_problem(dataset_id, columns, record),
        fingerprint_problem(dataset_id, fingerprint, record),
    ]
    return [p for p in problems if p]


def checked_columns(ds) -> tuple[dict[str, np.ndarray], str]:
    """All transitions of ``ds`` and their content fingerprint, once the checks at load pass
    (else the first problem is raised): bad data would otherwise surface much later, as a
    diverged loss or a wrong score."""
    try:
        columns = read_episodes(ds)
    except DatasetError:
        raise
    except Exception as err:  # h5py/arrow errors from a damaged file
        raise corrupt_dataset_error(ds.spec.dataset_id, err) from err
    fingerprint = content_fingerprint(columns)
    problems = data_problems(ds, columns, fingerprint)
    if problems:
        raise DatasetError(problems[0])
    return columns, fingerprint


@dataclass
class ObservationNormalizer:
    """(obs - mean) / std, with std + eps as TD3+BC/CORL compute it; identity when disabled."""

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, observations: np.ndarray, enabled: bool, eps: float = 1e-3) -> ObservationNormalizer:
        dim = observations.shape[1]
        if not enabled:
            return cls(torch.zeros(dim), torch.ones(dim))
        mean = observations.mean(0, dtype=np.float64)
        std = observations.std(0, dtype=np.float64) + eps
        return cls(torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32))

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.mean.to(obs.device)) / self.std.to(obs.device)

    def state_dict(self) -> dict:
        return {"mean": self.mean.cpu(), "std": self.std.cpu()}

    @classmethod
    def from_state_dict(cls, state: dict) -> ObservationNormalizer:
        return cls(state["mean"], state["std"])


def reward_factor(columns: dict[str, np.ndarray], data_cfg) -> float:
    """The per-dataset reward multiplier of ``data.reward_normalization``.

    'returns' is IQL's MuJoCo normalisation (CORL ``modify_reward``):
    r * 1000 / (max episode return - min episode return).
    """
    mode = data_cfg.reward_normalization
    if mode == "none":
        return 1.0
    if mode != "returns":
        raise DatasetError(f"data.reward_normalization must be 'none' or 'returns', got {mode!r}.")
    returns = columns["episode_return"]
    spread = float(returns.max() - returns.min())
    if spread <= 0:
        raise DatasetError("data.reward_normalization=returns needs episodes with different returns.")
    return 1000.0 / spread


def reward_transform(factor: float, data_cfg):
    """The training reward as a function of the raw one: (factor * r) * scale + shift."""
    scale, shift = float(data_cfg.reward_scale), float(data_cfg.reward_shift)
    return lambda reward: reward * factor * scale + shift


class OfflineData:
    """The dataset's transitions as one TensorDict on ``device``; uniform sampling on device."""

    keys = DATASET_KEYS

    def __init__(self, transitions: TensorDict, info: DatasetInfo, normalizer: ObservationNormalizer, reward_fn=None):
        self.transitions = transitions
        self.info = info
        self.normalizer = normalizer
        self.reward_fn = reward_fn or (lambda reward: reward)  # raw -> training reward (online data)
        self.size = transitions.batch_size[0]
        self.device = transitions.device
        self.select(DATASET_KEYS)

    def select(self, keys) -> None:
        """Sample only these dataset keys (dotted names); the recipe's data-flow check knows
        which ones its terms read, and gathering fewer columns is measurably faster."""
        unknown = [k for k in keys if k not in DATASET_KEYS]
        if unknown:
            raise DatasetError(f"Unknown dataset keys {unknown}; the dataset provides {', '.join(DATASET_KEYS)}.")
        self._with_index = "index" in keys
        self._flat = [(k, self.transitions[k]) for k in keys if "." not in k and k != "index"]
        self._next = [(k.split(".", 1)[1], self.transitions[tuple(k.split("."))]) for k in keys if k.startswith("next.")]

    def sample(self, batch_size: int) -> TensorDict:
        idx = torch.randint(self.size, (batch_size,), device=self.device)
        # index_select + unchecked construction: about half the cost of TensorDict indexing,
        # which matters at a few thousand updates per second
        batch = {key: torch.index_select(value, 0, idx) for key, value in self._flat}
        if self._with_index:
            batch["index"] = idx
        if self._next:
            batch["next"] = _unchecked_tensordict(
                {key: torch.index_select(value, 0, idx) for key, value in self._next}, batch_size, self.device
            )
        return _unchecked_tensordict(batch, batch_size, self.device)


    def sample_replicas(self, batch_size: int, generators) -> TensorDict:
        """A batch ``[K, batch_size]`` for K vectorised seeds: row k's indices are drawn from
        ``generators[k]`` exactly as ``sample`` draws a single run's from the global generator."""
        idx = torch.stack([torch.randint(self.size, (batch_size,), device=self.device, generator=g) for g in generators])
        flat, shape = idx.reshape(-1), idx.shape

        def gather(value):
            return torch.index_select(value, 0, flat).view(*shape, *value.shape[1:])

        batch = {key: gather(value) for key, value in self._flat}
        if self._with_index:
            batch["index"] = idx
        if self._next:
            batch["next"] = _unchecked_tensordict({key: gather(value) for key, value in self._next}, shape, self.device)
        return _unchecked_tensordict(batch, shape, self.device)


def _unchecked_tensordict(source: dict, batch_size, device) -> TensorDict:
    """``batch_size``: an int (one run's batch) or a shape ([K, B] for vectorised seeds)."""
    batch_size = torch.Size([batch_size] if isinstance(batch_size, int) else batch_size)
    if hasattr(TensorDict, "_new_unsafe"):  # tensordict >= 0.5: skips per-leaf shape checks
        return TensorDict._new_unsafe(source, batch_size=batch_size, device=device)
    return TensorDict(source, batch_size=batch_size, device=device)


def content_fingerprint(columns: dict[str, np.ndarray]) -> str:
    """A short hash of the stored transitions (before any recipe transform), so that runs and
    caches can tell two builds of one dataset id apart: a rebuilt dataset keeps its id but, e.g.
    after ``advrl data make --retrain``, not necessarily its content."""
    digest = hashlib.sha256()
    for key in ("observation", "action", "reward", "terminated", "truncated", "episode"):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(columns[key]).tobytes())
    return digest.hexdigest()[:16]


def load_offline_data(dataset_cfg, data_cfg, device: torch.device) -> OfflineData:
    ds = open_minari(dataset_cfg.id, download=dataset_cfg.download)
    info = dataset_info(ds)
    columns, fingerprint = checked_columns(ds)
    info = replace(info, fingerprint=fingerprint)
    normalizer = ObservationNormalizer.fit(columns["observation"], data_cfg.normalize_observations)
    reward_fn = reward_transform(reward_factor(columns, data_cfg), data_cfg)
    rewards = reward_fn(columns["reward"].astype(np.float32)).astype(np.float32)
    actions = columns["action"]
    if data_cfg.action_clip is not None:
        limit = info.max_action - data_cfg.action_clip
        actions = np.clip(actions, -limit, limit)
    obs = normalizer(torch.from_numpy(columns["observation"]))
    next_obs = normalizer(torch.from_numpy(columns["next.observation"]))
    transitions = TensorDict(
        {
            "observation": obs,
            "action": torch.from_numpy(actions),
            "reward": torch.from_numpy(rewards),
            "next": {"observation": next_obs},
            "terminated": torch.from_numpy(columns["terminated"]),
            "truncated": torch.from_numpy(columns["truncated"]),
            "episode": torch.from_numpy(columns["episode"]),
            "episode_return": torch.from_numpy(columns["episode_return"]),
            "return_to_go": torch.from_numpy(columns["return_to_go"]),
            "index": torch.from_numpy(columns["index"]),
        },
        batch_size=[len(rewards)],
    ).to(device)
    return OfflineData(transitions, info, normalizer, reward_fn)
