"""Import transitions kept as arrays, in D4RL's layout, as a local Minari dataset.

Data that was not collected with Minari (a D4RL ``.hdf5`` file, a robot's log saved with
``numpy.savez``) becomes a dataset advrl trains on like any other, with a build record
(``advrl.json``: the source file's SHA-256, the command, the content fingerprint training
checks). The arrays, one row per transition:

==================== ============ ========================================================
``observations``     [N, obs]     required
``actions``          [N, act]     required; within ``[-max_action, max_action]``
``rewards``          [N]          required
``terminals``        [N]          required; the episode ended in a terminal state
``timeouts``         [N]          optional; the episode was cut (time limit), not terminal
``next_observations`` [N, obs]    optional; without it the next observation is the next row
==================== ============ ========================================================

An episode ends at a terminal or a timeout row, and at the last row. Without
``next_observations`` (D4RL's raw files) the row after an episode's last transition belongs to
the next episode, so (as D4RL's ``qlearning_dataset`` does) a cut episode's last transition is
dropped, its successor being unknown; a terminal transition is kept, with its own observation
standing in for the successor that the TD target masks out. The record counts what was dropped.

Without ``--env`` the dataset has no evaluation environment: train it with
``eval.episodes=0`` (or name one with ``eval.env``). Only numeric arrays are read
(``numpy.load(allow_pickle=False)``; HDF5 datasets through h5py): a file cannot run code.
"""

from __future__ import annotations

import os
import shlex
import time
import warnings
from pathlib import Path

import numpy as np

from advrl.data.dataset import DatasetError

REQUIRED = ("observations", "actions", "rewards", "terminals")
OPTIONAL = ("timeouts", "next_observations")
SUFFIXES = {".npz": "npz", ".hdf5": "hdf5", ".h5": "hdf5"}
ACTION_TOLERANCE = 1e-6  # float32 rounding of a bound such as 1.0


def read_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The D4RL keys of ``path`` (``.npz``, ``.hdf5`` or ``.h5``) as numeric arrays."""
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DatasetError(f"{path} is neither .npz nor .hdf5/.h5: save the arrays with numpy.savez or h5py.")
    if not path.is_file():
        raise DatasetError(f"{path} does not exist.")
    try:
        arrays = _read_npz(path) if kind == "npz" else _read_hdf5(path)
    except DatasetError:
        raise
    except ValueError as err:
        if "pickle" not in str(err):
            raise DatasetError(f"{path} cannot be read as {kind} ({err}).") from err
        # not a zip archive: numpy would unpickle it, which can run code
        raise DatasetError(f"{path} is not an .npz archive of arrays (numpy.savez writes one); advrl does not unpickle files.") from None
    except Exception as err:  # a truncated or foreign file: zipfile, OSError, h5py errors
        raise DatasetError(f"{path} cannot be read as {kind} ({type(err).__name__}: {err}).") from err
    missing = [key for key in REQUIRED if key not in arrays]
    if missing:
        raise DatasetError(
            f"{path} lacks {', '.join(missing)}: the arrays are D4RL's ({', '.join(REQUIRED)}; "
            f"optionally {', '.join(OPTIONAL)}), one row per transition."
        )
    return arrays


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        arrays = {}
        for key in (*REQUIRED, *OPTIONAL):
            if key in archive.files:
                try:
                    arrays[key] = np.asarray(archive[key])
                except ValueError as err:  # an object array would need pickle: refused, never run
                    raise DatasetError(f"{path}: {key} is not a numeric array ({err}); save plain numbers.") from None
        return arrays


def _read_hdf5(path: Path) -> dict[str, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as handle:
        return {key: np.asarray(handle[key][()]) for key in (*REQUIRED, *OPTIONAL) if isinstance(handle.get(key), h5py.Dataset)}


def checked_arrays(arrays: dict[str, np.ndarray], max_action: float, source: str) -> dict[str, np.ndarray]:
    """Shapes, dtypes, finiteness and the action bound, each problem named with its key."""
    n = len(arrays["observations"]) if arrays["observations"].ndim else 0
    if n == 0:
        raise DatasetError(f"{source} holds no transitions.")
    out = {}
    for key, value in arrays.items():
        if value.dtype.kind not in "biuf":
            raise DatasetError(f"{source}: {key} has dtype {value.dtype}; advrl reads numbers (float, int or bool).")
        if value.ndim == 0:
            raise DatasetError(f"{source}: {key} is a single number; save one row per transition.")
        if len(value) != n:
            raise DatasetError(f"{source}: {key} has {len(value)} rows, observations {n}; one row per transition in every array.")
        out[key] = value
    for key, dims in (("observations", 2), ("actions", 2), ("next_observations", 2), ("rewards", 1), ("terminals", 1), ("timeouts", 1)):
        if key not in out:
            continue
        value = out[key]
        if dims == 1 and value.shape[1:] == (1,):  # [N, 1] columns, as some loggers write them
            value = value.reshape(n)
        if value.ndim != dims:
            raise DatasetError(f"{source}: {key} has shape {out[key].shape}; expected {'[N, dim]' if dims == 2 else '[N]'}.")
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise DatasetError(f"{source}: {key} holds NaN or infinite values; clean them before importing.")
        out[key] = value
    if "next_observations" in out and out["next_observations"].shape != out["observations"].shape:
        raise DatasetError(f"{source}: next_observations has shape {out['next_observations'].shape}, observations {out['observations'].shape}.")
    reach = float(np.max(np.abs(out["actions"])))
    if reach > max_action + ACTION_TOLERANCE:
        raise DatasetError(
            f"{source}: actions reach {reach:g}, beyond max_action {max_action:g}; give the bound of the action "
            "space with --max-action (advrl's actors act in [-max_action, max_action])."
        )
    return out


def split_episodes(arrays: dict[str, np.ndarray]) -> tuple[list, int]:
    """Minari episode buffers, and how many transitions were dropped (cut episodes' last ones,
    when the file has no next_observations)."""
    from minari.data_collector import EpisodeBuffer

    n = len(arrays["observations"])
    terminals = arrays["terminals"].astype(bool)
    timeouts = arrays["timeouts"].astype(bool) if "timeouts" in arrays else np.zeros(n, dtype=bool)
    ends = np.flatnonzero(terminals | timeouts)
    if not len(ends) or ends[-1] != n - 1:
        ends = np.append(ends, n - 1)
    observations, following = arrays["observations"], arrays.get("next_observations")
    episodes, dropped, start = [], 0, 0
    for end in ends.tolist():
        stop, terminal = end + 1, bool(terminals[end])
        if following is not None:
            last = following[end]
        elif terminal:
            last = observations[end]  # masked by the termination: any finite stand-in computes the same
        else:
            stop, last, dropped = end, observations[end], dropped + 1  # row end's successor is unknown
        if stop > start:
            episodes.append(
                EpisodeBuffer(
                    id=len(episodes),
                    observations=np.concatenate([observations[start:stop], last[None]]).astype(np.float32),
                    actions=arrays["actions"][start:stop].astype(np.float32),
                    rewards=arrays["rewards"][start:stop].astype(np.float64).tolist(),
                    terminations=[False] * (stop - start - 1) + [terminal],
                    truncations=[False] * (stop - start - 1) + [not terminal],
                )
            )
        start = end + 1
    if not episodes:
        raise DatasetError("No transition is left once each cut episode's last one is dropped; add next_observations.")
    return episodes, dropped


def import_arrays(
    path: str | os.PathLike,
    new_id: str,
    env: str | None = None,
    max_action: float | None = None,
    ref_min: float | None = None,
    ref_max: float | None = None,
) -> str:
    """Write ``path``'s transitions as the local Minari dataset ``new_id``; returns its path.

    ``env`` (a Gymnasium id) is the evaluation environment, checked against the arrays' sizes;
    ``max_action`` defaults to its action bound, else 1.0. The reference returns of the
    normalised score default to D4RL's for the environments advrl builds datasets of.
    """
    from advrl.data import catalog
    from advrl.data.collect import check_new_id, refuse_existing, sha256_file, write_minari_dataset

    started = time.perf_counter()
    check_new_id(new_id, "mylab/robot-pick-v0")
    refuse_existing(new_id)
    arrays = read_arrays(path)
    spaces, env_spec, bound, refs = _environment(env, max_action, arrays)
    arrays = checked_arrays(arrays, bound, str(path))
    episodes, dropped = split_episodes(arrays)
    ref_min = refs[0] if ref_min is None else ref_min
    ref_max = refs[1] if ref_max is None else ref_max
    size = sum(len(e.rewards) for e in episodes)
    command = ["advrl", "data", "import", str(path), "--id", new_id]
    command += ["--env", env] if env else []
    command += ["--max-action", repr(bound)]
    command += [f"--ref-{k}={v!r}" for k, v in (("min", ref_min), ("max", ref_max)) if v is not None]
    source = {"file": str(Path(path).resolve()), "sha256": sha256_file(path), "rows": len(arrays["observations"]),
              "transitions": size, "dropped_transitions": dropped, "next_observations": "next_observations" in arrays,
              "proportion": 1.0, "episodes": [0, len(episodes)]}
    record = catalog.dataset_record(new_id, env, episodes, [source], None, size, kind="import", command=shlex.join(command))
    returns = record["returns"]
    description = (
        f"{new_id}: {size} transitions in {len(episodes)} episodes imported from {Path(path).name}"
        f"{f' ({env})' if env else ' (no evaluation environment)'}; episode return min/median/max "
        f"{returns['min']:.1f}/{returns['median']:.1f}/{returns['max']:.1f}. Build record in advrl.json beside data/."
    )
    with warnings.catch_warnings():
        # without an environment minari warns twice that it has none: the description says so once
        warnings.filterwarnings("ignore", message=".*(eval_env. is set to None|env_spec is None)", category=UserWarning)
        return write_minari_dataset(new_id, episodes, env_spec, ref_min, ref_max, description, algorithm_name="advrl import",
                                    record=record, started=started, spaces=spaces)


def _environment(env: str | None, max_action: float | None, arrays: dict[str, np.ndarray]):
    """(observation and action spaces, env spec, action bound, reference returns)."""
    import gymnasium as gym

    from advrl.data import catalog

    obs_dim, act_dim = _width(arrays["observations"]), _width(arrays["actions"])
    if env is None:
        bound = 1.0 if max_action is None else float(max_action)
        if not bound > 0:
            raise DatasetError(f"--max-action must be positive, got {max_action!r}.")
        spaces = (gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32), gym.spaces.Box(-bound, bound, (act_dim,), np.float32))
        return spaces, None, bound, (None, None)
    try:
        spec = gym.spec(env)
        probe = gym.make(env)
    except Exception as err:  # gymnasium's NameNotFound, VersionNotFound, missing dependencies
        raise DatasetError(f"--env {env}: {type(err).__name__}: {err}") from None
    obs_space, act_space = probe.observation_space, probe.action_space
    probe.close()
    if (obs_space.shape, act_space.shape) != ((obs_dim,), (act_dim,)):
        raise DatasetError(
            f"--env {env} observes {obs_space.shape} and acts {act_space.shape}; the arrays have {obs_dim} observation "
            f"and {act_dim} action columns. Name the environment the data came from."
        )
    bound = float(np.max(np.abs(act_space.high))) if max_action is None else float(max_action)
    refs = next(((lo, hi) for env_id, lo, hi in catalog.ENVS.values() if env_id == env), (None, None))
    return None, spec, bound, refs  # minari reads the spaces from the spec


def _width(array: np.ndarray) -> int:
    return int(array.shape[1]) if array.ndim == 2 else 1
