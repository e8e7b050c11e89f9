"""Training K seeds of a recipe in one process (``advrl train RECIPE seed=0,1,2 --vectorize``).

Every seed is a run of its own: a ``Trainer`` builds it (initialisation, preparation, run
folder, recipe, records) exactly as ``advrl train RECIPE seed=k`` would, and after training its
folder holds what a single run's holds, so it is evaluated, resumed, fine-tuned and compared
like one. Only the gradient steps are shared: ``ReplicaStack`` stacks the seeds' tensors and
runs each update once for all of them (see advrl/learner/replicas.py). Before a replica is
evaluated or checkpointed its own components and optimisers are set to its slice of the stack.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from advrl.device import generator_like_global, with_generator_state
from advrl.learner import rundir
from advrl.learner.assembly import build_updates
from advrl.learner.checkpoint import run_lock
from advrl.learner.replicas import OPTIMIZER_SHARED, ReplicaStack, stack_states
from advrl.learner.trainer import RECIPE_FILE, RunResult, Trainer, TrainingLoop, check_resume_overrides
from advrl.recipe import RecipeError, apply_overrides, check_assembly, load_recipe, validate


class ReplicaTrainer(Trainer):
    """One seed of a vectorised group: a ``Trainer`` whose data is shared with the group and
    whose random stream, after it is built, is its own generator (the group draws from it)."""

    def __init__(self, recipe: DictConfig, run_dir: Path, resume: bool, data=None):
        self._shared_data = data
        super().__init__(recipe, run_dir, resume=resume, progress=False)
        self.generator = generator_like_global(self.device)

    def _make_data(self):
        return self._shared_data if self._shared_data is not None else super()._make_data()

    def _rng_state(self) -> dict:
        return with_generator_state(super()._rng_state(), self.generator)


class VectorizedTrainer(TrainingLoop):
    """K seeds of one recipe in lockstep: ``ReplicaTrainer`` s for everything a run is, one
    ``ReplicaStack`` for the steps."""

    def __init__(self, recipes: Sequence[DictConfig], run_dirs: Sequence[Path], resume: bool = False,
                 progress: bool = True):
        self.progress = progress
        self.replicas: list[ReplicaTrainer] = []
        data = None
        for recipe, run_dir in zip(recipes, run_dirs, strict=True):
            replica = ReplicaTrainer(recipe, run_dir, resume, data)
            data = replica.data
            self.replicas.append(replica)
        steps = {r.step for r in self.replicas}
        if len(steps) > 1:
            listing = ", ".join(f"seed {r.recipe.seed}: step {r.step}" for r in self.replicas)
            raise RecipeError(f"the runs to resume together are at different steps ({listing}), e.g. a group stopped "
                              "while it saved its seeds one by one; resume each alone (advrl train --resume RUN), which "
                              "trains it exactly as it would have trained in the group.")
        self.step = steps.pop()
        first = self.replicas[0]
        self.recipe, self.device, self.data = first.recipe, first.device, first.data
        self.stack = ReplicaStack([r.components for r in self.replicas], [r.generator for r in self.replicas],
                                  [int(r.recipe.seed) for r in self.replicas])
        self.updates, _ = build_updates(self.recipe, self.stack.components, self.device, self.data.keys, self.stack)
        for i, update in enumerate(self.updates):  # fresh or resumed, each replica's own optimiser state
            update.load_state_dict(stack_states([r.updates[i].state_dict() for r in self.replicas]))

    @property
    def total_steps(self) -> int:
        return int(self.recipe.train.steps)

    # ---- replicas as single runs -----------------------------------------------------------
    def _sync(self, k: int, optimisers: bool = True) -> ReplicaTrainer:
        """Replica k's own components (and, for a checkpoint, optimisers) set to its slice of the stack."""
        replica = self.replicas[k]
        for name, component in self.stack.components.items():
            replica.components[name].load_state_dict(self.stack.replica_state(component.state_dict(), k))
        for update, own in zip(self.updates, replica.updates) if optimisers else ():
            own.load_state_dict(self.stack.replica_state(update.state_dict(), k, OPTIMIZER_SHARED))
        replica.step = self.step
        return replica

    def save(self) -> None:
        for update in self.updates:
            update.check_finite()  # a replica gone non-finite stops the group before anything is saved
        for k in range(len(self.replicas)):
            self._sync(k).save()

    # ---- the loop's parts (see TrainingLoop) ------------------------------------------------
    def _batch(self, batch_size: int):
        return self.data.sample_replicas(batch_size, self.stack.generators)

    def _description(self) -> str:
        return f"{self.recipe.name} seeds {','.join(str(r.recipe.seed) for r in self.replicas)}"

    def _evaluates(self) -> bool:
        return self.replicas[0]._evaluates()

    def _clear_error(self) -> None:
        for replica in self.replicas:
            replica._clear_error()

    def _log_train(self, step: int, scalars: dict[str, torch.Tensor], steps_per_s: float, bar) -> None:
        values = torch.stack([v.detach().float() for v in scalars.values()]).T.tolist()  # [K][n]
        for replica, row in zip(self.replicas, values):  # steps/s: the group's steps (each a step of every seed)
            replica.logger.log("train", step, {**dict(zip(scalars, row)), "steps_per_s": steps_per_s})

    def _evaluate_all(self, step: int, bar) -> None:
        for k in range(len(self.replicas)):
            self._sync(k, optimisers=False).evaluate_and_record(step)  # evaluation reads no optimiser

    def _final_evaluation(self) -> None:
        for k in range(len(self.replicas)):
            self._sync(k, optimisers=False)._final_evaluation()

    def _record_error(self, err: Exception) -> None:
        for replica in self.replicas:
            replica.step = self.step
            replica._record_error(err)

    def _close_records(self) -> None:
        for replica in self.replicas:
            replica._close_records()

    def _result(self) -> list[RunResult]:
        return [replica._result() for replica in self.replicas]


def seed_run_dirs(recipe: DictConfig, seeds: Sequence[int], run_dir: str | Path | None) -> list[Path]:
    """``RUN_DIR/seed<k>`` per seed; by default ``runs/<name>/<dataset>/seeds<a-b-c>-<time>/seed<k>``."""
    if run_dir is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        dataset = str(recipe.dataset.id).replace("/", "-")
        run_dir = Path("runs") / str(recipe.name) / dataset / f"seeds{'-'.join(map(str, seeds))}-{stamp}"
    return [Path(run_dir) / f"seed{seed}" for seed in seeds]


def train_seeds(recipe, seeds: Sequence[int], overrides=(), run_dir: str | Path | None = None,
                progress: bool = True, run_dirs: Sequence[str | Path] | None = None) -> list[RunResult]:
    """Train ``recipe`` (a path or a loaded DictConfig) once per seed, the seeds vectorised in
    this process; each seed's run goes to ``run_dir/seed<k>`` (or ``run_dirs``, one per seed)
    and is a run of its own."""
    seeds = [int(seed) for seed in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise RecipeError(f"vectorised seeds must be distinct and at least one (got {seeds}).")
    recipes = [_seed_recipe(recipe, overrides, seed) for seed in seeds]
    run_dirs = [Path(path) for path in run_dirs] if run_dirs else seed_run_dirs(recipes[0], seeds, run_dir)
    with contextlib.ExitStack() as claims:
        starts = [claims.enter_context(rundir.new_run(path, Trainer.run_kind, Trainer.resume_hint)) for path in run_dirs]
        trainer = VectorizedTrainer(recipes, run_dirs, resume=False, progress=progress)
        for start in starts:
            start.started()
        return trainer.fit()


def _seed_recipe(recipe, overrides, seed: int) -> DictConfig:
    if isinstance(recipe, DictConfig):
        checked = validate(apply_overrides(recipe.copy(), [*overrides, f"seed={seed}"]))
        check_assembly(checked)
        return checked
    return load_recipe(recipe, [*overrides, f"seed={seed}"])


def resume_seeds(run_dirs: Sequence[str | Path], progress: bool = True, overrides=()) -> list[RunResult]:
    """Continue runs of one recipe that stopped at the same step, vectorised (each could also be
    resumed alone with ``advrl train --resume``). ``overrides`` as for ``resume``."""
    run_dirs = [Path(path) for path in run_dirs]
    check_resume_overrides(overrides)
    for path in run_dirs:
        rundir.check_resumable(path, "advrl train")
    recipes = [load_recipe(path / RECIPE_FILE, list(overrides)) for path in run_dirs]
    _check_one_recipe(recipes, run_dirs)
    with contextlib.ExitStack() as locks:
        for path in run_dirs:
            locks.enter_context(run_lock(path))
        return VectorizedTrainer(recipes, run_dirs, resume=True, progress=progress).fit()


def _check_one_recipe(recipes: Sequence[DictConfig], run_dirs: Sequence[Path]) -> None:
    """Runs trained together must differ only in their seed (and where they write)."""
    def without_seed(recipe):
        return OmegaConf.to_yaml({k: v for k, v in OmegaConf.to_container(recipe).items() if k != "seed"})

    first = without_seed(recipes[0])
    for recipe, path in zip(recipes[1:], run_dirs[1:]):
        if without_seed(recipe) != first:
            raise RecipeError(f"{path} has another recipe than {run_dirs[0]} (beyond the seed); vectorised seeds share "
                              "one recipe: resume it on its own (advrl train --resume RUN).")


def group_run_dirs(folder: str | Path) -> list[Path]:
    """The runs of a vectorised group folder (``RUN_DIR/seed<k>``), in seed order."""
    runs = [path for path in Path(folder).glob("seed*") if (path / RECIPE_FILE).is_file()]
    return sorted(runs, key=lambda path: (len(path.name), path.name))
