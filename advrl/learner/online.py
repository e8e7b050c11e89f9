"""Online off-policy training: the offline loop with an environment feeding a replay buffer.

Each environment step adds one transition, then (after ``online.learning_starts``) runs one
gradient step of the recipe's updates, exactly as offline. Used to train behaviour policies
for locally built datasets; :mod:`advrl.learner.finetune` extends it for offline-to-online.
"""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from omegaconf import DictConfig

from advrl.data import catalog
from advrl.data.dataset import DatasetInfo
from advrl.data.replay import ReplayBuffer
from advrl.learner import env_state, rundir
from advrl.learner.checkpoint import atomic_torch_save, run_lock
from advrl.learner.trainer import RECIPE_FILE, RunResult, Trainer, default_run_dir
from advrl.recipe import RecipeError, apply_overrides, load_recipe, validate


def env_info(env_id: str) -> DatasetInfo:
    """Shapes of an environment, with D4RL reference returns when advrl knows the env."""
    env = gym.make(env_id)
    obs_space, action_space = env.observation_space, env.action_space
    env.close()
    high = np.asarray(action_space.high, dtype=np.float64)
    refs = next(((lo, hi) for name, lo, hi in catalog.ENVS.values() if name == env_id), (None, None))
    return DatasetInfo(
        id=f"online:{env_id}",
        obs_dim=int(obs_space.shape[0]),
        action_dim=int(action_space.shape[0]),
        max_action=float(high.flat[0]),
        n_transitions=0,
        n_episodes=0,
        ref_min_score=refs[0],
        ref_max_score=refs[1],
        eval_env_spec=env_id,
    )


class OnlineTrainer(Trainer):
    run_kind, resume_hint = "online", "advrl online --resume"

    def _make_data(self) -> ReplayBuffer:
        cfg = self.recipe.online
        if cfg.env is None:
            raise RecipeError("Online training needs online.env (a Gymnasium id, e.g. online.env=Hopper-v5).")
        self.recipe.dataset.id = f"online:{cfg.env}"
        self.env = gym.make(cfg.env)
        self.env.action_space.seed(self.recipe.seed)
        self._obs, _ = self.env.reset(seed=self.recipe.seed)
        self._episode_return, self._episode_length, self.episodes = 0.0, 0, 0
        return ReplayBuffer(cfg.buffer_size, env_info(cfg.env), self.device)

    @property
    def total_steps(self) -> int:
        return int(self.recipe.online.steps)

    def _explore(self, step: int) -> np.ndarray:
        cfg, max_action = self.recipe.online, self.data.info.max_action
        if step <= cfg.learning_starts and cfg.random_warmup:
            return self.env.action_space.sample()
        raw = torch.as_tensor(np.asarray(self._obs, dtype=np.float32), device=self.device).unsqueeze(0)
        obs = self.data.normalizer(raw)
        with torch.no_grad():
            if hasattr(self.actor, "sample"):
                action = self.actor.sample(obs)[0][0].cpu().numpy()
            else:
                action = self.actor.act(obs)[0].cpu().numpy()
                if cfg.exploration_noise > 0:
                    action = action + np.random.normal(0.0, cfg.exploration_noise * max_action, size=action.shape)
        return np.clip(action, -max_action, max_action).astype(np.float32)

    def _train_step(self, step, step_tensor, batch_size, logging) -> dict:
        action = self._explore(step)
        next_obs, reward, terminated, truncated, _ = self.env.step(action)
        self.data.add(self._obs, action, reward, next_obs, terminated, truncated)
        self._episode_return += float(reward)
        self._episode_length += 1
        self._obs = next_obs
        scalars = {}
        if terminated or truncated:
            self.episodes += 1
            self.logger.log("episode", step, {"return": self._episode_return, "length": self._episode_length})
            self._obs, _ = self.env.reset()
            self._episode_return, self._episode_length = 0.0, 0
        if step > self.recipe.online.learning_starts:
            scalars = super()._train_step(step, step_tensor, batch_size, logging)
        return scalars

    def _after_evaluation(self, step: int, result: dict) -> None:
        every = self.recipe.online.snapshot_every
        if every and step % every == 0:
            state = {"step": step, "actor": self.actor.state_dict(), "evaluation": result, "slot": str(self.recipe.eval.policy)}
            atomic_torch_save(state, self.run_dir / "snapshots" / f"step{step:08d}.pt")

    def _extra_state(self) -> dict:
        episode = env_state.capture(self.env)
        if episode is not None:
            # a tensor (float64: the env's own numbers), not an ndarray: checkpoints load weights-only
            episode.update(obs=torch.as_tensor(np.array(self._obs)), ret=float(self._episode_return), length=int(self._episode_length))
        return {"replay": self.data.state_dict(), "episodes": self.episodes, "episode": episode}

    def _load_extra(self, state: dict) -> None:
        self.data.load_state_dict(state["replay"])
        self.episodes = state["episodes"]
        episode = state.get("episode")
        if episode is not None:  # continue the interrupted episode exactly
            env_state.restore(self.env, episode)
            self._obs, self._episode_return, self._episode_length = np.asarray(episode["obs"]), episode["ret"], episode["length"]
            return
        # an environment advrl cannot save (or an older checkpoint): a fresh episode, seeded by the step
        self._obs, _ = self.env.reset(seed=self.recipe.seed + self.step)
        self._episode_return, self._episode_length = 0.0, 0


def train_online(recipe, overrides=(), run_dir: str | Path | None = None, progress: bool = True) -> RunResult:
    if not isinstance(recipe, DictConfig):
        recipe = load_recipe(recipe, overrides)
    elif overrides:
        recipe = validate(apply_overrides(recipe, list(overrides)))
    recipe = recipe.copy()
    if run_dir is None:  # runs/<name>/<env>/seed<k>-<time>: the env stands where offline runs name the dataset
        offline_style = default_run_dir(recipe)
        run_dir = offline_style.parent.parent / re.sub(r"[^A-Za-z0-9_.-]", "-", str(recipe.online.env)) / offline_style.name
    with rundir.new_run(Path(run_dir), OnlineTrainer.run_kind, OnlineTrainer.resume_hint) as start:
        trainer = OnlineTrainer(recipe, Path(run_dir), resume=False, progress=progress)
        start.started()
        return trainer.fit()


def resume_online(run_dir: str | Path, progress: bool = True) -> RunResult:
    run_dir = Path(run_dir)
    rundir.check_resumable(run_dir, "advrl online")
    with run_lock(run_dir):
        return OnlineTrainer(load_recipe(run_dir / RECIPE_FILE), run_dir, resume=True, progress=progress).fit()
