"""Reopen a finished or interrupted run: its recipe, components and a policy for acting; its
noise-robustness evaluations, saved in the run (``eval_noise.jsonl``)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from advrl.compare import NOISE_FILE, find_runs, noise_key, read_noise
from advrl.component import Component, DataSpec
from advrl.data.dataset import DatasetInfo, ObservationNormalizer
from advrl.device import resolve_device
from advrl.evaluation import NOISE_SPACES, evaluate, make_env_factory, noise_std
from advrl.learner.assembly import build_components, compute_dtypes
from advrl.learner.checkpoint import CheckpointError, load_latest
from advrl.learner.trainer import CHECKPOINT, RECIPE_FILE, make_policy
from advrl.recipe import load_recipe


@dataclass
class Run:
    run_dir: Path
    recipe: DictConfig
    step: int
    components: dict[str, Component]
    normalizer: ObservationNormalizer
    info: DatasetInfo
    device: torch.device
    evaluations: list[dict] = field(default_factory=list)  # the run's evaluation history

    @property
    def actor(self) -> Component:
        return self.components[self.recipe.eval.policy]

    def policy(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic action(s) for raw observation(s), normalised as in training."""
        dtype = compute_dtypes(self.recipe, self.device)[self.recipe.eval.policy]  # as in training
        return make_policy(self.actor, self.normalizer, self.device, dtype)(obs)

    def torchrl_policy(self):
        """The deterministic policy as a torchrl ``Actor`` (``observation`` -> ``action``),
        raw observations in, for ``env.rollout`` and torchrl's collectors."""
        from advrl.torchrl_bridge import policy_module

        return policy_module(self.actor, self.normalizer, self.device)

    def torchrl_env(self):
        """The run's evaluation environment as a torchrl env (float32 observations)."""
        from advrl.torchrl_bridge import make_env

        return make_env(self.info, self.recipe.eval.env)

    def evaluation_seed(self, seed: int | None = None) -> int:
        return int(self.recipe.seed + self.recipe.eval.seed_offset if seed is None else seed)

    def evaluate(self, episodes: int | None = None, obs_noise: float = 0.0, seed: int | None = None,
                 noise_space: str = "raw") -> dict:
        """Mean and std of return (and normalised score) over ``episodes`` episodes, with
        Gaussian noise of std ``obs_noise`` on the observations, in ``noise_space`` (``raw``:
        the environment's observations, before standardisation; ``standardised``: in units of
        each dimension's dataset std; see :data:`advrl.evaluation.NOISE_SPACES`)."""
        cfg = self.recipe.eval
        factory = make_env_factory(self.info, cfg.env)
        scale = noise_std(obs_noise, noise_space, self.normalizer.std.cpu().numpy())
        return evaluate(self.policy, factory, episodes or cfg.episodes, self.evaluation_seed(seed), self.info, scale)

    def noise_results(self) -> list[dict]:
        """The noise evaluations saved in the run (:func:`read_noise_results`)."""
        return read_noise_results(self.run_dir)

    def evaluate_noise(self, levels: Iterable[float], episodes: int | None = None, seed: int | None = None,
                       noise_space: str = "raw", force: bool = False) -> list[dict]:
        """Evaluate the checkpoint at each noise level and append the records to the run's
        ``eval_noise.jsonl``; a level already evaluated with the same checkpoint step, space,
        episodes and seed is returned from there (``skipped: True``) unless ``force``."""
        if noise_space not in NOISE_SPACES:
            raise CheckpointError(f"noise space must be one of {', '.join(NOISE_SPACES)}, not {noise_space!r}.")
        episodes = int(episodes or self.recipe.eval.episodes)
        if episodes < 1:
            raise CheckpointError(f"{self.run_dir}'s recipe evaluates no episodes (eval.episodes=0): give --episodes N.")
        saved = {noise_key(r): r for r in self.noise_results()}
        results = []
        for level in levels:
            key = dict(step=self.step, obs_noise=float(level), noise_space=noise_space, episodes=episodes,
                       seed=self.evaluation_seed(seed))
            if not force and noise_key(key) in saved:
                results.append({**saved[noise_key(key)], "skipped": True})
                continue
            started = time.perf_counter()
            result = self.evaluate(episodes, key["obs_noise"], key["seed"], noise_space)
            record = {**key, **result, "seconds": round(time.perf_counter() - started, 2)}
            with open(self.run_dir / NOISE_FILE, "a") as handle:  # appended as it comes: a stop keeps what is done
                handle.write(json.dumps(record) + "\n")
            results.append({**record, "skipped": False})
        return results


def read_noise_results(run_dir: str | Path) -> list[dict]:
    """The records of ``RUN/eval_noise.jsonl`` (none when it does not exist); a line cut short
    by an interruption is skipped, and a record evaluated again with ``force`` replaces the
    earlier one (:func:`advrl.compare.read_noise`, which compare reads without torch)."""
    return read_noise(Path(run_dir))


def evaluate_runs(paths: Iterable[str | Path], levels: Iterable[float], episodes: int | None = None,
                  seed: int | None = None, noise_space: str = "raw", force: bool = False,
                  device: str = "cpu") -> dict[str, list[dict]]:
    """:meth:`Run.evaluate_noise` for every run at or below ``paths`` (run folders, or sweep and
    study folders above them, found as ``advrl compare`` finds them): run folder -> records.
    A run without a checkpoint yet is skipped with a warning when others are evaluated."""
    levels = [float(level) for level in levels]
    folders = [folder for path in paths for folder in find_runs(path)]
    results: dict[str, list[dict]] = {}
    for folder in folders:
        try:
            run = load_run(folder, device=device)
        except CheckpointError as err:
            if len(folders) == 1:
                raise
            print(f"advrl: warning: {folder} not evaluated: {err}", file=sys.stderr)
            continue
        results[str(folder)] = run.evaluate_noise(levels, episodes, seed, noise_space, force)
    return results



def load_run(run_dir: str | Path, device: str = "cpu") -> Run:
    run_dir = Path(run_dir)
    if not (run_dir / RECIPE_FILE).is_file():
        raise CheckpointError(f"{run_dir} is not an advrl run directory (no {RECIPE_FILE}).")
    recipe = load_recipe(run_dir / RECIPE_FILE, check_flow=False)  # its data flow was checked on its own data
    latest = load_latest((run_dir / CHECKPOINT).parent)  # previous.pt, with a warning, when last.pt is damaged
    if latest is None:
        raise CheckpointError(f"No checkpoint in {(run_dir / CHECKPOINT).parent}: the run saved none yet (nothing to load).")
    state = latest[0]
    info = DatasetInfo(**state["dataset_info"])
    components = build_components(recipe, DataSpec(**info.facts()))
    target = resolve_device(device)
    for name, component in components.items():
        component.load_state_dict(state["components"][name])
        component.to(target).eval()
    normalizer = ObservationNormalizer.from_state_dict(state["normalizer"])
    return Run(run_dir, recipe, state["step"], components, normalizer, info, target, list(state["evaluations"]))
