"""Reopen a finished or interrupted run: its recipe, components and a policy for acting."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from advrl.component import Component, DataSpec
from advrl.data.dataset import DatasetInfo, ObservationNormalizer
from advrl.device import resolve_device
from advrl.evaluation import evaluate, make_env_factory
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

    def evaluate(self, episodes: int | None = None, obs_noise: float = 0.0, seed: int | None = None) -> dict:
        cfg = self.recipe.eval
        factory = make_env_factory(self.info, cfg.env)
        seed = self.recipe.seed + cfg.seed_offset if seed is None else seed
        return evaluate(self.policy, factory, episodes or cfg.episodes, seed, self.info, obs_noise)



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
