"""Behaviour policies of advrl's locally built datasets.

A policy lives at ``<root>/<env>/<level>.pt`` (level ``medium`` or ``expert``; ``random``
needs no file) with a record ``<root>/<env>/<level>.json`` saying where it came from (the
online run, its seed and step, the command that trained it) and how good it is (return
mean/std over 20 evaluation episodes, acting as datasets roll it out). ``<root>`` is ``$ADVRL_POLICIES_PATH`` if set, else
the package folder ``advrl/policies``.

The ``.pt`` file is small and self-contained: the actor's registry name and config, its
observation/action shapes, the observation normaliser of the run and a CPU float32
state_dict without target networks. It loads with ``torch.load(weights_only=True)``.

Levels follow D4RL: ``expert`` is the best snapshot of an online run, ``medium`` the
snapshot whose evaluation return is closest to one third of the best one's
(:func:`select_snapshot`).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from advrl.data.collect import sha256_file
from advrl.data.dataset import DatasetError

LEVELS = ("random", "medium", "expert")
FILE_LEVELS = ("medium", "expert")
FORMAT = "advrl-policy-v1"
ENV_VAR = "ADVRL_POLICIES_PATH"
TRAIN_RECIPE = "advrl:online/sac.yaml"  # the packaged recipe: the hint works from any folder
_SNAPSHOT = re.compile(r"^step(\d+)\.pt$")


class PolicyError(DatasetError):
    """A behaviour policy that is missing, malformed or does not fit its environment."""


# ---- where policies live ----------------------------------------------------------------
def policies_root(root: str | os.PathLike | None = None) -> Path:
    if root is not None:
        return Path(root)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return Path(__file__).resolve().parent.parent / "policies"


def _check(env: str, level: str) -> str:
    from advrl.data.catalog import ENVS

    if env not in ENVS:
        raise PolicyError(f"Unknown environment {env!r} for behaviour policies; advrl knows {', '.join(ENVS)}.")
    if level not in LEVELS:
        raise PolicyError(f"Unknown policy level {level!r}; levels are {', '.join(LEVELS)}.")
    return ENVS[env][0]


def policy_path(env: str, level: str, root=None) -> Path:
    return policies_root(root) / env / f"{level}.pt"


def record_path(env: str, level: str, root=None) -> Path:
    return policies_root(root) / env / f"{level}.json"


def has(env: str, level: str, root=None) -> bool:
    """Whether ``level`` can be rolled out for ``env`` here (its .pt and .json both exist)."""
    _check(env, level)
    return level == "random" or (policy_path(env, level, root).is_file() and record_path(env, level, root).is_file())


def available(env: str, root=None) -> list[str]:
    """The levels that can be rolled out for ``env`` here (``random`` always)."""
    return [level for level in LEVELS if has(env, level, root)]


def read_record(env: str, level: str, root=None) -> dict:
    """The JSON record of a level (``random`` gets a synthetic one)."""
    env_id = _check(env, level)
    if level == "random":
        return {"env": env, "env_id": env_id, "level": "random", "policy": "uniform random actions in the action box"}
    path = record_path(env, level, root)
    if not has(env, level, root):
        raise missing_policy_error(env, level, root)
    with open(path) as handle:
        return json.load(handle)


def missing_policy_error(env: str, level: str, root=None) -> PolicyError:
    from advrl.data.catalog import ENVS

    env_id = ENVS[env][0]
    pick = " --pick-snapshot" if level in FILE_LEVELS else ""
    return PolicyError(
        f"No {level} behaviour policy for {env} yet ({policy_path(env, level, root)} and its .json record are not both there). "
        f"Train it with `advrl online {TRAIN_RECIPE} online.env={env_id}` and export it with "
        f"`advrl data export-policy RUN_DIR --env {env} --level {level}{pick}` "
        f"(or set {ENV_VAR} to a folder that holds {env}/{level}.pt)."
    )


# ---- loading ----------------------------------------------------------------------------
def load_policy(env: str, level: str, rng: np.random.Generator | None = None, root=None):
    """A callable ``obs [obs_dim] or [N, obs_dim] -> action`` (numpy float32).

    ``random`` draws uniform actions from ``rng`` (required, so the caller owns the seed);
    ``medium``/``expert`` use the stored actor on the CPU: a stochastic actor samples its
    actions with noise from ``rng`` when one is given (as D4RL's SAC behaviour policies did),
    otherwise every actor acts deterministically.
    """
    env_id = _check(env, level)
    if level == "random":
        if rng is None:
            raise PolicyError(
                "The random policy needs a seeded numpy Generator: load_policy(env, 'random', rng=np.random.default_rng(seed))."
            )
        import gymnasium as gym

        from advrl.data.collect import uniform_policy

        probe = gym.make(env_id)
        space = probe.action_space
        probe.close()
        return uniform_policy(space, rng)
    if not has(env, level, root):
        raise missing_policy_error(env, level, root)
    return policy_from_file(policy_path(env, level, root), rng)


def policy_from_file(path: str | os.PathLike, rng: np.random.Generator | None = None):
    """Build the policy stored in one exported ``.pt`` file: deterministic, or sampling with
    standard-normal noise drawn from ``rng`` if given and the actor is stochastic
    (``act_with_noise``). ``policy.sampled`` says which."""
    import torch

    import advrl
    from advrl.component import DataSpec
    from advrl.learner.checkpoint import UnsafeFileError, read_error, safe_load

    try:
        state = safe_load(path, "Behaviour policy")
    except UnsafeFileError as err:
        raise PolicyError(str(err)) from None
    except Exception as err:
        raise PolicyError(f"Behaviour policy {path} cannot be read ({read_error(err)}); export it again.") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise PolicyError(
            f"{path} is not an advrl behaviour policy (format {FORMAT}); export it with `advrl data export-policy`."
        )
    spec = DataSpec(**state["spec"])
    try:
        actor = advrl.make("actor", state["actor"]["name"], spec=spec, **state["actor"]["config"])
        actor.load_state_dict(state["state_dict"])
    except Exception as err:
        raise PolicyError(f"Behaviour policy {path} does not rebuild ({type(err).__name__}: {err}); export it again.") from err
    actor.eval()
    mean = state["normalizer"]["mean"].double().numpy()
    std = state["normalizer"]["std"].double().numpy()

    sampled = rng is not None and hasattr(actor, "act_with_noise")

    @torch.no_grad()
    def policy(obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        normalized = torch.as_tensor(((obs - mean) / std).astype(np.float32))
        if sampled:
            shape = normalized.shape[:-1] + (spec.action_dim,)
            noise = torch.as_tensor(rng.standard_normal(shape).astype(np.float32))
            return actor.act_with_noise(normalized, noise).numpy().astype(np.float32)
        return actor.act(normalized).numpy().astype(np.float32)

    policy.actor = actor
    policy.sampled = sampled
    return policy


# ---- snapshots of an online run ---------------------------------------------------------
def list_snapshots(run_dir: str | os.PathLike) -> list[dict]:
    """The run's actor snapshots: ``{"path", "step", "return_mean"}`` sorted by step."""
    run_dir = Path(run_dir)
    folder = run_dir / "snapshots"
    if not folder.is_dir():
        raise PolicyError(
            f"{run_dir} has no snapshots/ folder: snapshots come from `advrl online` runs with online.snapshot_every > 0."
        )
    rows = []
    for path in sorted(folder.iterdir()):
        if not _SNAPSHOT.match(path.name):
            continue
        snap = _load_snapshot(path)
        rows.append({"path": path, "step": int(snap["step"]), "return_mean": float(snap["evaluation"]["return_mean"])})
    if not rows:
        raise PolicyError(f"{folder} holds no step*.pt snapshots yet; let the online run reach its first snapshot.")
    return sorted(rows, key=lambda row: row["step"])


def select_snapshot(run_dir: str | os.PathLike, level: str) -> Path:
    """D4RL's levels: ``expert`` = the best snapshot by evaluation return; ``medium`` = the
    snapshot whose return is closest to one third of the best one's (earliest on ties)."""
    rows = list_snapshots(run_dir)
    best = max(rows, key=lambda row: (row["return_mean"], -row["step"]))
    if level == "expert":
        return best["path"]
    if level == "medium":
        target = best["return_mean"] / 3.0
        return min(rows, key=lambda row: (abs(row["return_mean"] - target), row["step"]))["path"]
    raise PolicyError(f"Snapshots are picked for levels medium and expert, not {level!r}.")


def _load_snapshot(path: Path) -> dict:
    from advrl.learner.checkpoint import UnsafeFileError, read_error, safe_load

    try:
        snap = safe_load(path, "Snapshot")
    except UnsafeFileError as err:
        raise PolicyError(str(err)) from None
    except Exception as err:
        raise PolicyError(f"Snapshot {path} is corrupt or incomplete ({read_error(err)}).") from err
    if not isinstance(snap, dict) or "actor" not in snap or "step" not in snap or "evaluation" not in snap:
        raise PolicyError(f"{path} is not an advrl online snapshot (needs step, actor, evaluation).")
    return snap


# ---- export -----------------------------------------------------------------------------
def export_policy(
    source: str | os.PathLike,
    env: str,
    level: str,
    episodes: int = 20,
    root=None,
    pick_snapshot: bool = False,
    eval_seed: int = 0,
    command: str | None = None,
    candidates: int = 1,
) -> dict:
    """Export an online run's actor as the ``level`` behaviour policy of ``env``.

    ``source`` is a snapshot file (``RUN/snapshots/stepNNNNNNNN.pt``) or a run directory: its
    latest actor (``checkpoints/last.pt``), or with ``pick_snapshot`` the snapshot D4RL's rule
    picks for ``level`` (:func:`select_snapshot`). The actor is evaluated for ``episodes``
    episodes (reset seeds ``eval_seed + i``) and written with its record; returns the record.

    An expert picked from snapshots is the best of one noisy evaluation (the online run's, a few
    episodes); ``candidates > 1`` evaluates that many of the best snapshots again with
    ``episodes`` episodes each and keeps the best (the record lists all of them).
    """
    if pick_snapshot and level == "expert" and candidates > 1:
        return _export_best_snapshot(Path(source), env, episodes, root, eval_seed, command, candidates)
    import torch

    env_id = _check(env, level)
    if level not in FILE_LEVELS:
        raise PolicyError(f"Only levels {', '.join(FILE_LEVELS)} are exported; 'random' needs no file.")
    if episodes < 1:
        raise PolicyError(f"Evaluate the policy on at least one episode (got episodes={episodes}).")
    source, run_dir = _resolve_source(Path(source), pick_snapshot, level)
    recipe = _run_recipe(run_dir, env, env_id)
    saved = _saved_actor(source, run_dir, recipe)
    name, entry, spec, state_dict = _rebuild_actor(saved, recipe, run_dir / "recipe.yaml", source, env_id)
    normalizer = saved["normalizer"] or {"mean": torch.zeros(spec.obs_dim), "std": torch.ones(spec.obs_dim)}
    payload = {
        "format": FORMAT,
        "env": env,
        "env_id": env_id,
        "level": level,
        "actor": {"name": name, "config": entry},
        "spec": {"obs_dim": spec.obs_dim, "action_dim": spec.action_dim, "max_action": spec.max_action},
        "normalizer": {k: v.detach().cpu().to(torch.float32).clone() for k, v in normalizer.items()},
        "state_dict": state_dict,
    }
    folder = policies_root(root) / env
    folder.mkdir(parents=True, exist_ok=True)
    pt_tmp = _temporary(folder, f"{level}.pt")
    torch.save(payload, pt_tmp)
    try:
        record = {
            "env": env,
            "env_id": env_id,
            "level": level,
            **_evaluation_fields(pt_tmp, env, level, env_id, spec, episodes, eval_seed),
            "seed": int(recipe.get("seed", 0)),
            "steps": saved["step"],
            **_provenance_fields(recipe, run_dir, source, saved["evaluation"], name, entry),
            "export_command": command
            or shlex.join(
                ["advrl", "data", "export-policy", str(source), "--env", env, "--level", level, "--episodes", str(episodes)]
            ),
            "sha256": sha256_file(pt_tmp),
            "exported": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        json_tmp = _temporary(folder, f"{level}.json")
        json_tmp.write_text(json.dumps(record, indent=2) + "\n")
        _install(pt_tmp, json_tmp, env, level, root)
    finally:
        for tmp in folder.glob(f".{level}.*.tmp"):
            tmp.unlink(missing_ok=True)
    return record


def _resolve_source(source: Path, pick_snapshot: bool, level: str) -> tuple[Path, Path]:
    """The snapshot file or run directory to export from, and its run directory."""
    if pick_snapshot:
        if not source.is_dir():
            raise PolicyError(f"--pick-snapshot needs a run directory, not the file {source}.")
        source = select_snapshot(source, level)
    if source.is_file():
        return source, source.parent.parent
    if source.is_dir():
        return source, source
    raise PolicyError(f"{source} is neither a snapshot file nor a run directory.")


def _run_recipe(run_dir: Path, env: str, env_id: str):
    """The run's saved recipe (the actor's config comes from it), trained on ``env_id``."""
    from omegaconf import OmegaConf

    recipe_file = run_dir / "recipe.yaml"
    if not recipe_file.is_file():
        raise PolicyError(f"{run_dir} is not an advrl run directory (no recipe.yaml); the actor's config comes from it.")
    recipe = OmegaConf.load(recipe_file)
    trained_env = OmegaConf.select(recipe, "online.env")
    if trained_env is not None and trained_env != env_id:
        raise PolicyError(f"The run {run_dir} trained on {trained_env}, not {env_id} ({env}); pass the --env it was trained on.")
    return recipe


def _saved_actor(source: Path, run_dir: Path, recipe) -> dict:
    """The actor's weights, slot and step from a snapshot or the run's last checkpoint."""
    from omegaconf import OmegaConf

    default_slot = OmegaConf.select(recipe, "eval.policy", default="actor")
    if source.is_file():
        snap = _load_snapshot(source)
        # online runs act on raw observations: a snapshot carries no normaliser
        return {"state": snap["actor"], "step": int(snap["step"]), "evaluation": snap.get("evaluation"),
                "slot": snap.get("slot") or default_slot, "normalizer": None}
    from advrl.learner.checkpoint import load_checkpoint
    from advrl.learner.trainer import CHECKPOINT

    state = load_checkpoint(run_dir / CHECKPOINT)
    if default_slot not in state["components"]:
        raise PolicyError(f"The checkpoint of {run_dir} has no component {default_slot!r} (the recipe's eval.policy).")
    return {"state": state["components"][default_slot], "step": int(state["step"]), "evaluation": None,
            "slot": default_slot, "normalizer": state.get("normalizer")}


def _rebuild_actor(saved: dict, recipe, recipe_file: Path, source: Path, env_id: str):
    """The actor's registry name, config and data spec, and its CPU float32 weights without
    target copies, checked by loading them into the actor the recipe builds."""
    import gymnasium as gym
    import torch
    from omegaconf import OmegaConf

    import advrl
    from advrl.component import DataSpec

    slot = saved["slot"]
    if slot not in recipe.get("components", {}):
        raise PolicyError(f"{recipe_file} has no components.{slot}: cannot rebuild the actor.")
    entry = OmegaConf.to_container(recipe.components[slot], resolve=True)
    name = entry.pop("name")
    entry.pop("kind", None)
    if "target" in entry:
        entry["target"] = False  # acting never uses the target copy
    probe = gym.make(env_id)
    high = np.asarray(probe.action_space.high, dtype=np.float64)
    spec = DataSpec(int(probe.observation_space.shape[0]), int(probe.action_space.shape[0]), float(high.flat[0]))
    probe.close()
    actor = advrl.make("actor", name, spec=spec, **entry)
    wanted = actor.state_dict()
    clean = {
        k: v.detach().cpu().to(torch.float32) if v.is_floating_point() else v.detach().cpu()
        for k, v in saved["state"].items()
        if k in wanted
    }
    missing = sorted(set(wanted) - set(clean))
    if missing:
        raise PolicyError(
            f"The actor state of {source} lacks {missing[:4]}: it does not match components.{slot} of {recipe_file}."
        )
    try:
        actor.load_state_dict(clean)
    except RuntimeError as err:
        raise PolicyError(f"The actor state of {source} does not fit {spec} ({err}).") from err
    return name, entry, spec, clean


def _evaluation_fields(policy_file: Path, env: str, level: str, env_id: str, spec, episodes: int, eval_seed: int) -> dict:
    """The exported file's returns, acting as datasets roll it out, and deterministically."""
    import gymnasium as gym

    from advrl.data import catalog
    from advrl.data.dataset import DatasetInfo
    from advrl.evaluation import evaluate

    _, ref_min, ref_max = catalog.ENVS[env]
    info = DatasetInfo(f"policy:{env}/{level}", spec.obs_dim, spec.action_dim, spec.max_action, 0, 0, ref_min, ref_max, env_id)
    deterministic = evaluate(policy_from_file(policy_file), lambda: gym.make(env_id), episodes, eval_seed, info)
    # Datasets roll a stochastic actor out with sampled actions: report the return they see.
    sampling = policy_from_file(policy_file, np.random.default_rng(eval_seed))
    result = evaluate(sampling, lambda: gym.make(env_id), episodes, eval_seed, info) if sampling.sampled else deterministic
    return {
        "acting": "sampled" if sampling.sampled else "deterministic",
        "return_mean": result["return_mean"],
        "return_std": result["return_std"],
        "score_mean": result.get("score_mean"),
        "length_mean": result["length_mean"],
        "deterministic_return_mean": deterministic["return_mean"],
        "deterministic_return_std": deterministic["return_std"],
        "eval_episodes": episodes,
        "eval_seed": eval_seed,
    }


def _provenance_fields(recipe, run_dir: Path, source: Path, snapshot_eval, name: str, entry: dict) -> dict:
    """Where the policy came from: the run, its software and recipe, the command that trains it."""
    from omegaconf import OmegaConf

    return {
        "source_run": str(run_dir.resolve()),
        # what the run trained with: a retrained run matches it only with the same (retrain_run)
        "training_software": _run_software(run_dir),
        "source": str(source.resolve()),
        "snapshot_evaluation": snapshot_eval,
        "actor": {"name": name, "config": entry},
        "command": f"advrl online {run_dir.resolve() / 'recipe.yaml'}",
        "train_steps": OmegaConf.select(recipe, "online.steps"),
        # the run itself stays outside the package: its recipe lets `retrain_run` recreate it
        "recipe": OmegaConf.to_container(recipe, resolve=True),
    }


def _export_best_snapshot(run_dir: Path, env, episodes, root, eval_seed, command, candidates: int) -> dict:
    import shutil

    if not run_dir.is_dir():
        raise PolicyError(f"--pick-snapshot needs a run directory, not the file {run_dir}.")
    rows = sorted(list_snapshots(run_dir), key=lambda row: (-row["return_mean"], row["step"]))[:candidates]
    trials = []
    with tempfile.TemporaryDirectory() as scratch:
        for i, row in enumerate(rows):
            record = export_policy(row["path"], env, "expert", episodes, Path(scratch) / str(i), eval_seed=eval_seed, command=command)
            trials.append((record, Path(scratch) / str(i) / env))
        best, folder = max(trials, key=lambda trial: (trial[0]["return_mean"], -trial[0]["steps"]))
        best = {
            **best,
            "candidates": [
                {"steps": r["steps"], "snapshot_return": r["snapshot_evaluation"]["return_mean"],
                 "return_mean": r["return_mean"], "return_std": r["return_std"]}
                for r, _ in trials
            ],
        }
        target = policies_root(root) / env
        target.mkdir(parents=True, exist_ok=True)
        pt_tmp, json_tmp = _temporary(target, "expert.pt"), _temporary(target, "expert.json")
        try:
            shutil.copyfile(folder / "expert.pt", pt_tmp)
            json_tmp.write_text(json.dumps(best, indent=2) + "\n")
            _install(pt_tmp, json_tmp, env, "expert", root)
        finally:
            pt_tmp.unlink(missing_ok=True)
            json_tmp.unlink(missing_ok=True)
    return best


def _install(pt_tmp: Path, json_tmp: Path, env: str, level: str, root) -> None:
    """Move a written policy and its record into place, each in one step (os.replace)."""
    for tmp, final in ((pt_tmp, policy_path(env, level, root)), (json_tmp, record_path(env, level, root))):
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these files are meant to be committed
        os.replace(tmp, final)


# ---- the online run behind a policy -----------------------------------------------------
def retrain_run(env: str, level: str, run_dir: str | os.PathLike, root=None, progress: bool = False) -> dict:
    """Train again, on this machine, the online run that produced ``level``'s policy, up to
    that policy's step; returns ``{"run_dir", "step", "reproduced"}``.

    medium-replay is that run's replay buffer, which is not committed (tens of MB); the policy
    record keeps the run's resolved recipe instead. Training runs on one CPU thread, where the
    online loop is deterministic, so with the same code and library versions the new buffer is
    the original's byte for byte. ``reproduced`` checks it where it can: the new actor at the
    policy's step against the committed policy's weights. Runs resumed by advrl before
    2026-12-03 restarted their episode on resume and cannot be reproduced; since then a resumed
    run continues its episode exactly (:mod:`advrl.learner.env_state`).
    An interrupted retraining resumes from its checkpoint.
    """
    import torch
    from omegaconf import OmegaConf

    from advrl.learner import rundir
    from advrl.learner.online import resume_online, train_online
    from advrl.recipe import validate

    record = read_record(env, level, root)
    if not isinstance(record.get("recipe"), dict):
        raise PolicyError(
            f"The {level} record of {env} ({record_path(env, level, root)}) keeps no recipe of its online run, "
            "so the run cannot be trained again here; export the policy again with this advrl version."
        )
    step = int(record["steps"])
    # through today's schema: a record exported by an older advrl lacks sections added since
    # (e.g. ``log``), which take their defaults
    recipe = validate(OmegaConf.create(record["recipe"]))
    recipe.online.steps = step  # the run's prefix up to the policy; nothing in the loop depends on the total
    run_dir = Path(run_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if rundir.resumable(run_dir):  # also a retraining stopped before its first checkpoint
            resume_online(run_dir, progress=progress)
        else:
            train_online(recipe, run_dir=run_dir, progress=progress)
    finally:
        torch.set_num_threads(threads)
    snapshot = run_dir / "snapshots" / f"step{step:08d}.pt"
    reproduced = None
    if snapshot.is_file():
        from advrl.learner.checkpoint import safe_load

        committed = safe_load(policy_path(env, level, root), "Behaviour policy")["state_dict"]
        retrained = _load_snapshot(snapshot)["actor"]
        reproduced = committed.keys() <= retrained.keys() and all(torch.equal(v, retrained[k]) for k, v in committed.items())
    return {"run_dir": str(run_dir), "step": step, "reproduced": reproduced}


def _run_software(run_dir: Path) -> dict | None:
    """The software record a run wrote when it started (None for runs older than that record)."""
    from advrl.learner.trainer import SOFTWARE_FILE

    path = Path(run_dir) / SOFTWARE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def not_reproduced_warning(env: str, level: str, run_dir: str | os.PathLike, root=None) -> str:
    """What it means that a retrained run did not reproduce ``level``'s policy, and what differs
    between the software and processor the original trained with and those of the retraining."""
    from advrl import provenance

    record = read_record(env, level, root)
    message = (
        f"warning: the retrained run in {run_dir} is not the run behind the committed {env} {level} policy, so "
        "a dataset built from it holds other episodes (another content fingerprint) than builds from the original; "
        "runs started on those builds will not resume on this one."
    )
    recorded = record.get("training_software")
    if recorded is None:
        return message + f" The policy record (exported {record.get('exported')}) predates software records: nothing to compare."
    changed = provenance.differences(recorded, _run_software(Path(run_dir)) or provenance.software())
    if not changed:
        return message + " Library versions and processor flags are those recorded, so the cause is not among them."
    return message + " Recorded -> now: " + "; ".join(changed) + "."


def _temporary(folder: Path, name: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{name.split('.')[0]}.", suffix=".tmp", dir=folder)
    os.close(fd)
    return Path(tmp)


def file_sha256(env: str, level: str, root=None) -> str | None:
    path = policy_path(env, level, root)
    return sha256_file(path) if path.is_file() else None
