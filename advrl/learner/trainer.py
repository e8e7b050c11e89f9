"""The generic training loop: sample a batch on the device, run the recipe's updates, log,
evaluate, checkpoint. It knows no algorithm by name."""

from __future__ import annotations

import dataclasses
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from advrl import provenance, threads
from advrl.compare import ERROR_FILE  # why a run died (one line): `advrl compare` shows it failed, not still running
from advrl.component import DataSpec
from advrl.data.dataset import DatasetInfo, ObservationNormalizer, load_offline_data
from advrl.device import autocast, resolve_device
from advrl.evaluation import evaluate, make_env_factory
from advrl.learner import rundir
from advrl.learner.assembly import build_components, build_updates, compute_dtypes
from advrl.learner.checkpoint import (
    CheckpointError,
    load_latest,
    remove_stale_temporaries,
    restore_rng_state,
    rng_state,
    run_lock,
    save_checkpoint,
)
from advrl.learner.metrics import MetricsLogger, make_sinks, wandb_module
from advrl.recipe import RecipeError, apply_overrides, check_assembly, load_recipe, validate

CHECKPOINT = "checkpoints/last.pt"
RECIPE_FILE = "recipe.yaml"
SOFTWARE_FILE = "software.json"  # library versions and processor the run started with
METRICS_FILE = "metrics.jsonl"  # written by MetricsLogger
# what `advrl train --resume RUN key=value` may change: how long the run goes on, how it is
# logged and evaluated. Anything else would change what the steps it already took trained.
RESUME_KEYS = ("train.steps", "train.checkpoint_every", "train.log_every", "eval.")


@dataclass
class RunResult:
    run_dir: Path
    steps: int
    final_score: float | None
    final_return: float | None
    evaluations: list[dict] = field(default_factory=list)
    final_evaluation: dict | None = None  # the ``final_eval`` record (eval.final_episodes episodes)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_run_dir(recipe: DictConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dataset = str(recipe.dataset.id).replace("/", "-")
    return Path("runs") / str(recipe.name) / dataset / f"seed{recipe.seed}-{stamp}"


def info_to_dict(info: DatasetInfo) -> dict:
    state = dataclasses.asdict(info)
    spec = info.eval_env_spec
    state["eval_env_spec"] = spec if spec is None or isinstance(spec, str) else spec.to_json()
    for key in ("ref_min_score", "ref_max_score"):  # numpy floats in some Minari metadata: plain for weights-only loads
        state[key] = None if state[key] is None else float(state[key])
    return state


def make_policy(actor, normalizer: ObservationNormalizer, device: torch.device, dtype: torch.dtype | None = None):
    """numpy observations [N, obs_dim] (or [obs_dim]) -> numpy actions, deterministic; the actor
    computes in ``dtype`` (None: float32) as it did in training (its slot's precision)."""

    @torch.no_grad()
    def policy(obs: np.ndarray) -> np.ndarray:
        tensor = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=device)
        with autocast(device, dtype):
            action = actor.act(normalizer(tensor))
        return action.float().cpu().numpy()

    return policy


class TrainingLoop:
    """The step loop of one run (``Trainer``) and of a group of vectorised seeds
    (``VectorizedTrainer``): batches, due updates, logging, evaluation, checkpoints; what each
    part does is the subclass's."""

    def fit(self):
        from tqdm.auto import tqdm

        cfg = self.recipe.train
        total, batch_size, log_every, ckpt_every = self.total_steps, cfg.batch_size, cfg.log_every, cfg.checkpoint_every
        eval_every = self.recipe.eval.every if self._evaluates() else 0
        step_tensor = torch.zeros((), dtype=torch.long, device=self.device)
        bar = tqdm(total=total, initial=self.step, disable=not self.progress, dynamic_ncols=True, desc=self._description())
        last_time, last_step = time.perf_counter(), self.step
        self._clear_error()
        try:
            while self.step < total:
                self.step += 1
                step = self.step
                step_tensor.fill_(step)
                logging = step % log_every == 0 or step == total
                scalars = self._train_step(step, step_tensor, batch_size, logging)
                if logging and scalars:
                    for update in self.updates:
                        update.check_finite()
                    now = time.perf_counter()
                    self._log_train(step, scalars, (step - last_step) / max(now - last_time, 1e-9), bar)
                    last_time, last_step = now, step
                if eval_every and (step % eval_every == 0 or step == total):
                    self._evaluate_all(step, bar)
                    last_time = time.perf_counter()  # keep evaluation out of steps/s
                if step % ckpt_every == 0 or step == total:
                    self.save()
                bar.update(1)
            self._final_evaluation()
        except Exception as err:  # not KeyboardInterrupt/SystemExit (SIGTERM kills): those are interruptions
            self._record_error(err)
            raise
        finally:
            bar.close()
            self._close_records()
        return self._result()

    def _train_step(self, step: int, step_tensor: torch.Tensor, batch_size: int, logging: bool) -> dict:
        """One gradient step: a batch, then every update that is due; scalars on logging steps."""
        batch = self._batch(batch_size)
        scalars: dict[str, torch.Tensor] = {}
        for update in self.updates:
            if update.active(step):
                out = update.run(batch, step, step_tensor)
                if logging:
                    scalars.update(out)
        return scalars


class Trainer(TrainingLoop):
    run_kind, resume_hint = "train", "advrl train --resume"  # the mark's kind; the command that continues such a run

    def __init__(self, recipe: DictConfig, run_dir: Path, resume: bool = False, progress: bool = True):
        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self.progress = progress
        if recipe.log.wandb:
            wandb_module()  # a missing backend fails now, not after the data and pre-training
        self.threads = threads.apply(int(recipe.train.threads))  # before any computation
        if progress:  # recorded in software.json either way; said where a person watches
            threads.log(self.threads)
        seed_everything(recipe.seed)
        self.device = resolve_device(recipe.train.device)
        self.data = self._make_data()
        if resume:
            self._check_same_dataset_build()
        for key, value in self.data.info.facts().items():
            recipe.dataset[key] = value
        OmegaConf.resolve(recipe)
        self.spec = DataSpec(**self.data.info.facts())
        seed_everything(recipe.seed)  # component init independent of how the data was built
        self.components = build_components(recipe, self.spec, bind=False)
        for component in self.components.values():
            component.to(self.device)
        self.updates, dataset_reads = build_updates(recipe, self.components, self.device, self.data.keys)
        self.data.select(sorted(dataset_reads))
        preparation = self._prepare_components()
        if recipe.eval.policy not in self.components or not hasattr(self.components[recipe.eval.policy], "act"):
            raise RecipeError(f"eval.policy names {recipe.eval.policy!r}, which is not an actor slot of the recipe.")
        self.actor = self.components[recipe.eval.policy]
        self.env_factory = make_env_factory(self.data.info, recipe.eval.env) if recipe.eval.episodes > 0 else None
        self.step = 0
        self.evaluations: list[dict] = []
        self.final_evaluation: dict | None = None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.resumed_from: Path | None = None  # the checkpoint a resumed run continues from
        if resume:
            self._resume_state()
            if self.step > self.total_steps:  # before recipe.yaml is rewritten with the shorter budget
                raise RecipeError(f"the run has trained {self.step} steps, more than the {self.total_steps} it would now "
                                  "end at: a resume continues a run, it cannot shorten it.")
        (self.run_dir / RECIPE_FILE).write_text(OmegaConf.to_yaml(recipe, resolve=True))
        if not (self.run_dir / SOFTWARE_FILE).exists():  # a resume keeps what the run started with
            software = {**provenance.software(), "threads": self.threads}
            (self.run_dir / SOFTWARE_FILE).write_text(json.dumps(software, indent=2) + "\n")
        resume_step = self.step if resume else None
        self.logger = MetricsLogger(self.run_dir, resume_step, make_sinks(self.run_dir, recipe, resume_step))
        if not any(self.logger.rows.values()):  # a resumed run keeps its first records (preparation then is a cache hit)
            self._log_dataset()
            for slot, facts in preparation.items():
                self.logger.log("preparation", 0, {"slot": slot, **facts})

    def _resume_state(self) -> None:
        """Load the newest readable checkpoint; a marked run stopped before its first one starts
        again from step 0 in its folder, its records kept."""
        folder = (self.run_dir / CHECKPOINT).parent
        if folder.is_dir():
            remove_stale_temporaries(folder)
        latest = load_latest(folder, set_aside=True)
        if latest is not None:
            self._load(latest[0])
            self.resumed_from = latest[1]
            rundir.adopt(self.run_dir, self.run_kind)
        elif not rundir.is_marked(self.run_dir):
            raise CheckpointError(f"No checkpoint in {folder}: {self.run_dir} saved none yet (nothing to resume from).")

    def _check_same_dataset_build(self) -> None:
        """A resumed run must continue on the data it started on: a dataset id rebuilt on another
        machine can hold other episodes (MuJoCo roll-outs are chaotic), and half a run on each
        would be neither."""
        from advrl.compare import read_records

        started_on = read_records(self.run_dir / METRICS_FILE, "dataset")
        recorded, current = (started_on[0].get("fingerprint") if started_on else None), self.data.info.fingerprint
        if recorded is not None and current is not None and recorded != current:
            raise RecipeError(
                f"{self.run_dir} started on the build of {self.data.info.id} with content fingerprint {recorded}, "
                f"but the dataset here has fingerprint {current} (rebuilt, or built on another machine). "
                "Resuming would train on two different datasets: start the run again in a new --run-dir, "
                "or resume it where its own build is."
            )

    def _log_dataset(self) -> None:
        """Which build of the dataset the run trained on: an id can be rebuilt with new content."""
        info = self.data.info
        if info.fingerprint is not None:
            self.logger.log("dataset", 0, {"id": info.id, "n_transitions": info.n_transitions,
                                           "n_episodes": info.n_episodes, "fingerprint": info.fingerprint})

    def _prepare_components(self) -> dict[str, dict]:
        """Run every component's ``prepare``; the facts of those that did something, timed."""
        facts = {}
        data, context = self._preparation_data(), {"seed": int(self.recipe.seed), "device": self.device}
        for name, component in self.components.items():
            started = time.perf_counter()
            reported = component.prepare(data, context)
            if reported is not None:
                facts[name] = {"seconds": round(time.perf_counter() - started, 3), **reported}
        return facts

    def _preparation_data(self):
        """The offline data components may pre-compute from (``Component.prepare``)."""
        return self.data

    def _make_data(self):
        """The source of training batches: the offline dataset on the device."""
        return load_offline_data(self.recipe.dataset, self.recipe.data, self.device)

    # ---- checkpoints -----------------------------------------------------------------------
    def _state(self) -> dict:
        return {
            "step": self.step,
            "components": {name: c.state_dict() for name, c in self.components.items()},
            "updates": {u.name: u.state_dict() for u in self.updates},
            "rng": self._rng_state(),
            "normalizer": self.data.normalizer.state_dict(),
            "dataset_info": info_to_dict(self.data.info),
            "evaluations": self.evaluations,
            **self._extra_state(),
        }

    def _rng_state(self) -> dict:
        return rng_state()

    def _extra_state(self) -> dict:
        """State a subclass adds to checkpoints (the online trainer: replay buffer)."""
        return {}

    def _load_extra(self, state: dict) -> None:
        pass

    def _load(self, state: dict) -> None:
        for name, component in self.components.items():
            component.load_state_dict(state["components"][name])
        for update in self.updates:
            update.load_state_dict(state["updates"][update.name])
        restore_rng_state(state["rng"])
        self.step = state["step"]
        self.evaluations = list(state["evaluations"])
        self._load_extra(state)

    def save(self) -> None:
        for update in self.updates:
            update.check_finite()  # never overwrite a good checkpoint with NaN parameters
        save_checkpoint(self._state(), self.run_dir / CHECKPOINT)

    # ---- evaluation ------------------------------------------------------------------------
    def evaluate(self, episodes: int | None = None) -> dict:
        for component in self.components.values():
            component.eval()
        dtype = compute_dtypes(self.recipe, self.device)[self.recipe.eval.policy]
        policy = make_policy(self.actor, self.data.normalizer, self.device, dtype)
        cfg = self.recipe.eval
        episodes = cfg.episodes if episodes is None else episodes
        result = evaluate(policy, self.env_factory, episodes, self.recipe.seed + cfg.seed_offset, self.data.info, cfg.obs_noise)
        for component in self.components.values():
            component.train()
        return result

    def evaluate_and_record(self, step: int) -> dict:
        """The periodic evaluation: run it, keep it in the checkpointed history and the records."""
        result = self.evaluate()
        self.evaluations.append({"step": step, **result})
        self.logger.log("eval", step, result)
        self._after_evaluation(step, result)
        return result

    def _after_evaluation(self, step: int, result: dict) -> None:
        pass

    def _final_evaluation(self) -> None:
        """A ``final_eval`` record once the budget is reached: ``eval.final_episodes`` episodes of
        the final policy, and the mean of the last ``eval.last_n`` evaluations. A 10-episode
        evaluation of these runs swings by tens of points from one to the next (Agarwal et al.
        2021 on few-run evaluation), so the run's score should not rest on the last one alone.
        A run resumed after it finished (records at its last step are kept) does not repeat it."""
        cfg = self.recipe.eval
        # a pilot grown with `--resume RUN train.steps=N` keeps its earlier final_eval; only one at
        # this step counts as done
        recorded = [r for r in self.logger.rows.get("final_eval", []) if r["step"] >= self.step]
        if recorded:
            self.final_evaluation = {k: v for k, v in recorded[-1].items() if k not in ("kind", "step")}
        if recorded or self.env_factory is None or cfg.final_episodes <= 0:
            return
        started = time.perf_counter()
        result = self.evaluate(int(cfg.final_episodes))
        result["seconds"] = round(time.perf_counter() - started, 2)  # 100 Hopper episodes of 1000 steps: ~20 s
        recent = self.evaluations[-int(cfg.last_n):] if cfg.last_n > 0 else []
        for key in ("score_mean", "return_mean"):
            if recent and all(key in e for e in recent):
                result[f"last_n_{key}"] = float(np.mean([e[key] for e in recent]))
        self.final_evaluation = {"episodes": int(cfg.final_episodes), "last_n": len(recent), **result}
        self.logger.log("final_eval", self.step, self.final_evaluation)

    def _record_error(self, err: Exception) -> None:
        """error.txt: the step and one-line message of the exception that ended the run."""
        message = " ".join(str(err).split()) or "(no message)"
        (self.run_dir / ERROR_FILE).write_text(f"step {self.step}: {type(err).__name__}: {message}\n")

    # ---- the loop --------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return int(self.recipe.train.steps)

    def _batch(self, batch_size: int):
        return self.data.sample(batch_size)

    # ---- the loop's parts (see TrainingLoop) ------------------------------------------------
    def _description(self) -> str:
        return str(self.recipe.name)

    def _evaluates(self) -> bool:
        return self.env_factory is not None

    def _clear_error(self) -> None:
        (self.run_dir / ERROR_FILE).unlink(missing_ok=True)  # resumed: it is not failed any more

    def _log_train(self, step: int, scalars: dict[str, torch.Tensor], steps_per_s: float, bar) -> None:
        values = dict(zip(scalars, torch.stack([v.detach().float() for v in scalars.values()]).tolist()))
        values["steps_per_s"] = steps_per_s
        self.logger.log("train", step, values)
        bar.set_postfix({k: f"{v:.3g}" for k, v in values.items() if k.startswith("loss_")}, refresh=False)

    def _evaluate_all(self, step: int, bar) -> None:
        result = self.evaluate_and_record(step)
        shown = result.get("score_mean", result["return_mean"])
        bar.set_postfix_str(f"eval {'score' if 'score_mean' in result else 'return'} {shown:.1f}", refresh=False)

    def _close_records(self) -> None:
        self.logger.close()

    def _result(self) -> RunResult:
        final = self.evaluations[-1] if self.evaluations else {}
        return RunResult(self.run_dir, self.step, final.get("score_mean"), final.get("return_mean"), list(self.evaluations),
                         self.final_evaluation)


def train(recipe, overrides=(), run_dir: str | Path | None = None, progress: bool = True) -> RunResult:
    """Train a recipe (a path or a loaded DictConfig) and return the run's result."""
    if not isinstance(recipe, DictConfig):
        recipe = load_recipe(recipe, overrides)
    else:  # a recipe built in Python is checked as a file is, and saved with every default filled in
        recipe = validate(apply_overrides(recipe, list(overrides)))
        check_assembly(recipe)
    recipe = recipe.copy()
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(recipe)
    with rundir.new_run(run_dir, Trainer.run_kind, Trainer.resume_hint) as start:
        trainer = Trainer(recipe, run_dir, resume=False, progress=progress)
        start.started()
        return trainer.fit()


def check_resume_overrides(overrides) -> None:
    """Raise naming the first override a resume may not apply (see RESUME_KEYS)."""
    for override in overrides:
        key = str(override).partition("=")[0].strip()
        if not key.startswith(RESUME_KEYS[-1]) and key not in RESUME_KEYS[:-1]:
            raise RecipeError(
                f"{key} cannot be changed on resume: it would change what the run's first steps trained; resume takes "
                f"only train.steps, train.checkpoint_every, train.log_every and eval.* (start a new run for {key}).")


def resume(run_dir: str | Path, progress: bool = True, overrides=()) -> RunResult:
    """Continue an interrupted or finished run from its last checkpoint, with the recipe it
    saved; ``overrides`` of ``train.steps`` (grow a pilot), ``train.checkpoint_every``,
    ``train.log_every`` and ``eval.*`` apply and are saved in its recipe.yaml."""
    run_dir = Path(run_dir)
    recipe_path = run_dir / RECIPE_FILE
    check_resume_overrides(overrides)
    rundir.check_resumable(run_dir, "advrl train")
    recipe = load_recipe(recipe_path, list(overrides))
    with run_lock(run_dir):
        return Trainer(recipe, run_dir, resume=True, progress=progress).fit()
