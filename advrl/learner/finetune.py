"""Offline-to-online fine-tuning: continue an offline run in its environment.

The offline run's components and optimiser states are loaded; the online loop of
:mod:`advrl.learner.online` then collects transitions into a buffer seeded with part of the
offline data (``online.offline_buffer``). Observations and rewards of online data go through
the offline run's normaliser and reward transform, so the networks see the same inputs.

Selectors cannot label online data (their inputs, dataset index or episode return, do not
exist for it), so their labels are computed once for the kept offline transitions and stored
as a buffer column; online transitions are fully trusted (1.0) — unlike SSAR's official
buffer, whose stale flags leave some online samples untrusted. Slots in ``online.freeze``
are no longer trained (nor is what they learn beyond their parameters: SSAR's threshold n,
see ``Component.freeze``), and ``online.anneal_slot``'s coefficient is scaled down as online
steps accumulate (SSAR: beta frozen, then linear (TD3+BC) or cosine (CQL) annealing).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from advrl.data.dataset import load_offline_data
from advrl.data.replay import ReplayBuffer
from advrl.learner import rundir
from advrl.learner.checkpoint import load_checkpoint, run_lock
from advrl.learner.online import OnlineTrainer
from advrl.learner.trainer import CHECKPOINT, RECIPE_FILE, RunResult
from advrl.recipe import RecipeError, apply_overrides, load_recipe, validate

BUFFER_MODES = ("top_k", "all", "half", "none")
ANNEALING = ("linear", "cosine", "none")


def anneal_factor(mode: str, online_step: int, steps: int) -> float:
    if mode == "none" or online_step <= 0:
        return 1.0
    progress = min(online_step / max(steps, 1), 1.0)
    if mode == "linear":
        return 1.0 - progress
    if mode == "cosine":
        return math.cos(progress * math.pi / 2)
    raise RecipeError(f"online.anneal must be one of {', '.join(ANNEALING)}, got {mode!r}.")


def selector_slots(recipe: DictConfig) -> list[str]:
    """Selector slots listed as terms: their labels become buffer columns online."""
    listed = {term for update in recipe.updates.values() for term in update.terms}
    return [slot for slot, entry in recipe.components.items() if entry.get("kind", slot) == "selector" and slot in listed]


def online_recipe(offline: DictConfig, overrides: list[str]) -> DictConfig:
    """The offline recipe, adapted: selectors leave the updates, frozen slots lose their optimisers."""
    recipe = validate(apply_overrides(offline, list(overrides)))
    cfg = recipe.online
    if cfg.offline_buffer not in BUFFER_MODES:
        raise RecipeError(f"online.offline_buffer must be one of {', '.join(BUFFER_MODES)}, got {cfg.offline_buffer!r}.")
    anneal_factor(cfg.anneal, 1, 1)  # validates the mode
    for slot in list(cfg.freeze) + ([cfg.anneal_slot] if cfg.anneal_slot else []):
        if slot not in recipe.components:
            raise RecipeError(f"online settings name slot {slot!r}, which the recipe does not have (slots: {', '.join(recipe.components)}).")
    selectors = selector_slots(recipe)
    updates = OmegaConf.to_container(recipe.updates, resolve=True)
    for name in list(updates):
        update = updates[name]
        update["terms"] = [t for t in update["terms"] if t not in selectors]
        for slot in cfg.freeze:
            update["optimize"].pop(slot, None)
        if not update["optimize"]:
            del updates[name]  # an update that trains nothing any more
    recipe.updates = OmegaConf.create(updates)
    return validate(recipe)


class FinetuneTrainer(OnlineTrainer):
    run_kind, resume_hint = "finetune", "advrl finetune --resume"

    def __init__(self, recipe: DictConfig, run_dir: Path, offline_dir: Path, offline_recipe: DictConfig, resume=False, progress=True):
        self.offline_dir = offline_dir
        self.offline_recipe = offline_recipe
        self.selector_keys = {}
        super().__init__(recipe, run_dir, resume=resume, progress=progress)
        if self.resumed_from is None:  # a new run, or one resumed before its first checkpoint
            self._start_from_offline()
        for slot in recipe.online.freeze:  # on a resume too: the flag is not in the checkpoint
            self.components[slot].freeze()

    # ---- data -------------------------------------------------------------------------------
    def _make_data(self) -> ReplayBuffer:
        recipe = self.recipe
        self.offline = load_offline_data(recipe.dataset, recipe.data, self.device)
        if recipe.online.env is None:
            spec = self.offline.info.eval_env_spec
            recipe.online.env = spec if isinstance(spec, str) and not spec.lstrip().startswith("{") else _env_id(spec)
        for slot in selector_slots(self.offline_recipe):
            self.selector_keys[slot] = str(self.offline_recipe.components[slot].get("out_key", "mask"))
        import gymnasium as gym

        self.env = gym.make(recipe.online.env)
        self.env.action_space.seed(recipe.seed)
        self._obs, _ = self.env.reset(seed=recipe.seed)
        self._episode_return, self._episode_length, self.episodes = 0.0, 0, 0
        mode = recipe.online.offline_buffer
        return ReplayBuffer(
            self._kept_offline_size() + recipe.online.steps,
            self.offline.info,
            self.device,
            normalizer=self.offline.normalizer,
            reward_fn=self.offline.reward_fn,
            extra_defaults={key: 1.0 for key in self.selector_keys.values()},
            offline_fraction=0.5 if mode == "half" else None,
        )

    def _preparation_data(self):
        return self.offline

    def _kept_offline_indices(self) -> torch.Tensor:
        data, cfg = self.offline.transitions, self.recipe.online
        if cfg.offline_buffer in ("all", "half"):
            return torch.arange(self.offline.size, device=self.device)
        if cfg.offline_buffer == "none":
            return torch.zeros(0, dtype=torch.long, device=self.device)
        episodes, returns = data["episode"], data["episode_return"]
        ids = torch.unique(episodes)
        per_episode = torch.zeros(int(ids.max()) + 1, device=returns.device).scatter_(0, episodes, returns)[ids]
        best = ids[torch.argsort(per_episode, descending=True)[: cfg.top_k]]
        return torch.nonzero(torch.isin(episodes, best)).squeeze(-1)

    def _kept_offline_size(self) -> int:
        return len(self._kept_offline_indices())

    @torch.no_grad()
    def _fill_offline_buffer(self) -> None:
        kept = self.offline.transitions[self._kept_offline_indices()]
        columns = ("observation", "action", "reward", "next.observation", "terminated", "truncated")
        rows = {key: kept[tuple(key.split("."))] if "." in key else kept[key] for key in columns}
        for slot, key in self.selector_keys.items():
            rows[key] = self.components[slot].compute(kept, 0)[key]
        self.data.extend(rows, offline=True)

    # ---- state ------------------------------------------------------------------------------
    def _start_from_offline(self) -> None:
        state = load_checkpoint(self.offline_dir / CHECKPOINT)
        for name, component in self.components.items():
            component.load_state_dict(state["components"][name])
        for update in self.updates:
            saved = state["updates"].get(update.name, {})
            for group in update.groups:
                if group.slot in saved:
                    group.optimizer.load_state_dict(saved[group.slot]["optimizer"])
        self._fill_offline_buffer()

    def _train_step(self, step, step_tensor, batch_size, logging) -> dict:
        cfg = self.recipe.online
        if cfg.anneal_slot is not None:
            online_step = step - cfg.learning_starts  # counts from 1 after the warm-up
            self.components[cfg.anneal_slot].set_scale(anneal_factor(cfg.anneal, online_step, cfg.anneal_steps))
        return super()._train_step(step, step_tensor, batch_size, logging)


def _env_id(spec) -> str:
    import gymnasium as gym

    if isinstance(spec, str):
        return gym.envs.registration.EnvSpec.from_json(spec).id
    return spec.id


def finetune(offline_run_dir, overrides=(), run_dir=None, progress: bool = True) -> RunResult:
    """Fine-tune an offline run online; returns the fine-tuning run's result."""
    offline_dir = Path(offline_run_dir)
    if not (offline_dir / RECIPE_FILE).is_file():
        raise RecipeError(f"{offline_dir} is not an advrl run directory (no {RECIPE_FILE}).")
    offline_recipe = load_recipe(offline_dir / RECIPE_FILE)
    recipe = online_recipe(offline_recipe, list(overrides))
    run_dir = Path(run_dir) if run_dir is not None else offline_dir / "finetune"
    with rundir.new_run(run_dir, FinetuneTrainer.run_kind, FinetuneTrainer.resume_hint) as start:
        (run_dir / "offline_run").write_text(str(offline_dir.resolve()))
        trainer = FinetuneTrainer(recipe, run_dir, offline_dir, offline_recipe, progress=progress)
        start.started()
        return trainer.fit()


def resume_finetune(run_dir, progress: bool = True) -> RunResult:
    run_dir = Path(run_dir)
    if not (run_dir / "offline_run").is_file() or not (run_dir / RECIPE_FILE).is_file():
        raise RecipeError(f"{run_dir} is not an advrl fine-tuning run (no offline_run or {RECIPE_FILE}).")
    offline_dir = Path((run_dir / "offline_run").read_text().strip())
    offline_recipe = load_recipe(offline_dir / RECIPE_FILE)
    recipe = load_recipe(run_dir / RECIPE_FILE, check_flow=False)  # reads the replay buffer's selector keys
    with run_lock(run_dir):
        return FinetuneTrainer(recipe, run_dir, offline_dir, offline_recipe, resume=True, progress=progress).fit()
