"""Datasets advrl builds locally (on first use or with ``advrl data make``), D4RL-style.

Ids are ``advrl/<env>/<kind>-v0`` with env in hopper, halfcheetah, walker2d (Gymnasium v5)
and kind one of

* ``random``, ``medium``, ``expert``: roll-outs of one behaviour policy (``random`` is
  uniform actions; the others are committed policies, see :mod:`advrl.data.policies`, whose
  stochastic actors sample their actions as D4RL's SAC policies did);
* ``medium-expert``: half the transitions from the medium policy, half from the expert (D4RL);
* ``random-medium``, ``random-expert``, ``random-medium-expert``: A2PO's mixed-quality
  datasets, equal shares of transitions unless ``proportions`` are given;
* ``medium-replay``: the replay buffer of the online run that trained the medium policy, up
  to the medium policy's step (D4RL), read from that run's checkpoint.

Each share is collected by its own seeded stream (stream = level index), so the medium half
of ``medium-expert`` is the start of ``medium`` built with the same seed. Sizes: D4RL's 1M
transitions (``medium-replay``: the whole replay prefix), unless the id carries a size tag:
``advrl/hopper/medium-100k-v0`` is 100k transitions of the medium policy. A seed tag after it
names the collection seed: ``advrl/hopper/expert-10k-s1-v0`` is 10k expert transitions
collected with seed 1 (``medium-replay-s2``: the replay of an online run trained with seed 2).
Tagged ids keep builds of one kind apart in one store (a study's small or re-seeded datasets
beside the full ones); the recipes' default dataset is a tagged one, so that building it on
first use takes about a minute.

Scores use D4RL's reference returns (``REF_MIN_SCORE``/``REF_MAX_SCORE`` in d4rl/infos.py of
github.com/Farama-Foundation/D4RL), so they
read like the papers' even though v5 is not D4RL's mujoco-py v2. Every built dataset has
``advrl.json`` beside minari's ``data/`` (see :func:`advrl.data.collect.read_record`).
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
import shlex
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from advrl.data.dataset import DatasetError

ENVS = {
    "hopper": ("Hopper-v5", -20.272305, 3234.3),
    "halfcheetah": ("HalfCheetah-v5", -280.178953, 12135.0),
    "walker2d": ("Walker2d-v5", 1.629008, 4592.3),
}
KINDS: dict[str, tuple[str, ...]] = {  # kind -> behaviour levels, in collection order
    "random": ("random",),
    "medium": ("medium",),
    "expert": ("expert",),
    "medium-replay": ("medium",),
    "medium-expert": ("medium", "expert"),
    "random-medium": ("random", "medium"),
    "random-expert": ("random", "expert"),
    "random-medium-expert": ("random", "medium", "expert"),
}
FULL_SIZE = 1_000_000  # D4RL's size: every kind without a size tag, except medium-replay
STREAMS = {"random": 0, "medium": 1, "expert": 2}
REMOTE_ENVS = (
    "ant",
    "halfcheetah",
    "hopper",
    "humanoid",
    "inverteddoublependulum",
    "invertedpendulum",
    "pusher",
    "reacher",
    "swimmer",
    "walker2d",
)
REMOTE_LEVELS = ("medium", "expert")
# an optional size tag (``-100k``, ``-2m``, ``-5000``) and then an optional seed tag (``-s1``)
# before ``-v0`` name a dataset of that many transitions collected with that seed, so builds of
# one kind with different sizes or seeds live side by side in a store
_PATTERN = re.compile(
    r"^advrl/(?P<env>[a-z0-9]+)/(?P<kind>[a-z-]+?)(?:-(?P<size>[1-9][0-9]*)(?P<unit>[km]?))?(?:-s(?P<seed>0|[1-9][0-9]*))?-v0$"
)
ID_FORM = "advrl/<env>/<kind>[-<size>][-s<seed>]-v0"
_UNITS = {"": 1, "k": 1_000, "m": 1_000_000}


class UnknownDatasetError(DatasetError):
    """An id advrl neither has locally nor can build."""


def buildable_ids() -> list[str]:
    return [f"advrl/{env}/{kind}-v0" for env in ENVS for kind in KINDS]


def remote_ids() -> list[str]:
    """Minari's MuJoCo ids on the Farama hub (Gymnasium v5, SB3 policies; need the network)."""
    return [f"mujoco/{env}/{level}-v0" for env in REMOTE_ENVS for level in REMOTE_LEVELS]


def _match(dataset_id: str) -> re.Match | None:
    """The pattern's match if ``dataset_id`` names an env and kind advrl builds, else None."""
    match = _PATTERN.match(dataset_id)
    return match if match and match["env"] in ENVS and match["kind"] in KINDS else None


def parse(dataset_id: str) -> tuple[str, str]:
    """``advrl/<env>/<kind>[-<size>]-v0`` -> (env, kind); unknown ids raise with close matches."""
    match = _match(dataset_id)
    if match is None:
        raise unknown_id_error(dataset_id)
    return match["env"], match["kind"]


def size_tag(dataset_id: str) -> int | None:
    """The number of transitions an id's size tag names (``advrl/hopper/medium-100k-v0``: 100000)."""
    match = _match(dataset_id)
    if match is None:
        raise unknown_id_error(dataset_id)
    return int(match["size"]) * _UNITS[match["unit"]] if match["size"] else None


def seed_tag(dataset_id: str) -> int | None:
    """The collection seed an id's seed tag names (``advrl/hopper/expert-10k-s1-v0``: 1)."""
    match = _match(dataset_id)
    if match is None:
        raise unknown_id_error(dataset_id)
    return int(match["seed"]) if match["seed"] is not None else None


def _malformed_tags(dataset_id: str) -> str | None:
    """For ``advrl/<env>/<kind>-<something>-v0`` with a known env and kind but tags that do not
    parse, the one-line error naming the valid form; else None."""
    loose = re.match(r"^advrl/(?P<env>[a-z0-9]+)/(?P<rest>.+)-v0$", dataset_id)
    if loose is None or loose["env"] not in ENVS:
        return None
    kinds = [kind for kind in KINDS if loose["rest"].startswith(kind + "-")]
    if not kinds:
        return None
    kind = max(kinds, key=len)
    tags = loose["rest"][len(kind):]
    return (
        f"Dataset id {dataset_id!r} has malformed tags {tags!r}: the form is {ID_FORM}, an optional size tag "
        "(transitions: 300, 100k, 2m) then an optional seed tag (s0, s1, ...), "
        f"e.g. advrl/{loose['env']}/{kind}-10k-s1-v0."
    )


def is_buildable(dataset_id: str) -> bool:
    return _match(dataset_id) is not None


def unknown_id_error(dataset_id: str, candidates=(), what: str = "advrl cannot build") -> UnknownDatasetError:
    malformed = _malformed_tags(dataset_id)
    if malformed:
        return UnknownDatasetError(malformed)
    pool = list(dict.fromkeys([*candidates, *buildable_ids()]))
    close = difflib.get_close_matches(dataset_id, pool, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    return UnknownDatasetError(
        f"{what} {dataset_id!r}.{hint} Buildable ids are advrl/<env>/<kind>-v0 with env in {', '.join(ENVS)} "
        f"and kind in {', '.join(KINDS)}, optionally with a size tag and a seed tag ({ID_FORM}, e.g. "
        "advrl/hopper/medium-100k-v0, advrl/hopper/expert-10k-s1-v0); "
        "`advrl data list` shows what is local and buildable."
    )


def default_size(dataset_id: str) -> int | None:
    """The size ``build`` uses when none is given: the id's size tag, else D4RL's 1M
    (None: medium-replay's whole replay prefix)."""
    _, kind = parse(dataset_id)
    tagged = size_tag(dataset_id)
    if tagged is not None or kind == "medium-replay":
        return tagged
    return FULL_SIZE


def missing_policies(dataset_id: str, root=None) -> list[str]:
    """The behaviour levels ``dataset_id`` needs that are not exported yet."""
    from advrl.data import policies

    env, kind = parse(dataset_id)
    have = set(policies.available(env, root))
    return [level for level in KINDS[kind] if level not in have]


def _check_request(dataset_id: str, size, seed, proportions, policies_root, run_dir, retrain) -> tuple:
    """(env, kind, size, levels, shares) of a build request, or the error that stops it before
    anything is written; run again under the build's lock, where the dataset may exist by now."""
    from advrl.data import policies
    from advrl.data.collect import dataset_path

    env, kind = parse(dataset_id)
    seed = _seed(dataset_id, seed)
    if size is not None and (not isinstance(size, (int, np.integer)) or size < 1):
        raise DatasetError(f"The size must be a positive number of transitions, got {size!r}.")
    path = dataset_path(dataset_id)
    if os.path.exists(path):
        raise DatasetError(
            f"Dataset {dataset_id!r} already exists at {path}; delete that folder to rebuild it "
            "(another size or seed is another id: put tags before -v0, e.g. advrl/hopper/medium-100k-v0, "
            "advrl/hopper/medium-100k-s1-v0)."
        )
    tagged = size_tag(dataset_id)
    if size is not None and tagged is not None and size != tagged:
        raise DatasetError(f"{dataset_id} names its size ({tagged} transitions); --size {size} contradicts it: drop one.")
    size = tagged if size is None else size
    if (run_dir is not None or retrain) and kind != "medium-replay":
        raise DatasetError(f"run_dir (--run) and retrain apply to medium-replay only, not {kind}.")
    levels = KINDS[kind]
    shares = _shares(kind, levels, proportions)
    for level in levels:
        if not policies.has(env, level, policies_root):
            raise policies.missing_policy_error(env, level, policies_root)
    if kind == "medium-replay":  # checked before a retraining, and before the build's lock file
        seed = _replay_seed(dataset_id, env, seed, run_dir, retrain, policies_root)
    return env, kind, size, seed, levels, shares


def _seed(dataset_id: str, seed) -> int | None:
    """The collection seed of a request: the id's seed tag, or ``seed`` (which must not
    contradict the tag). None: not given (collections use 0; medium-replay its run's seed)."""
    if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
        raise DatasetError(f"The seed must be a non-negative integer, got {seed!r}.")
    tagged = seed_tag(dataset_id)
    if seed is not None and tagged is not None and seed != tagged:
        raise DatasetError(f"{dataset_id} names its seed ({tagged}); --seed {seed} contradicts it: drop one.")
    return tagged if seed is None else int(seed)


@contextlib.contextmanager
def make_lock(dataset_id: str) -> Iterator[None]:
    """Hold the lock of building ``dataset_id`` or fail at once: two processes building one id
    would both write it. ``flock`` is released when its holder ends, even by SIGKILL, so a
    crashed build leaves no stale lock. (A build on first use also waits on its own lock.)"""
    from advrl.data.dataset import datasets_root
    from advrl.locks import pid_lock

    root = datasets_root()
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, ".advrl-make-" + dataset_id.replace("/", "--") + ".lock")

    def busy(holder: str) -> DatasetError:
        return DatasetError(
            f"Dataset {dataset_id!r} is being built by another process (pid {holder}; lock {path}). "
            "Wait for that build to finish and use it, or stop that process and build again."
        )

    with pid_lock(path, busy):
        yield


def build(
    dataset_id: str,
    size: int | None = None,
    seed: int | None = None,
    proportions: dict[str, float] | None = None,
    policies_root=None,
    run_dir: str | os.PathLike | None = None,
    log=None,
    retrain: bool = False,
) -> str:
    """Build ``dataset_id`` into the local Minari store; returns its path.

    ``seed`` is the collection seed (default: the id's seed tag, else 0; medium-replay: the
    seed of the online run it reads, which a given seed or tag must match).
    ``proportions`` (level -> share of transitions, summing to 1) overrides the equal shares
    of a mixture kind; ``run_dir`` overrides the online run medium-replay reads (default: the
    run recorded with the medium policy); ``retrain`` trains that run again first when it is
    not on this machine (:func:`advrl.data.policies.retrain_run`, into ``run_dir`` or
    ``runs/sources/<env>-medium``); ``log`` (a callable taking a message) hears progress.
    """
    request = _check_request(dataset_id, size, seed, proportions, policies_root, run_dir, retrain)  # before the lock: a bad one leaves no lock file
    with make_lock(dataset_id):  # a second build of one id fails at once, naming the first
        return _build(dataset_id, request, proportions, policies_root, run_dir, log, retrain)


def _build(dataset_id: str, request: tuple, proportions, policies_root, run_dir, log, retrain: bool) -> str:
    """Build a request checked by ``_check_request`` (env, kind, size, seed, levels, shares);
    ``proportions`` as given, for the command the build records."""
    from advrl.data import policies
    from advrl.data.collect import collect_episodes, renumber, stream_rng, write_minari_dataset
    from advrl.data.mix import split_counts

    env, kind, size, seed, levels, shares = request
    env_id, ref_min, ref_max = ENVS[env]
    started = time.perf_counter()
    log = log or (lambda message: None)

    if kind == "medium-replay":
        step = None
        if retrain:
            run_dir = Path(run_dir or Path("runs") / "sources" / f"{env}-medium")
            if not _holds_replay_to_medium(run_dir, env, policies_root):
                log(f"{dataset_id}: training the medium policy's online run again in {run_dir} (one CPU thread)")
                retrained = policies.retrain_run(env, "medium", run_dir, policies_root)
                log(f"{dataset_id}: retrained; the committed medium policy reproduced exactly: {retrained['reproduced']}")
                if retrained["reproduced"] is False:
                    log(policies.not_reproduced_warning(env, "medium", run_dir, policies_root))
            step = int(policies.read_record(env, "medium", policies_root)["steps"])
        log(f"{dataset_id}: reading the replay buffer of the medium policy's online run")
        episodes, sources = replay_episodes(env, size, run_dir, policies_root, step)
    else:
        seed = 0 if seed is None else seed
        total = default_size(dataset_id) if size is None else int(size)
        counts = split_counts(total, shares, [f"the {level} share" for level in levels])
        episodes, sources = [], []
        for level, share, count in zip(levels, shares, counts):
            log(f"{dataset_id}: collecting {count} transitions with the {level} policy")
            stream = STREAMS[level]
            policy = policies.load_policy(env, level, rng=stream_rng(seed, stream), root=policies_root)
            part = collect_episodes(env_id, policy, count, seed, stream=stream)
            sources.append(
                {
                    "policy": level,
                    "proportion": share,
                    "transitions": count,
                    "episodes": [len(episodes), len(episodes) + len(part)],
                    "stream": stream,
                    "policy_sha256": policies.file_sha256(env, level, policies_root) if level != "random" else None,
                    "policy_record": policies.read_record(env, level, policies_root),
                }
            )
            episodes.extend(part)
        episodes = renumber(episodes)

    n_steps = sum(len(e.rewards) for e in episodes)
    command = ["advrl", "data", "make", dataset_id] + (["--seed", str(seed)] if seed is not None else [])
    if size is not None:
        command += ["--size", str(size)]
    if proportions:
        command += ["--proportions", ",".join(f"{k}={v}" for k, v in proportions.items())]
    record = dataset_record(dataset_id, env_id, episodes, sources, seed, n_steps, kind=kind, command=shlex.join(command))
    what = " + ".join(f"{s.get('policy', 'replay')} {s['proportion']:.0%}" for s in sources)
    description = summary_line(dataset_id, env_id, n_steps, len(episodes), what, seed, record["returns"])
    algorithm = "advrl online replay buffer" if kind == "medium-replay" else f"advrl behaviour policies: {', '.join(levels)}"
    return write_minari_dataset(
        dataset_id, episodes, env_id, ref_min, ref_max, description, algorithm_name=algorithm, record=record, started=started
    )


def _shares(kind: str, levels: tuple[str, ...], proportions: dict[str, float] | None) -> list[float]:
    from advrl.data.mix import check_proportions

    if proportions is None:
        return [1.0 / len(levels)] * len(levels)
    if kind == "medium-replay":
        raise DatasetError("medium-replay is one run's replay buffer: it takes no proportions.")
    if len(levels) == 1:
        raise DatasetError(f"{kind} is a single-policy dataset: proportions apply to mixtures only.")
    extra = sorted(set(proportions) - set(levels))
    lacking = [level for level in levels if level not in proportions]
    if extra or lacking:
        raise DatasetError(
            f"Proportions for {kind} must name exactly {', '.join(levels)}"
            + (f"; unknown {', '.join(extra)}" if extra else "")
            + (f"; missing {', '.join(lacking)}" if lacking else "")
            + "."
        )
    return check_proportions([(level, proportions[level]) for level in levels])


def dataset_record(dataset_id, env_id, episodes, sources, seed, size, **extra) -> dict:
    """advrl.json: what a dataset was built from, and its return statistics."""
    import advrl
    from advrl import provenance
    from advrl.data.collect import episode_return
    from advrl.data.stats import return_stats

    return {
        "format": "advrl-dataset-v1",
        "dataset_id": dataset_id,
        "env_id": env_id,
        **extra,
        "size": int(size),
        "episodes": len(episodes),
        "seed": seed,
        "sources": sources,
        "returns": return_stats([episode_return(e) for e in episodes]),
        "advrl_version": advrl.__version__,
        "software": provenance.software(),
    }


def summary_line(dataset_id, env_id, size, n_episodes, what, seed, returns) -> str:
    return (
        f"{dataset_id}: {size} transitions in {n_episodes} episodes on {env_id} from {what}, seed {seed}; "
        f"episode return min/median/max {returns['min']:.1f}/{returns['median']:.1f}/{returns['max']:.1f}. "
        "Built by advrl; build record in advrl.json beside data/."
    )


# ---- medium-replay ----------------------------------------------------------------------
def _replay_seed(dataset_id: str, env: str, seed: int | None, run_dir, retrain: bool, policies_root) -> int | None:
    """The seed of the online run whose replay medium-replay reads (``run_dir`` when it holds a
    run, else the medium policy's recorded run, which ``retrain`` trains again); a requested
    seed (tag or --seed) must be that run's, since the run collected the replay, not this build."""
    from advrl.data import policies

    saved = Path(run_dir) / "recipe.yaml" if run_dir is not None else None
    if saved is not None and saved.is_file():
        recipe, where = _read_yaml_mapping(saved), f"the run {run_dir}"
    elif run_dir is None or retrain:
        recipe, where = policies.read_record(env, "medium", policies_root).get("recipe"), "the medium policy's recorded run"
    else:
        recipe, where = None, ""
    run_seed = recipe.get("seed") if isinstance(recipe, dict) else None
    if seed is not None and run_seed is not None and int(run_seed) != seed:
        raise DatasetError(
            f"{dataset_id} is the replay of an online run trained with seed {seed}, but {where} used seed {run_seed}. "
            f"Train one with seed {seed} (advrl online RECIPE seed={seed}) and build from it with --run RUN_DIR."
        )
    return seed if run_seed is None else int(run_seed)


def _read_yaml_mapping(path: Path) -> dict | None:
    import yaml

    loaded = yaml.safe_load(path.read_text())
    return loaded if isinstance(loaded, dict) else None


def _holds_replay_to_medium(run_dir: Path, env: str, policies_root) -> bool:
    from advrl.data import policies

    checkpoint = run_dir / "checkpoints" / "last.pt"
    if not checkpoint.is_file():
        return False
    return _load_step(checkpoint) >= int(policies.read_record(env, "medium", policies_root)["steps"])


def replay_episodes(env: str, size: int | None, run_dir=None, policies_root=None, step=None) -> tuple[list, list]:
    """The online run's replay buffer up to the medium policy's step (``step``, or the one
    recorded with the policy, or for another ``run_dir`` its own medium snapshot by D4RL's
    rule), cut into episodes."""
    from advrl.data import policies
    from advrl.learner.checkpoint import CheckpointError, load_checkpoint

    record = policies.read_record(env, "medium", policies_root)
    if run_dir is None:
        if not record.get("source_run"):
            raise DatasetError(f"The medium policy record of {env} names no source run; pass run_dir (the online run).")
        run_dir, step = Path(record["source_run"]), int(record["steps"])
    else:
        run_dir = Path(run_dir)
        step = int(_load_step(policies.select_snapshot(run_dir, "medium"))) if step is None else int(step)
    checkpoint = run_dir / "checkpoints" / "last.pt"
    if not checkpoint.is_file():
        raise DatasetError(
            f"medium-replay reads the replay buffer of the online run {run_dir}, but {checkpoint} does not exist on this machine. "
            f"Train that run again here from the policy record's recipe (`advrl data make advrl/{env}/medium-replay-v0 --retrain`; "
            f"{step} online steps on one core), or pass a copy of the run (`--run RUN_DIR`)."
        )
    try:
        state = load_checkpoint(checkpoint)
    except CheckpointError as err:
        raise DatasetError(str(err)) from err
    replay = state.get("replay")
    if not replay:
        raise DatasetError(f"{checkpoint} holds no replay buffer: medium-replay needs an `advrl online` run.")
    stored, added = int(replay["size"]), int(state["step"])
    if added > stored:
        raise DatasetError(
            f"The replay buffer of {run_dir} wrapped around ({added} steps into {stored} slots): its first transitions "
            "are gone. medium-replay needs a run with online.buffer_size >= online.steps."
        )
    if stored < step:
        raise DatasetError(f"The checkpoint of {run_dir} is at step {added}, before the medium policy's step {step}.")
    n = step if size is None else int(size)
    if n > step:
        raise DatasetError(f"medium-replay of {run_dir} has {step} transitions up to the medium step; --size {n} is larger.")
    columns = {key: np.asarray(value[:n].numpy()) for key, value in replay["columns"].items()}
    episodes = split_replay(columns)
    source = {
        "replay": True,
        "proportion": 1.0,
        "transitions": n,
        "episodes": [0, len(episodes)],
        "run": str(run_dir.resolve()),
        "checkpoint": str(checkpoint.resolve()),
        "medium_step": step,
        "policy_record": record,
    }
    return episodes, [source]


def _load_step(snapshot: Path) -> int:
    from advrl.learner.checkpoint import CheckpointError, read_error, safe_load

    try:
        return int(safe_load(snapshot, "Checkpoint")["step"])
    except CheckpointError as err:
        raise DatasetError(str(err)) from None
    except Exception as err:
        raise DatasetError(f"{snapshot} cannot be read ({read_error(err)}): not an advrl checkpoint or snapshot.") from err


def split_replay(columns: dict[str, np.ndarray]) -> list:
    """Replay rows (insertion order) -> episode buffers. An episode ends at a terminal, a
    truncation, a break in continuity (a run resumed by an older advrl restarted its episode)
    or the last row."""
    from minari.data_collector import EpisodeBuffer

    obs, next_obs = columns["observation"], columns["next.observation"]
    terminated = columns["terminated"].astype(bool)
    truncated = columns["truncated"].astype(bool)
    n = len(terminated)
    broken = np.zeros(n, dtype=bool)
    if n > 1:
        broken[:-1] = np.any(next_obs[:-1] != obs[1:], axis=1)
    broken[-1] = True
    ends = np.flatnonzero(terminated | truncated | broken)
    episodes, start = [], 0
    for end in ends:
        stop = end + 1
        terms = terminated[start:stop]
        truncs = (truncated[start:stop] | broken[start:stop]) & ~terms
        episodes.append(
            EpisodeBuffer(
                id=len(episodes),
                observations=np.concatenate([obs[start:stop], next_obs[end : end + 1]]).astype(np.float64),
                actions=columns["action"][start:stop].astype(np.float32),
                rewards=[float(r) for r in columns["reward"][start:stop]],
                terminations=[bool(t) for t in terms],
                truncations=[bool(t) for t in truncs],
            )
        )
        start = stop
    return episodes
