"""A grid of runs of one recipe, resumable, on this machine or a cluster: ``advrl sweep``.

    advrl sweep recipes/td3bc.yaml components.actor_loss.alpha=1,2.5,5 seed=0,1,2 --out runs/alpha
    advrl sweep ... --out /shared/runs/alpha --executor ray --cpus-per-run 1
    advrl sweep ... --out /shared/runs/alpha --executor slurm --slurm partition=gpu,time=240

An override whose value lists several values at the top level (``key=a,b``; commas inside
brackets or quotes do not count) is swept; the grid is the product of the swept keys, and every
other override applies to each run. Each run gets a folder under ``--out`` named by its swept
values; every point is validated before anything starts. Where the runs train is the
executor's business (``advrl/executors``): ``local`` runs each in its own ``advrl train``
process here, at most ``--workers`` at a time (:func:`run_jobs`); ``ray`` and ``slurm`` submit
each as a task of a cluster. The sweep can be stopped at any point (Ctrl-C, SIGTERM, end of a
session, a lost node) and started again with the same command, on any executor: finished runs
are skipped, interrupted ones resume from their checkpoints.
``advrl compare OUT`` then tables the grid, seeds grouped, one row per configuration.

From Python, ``advrl.sweep(recipe, overrides, out, executor=...)`` is the same command (this
module is callable), and :func:`execute` trains any list of :class:`SweepRun` (several recipes,
fine-tuning phases): ``benchmarks/harness.py`` runs its suites through it.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from omegaconf import OmegaConf

from advrl import threads

MANIFEST = "sweep.yaml"
CLI = [sys.executable, "-m", "advrl.cli"]


class SweepError(ValueError):
    """An override that cannot be swept, or a folder that holds another sweep; the message says which."""


def split_values(value: str) -> list[str]:
    """``a,b`` -> ``[a, b]``; commas inside ``[]``, ``{}``, ``()`` or quotes belong to one value."""
    values, current, depth, quote = [], "", 0, ""
    for char in value:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(current)
            current = ""
            continue
        current += char
    return values + [current]


def expand_grid(overrides: list[str]) -> list[list[str]]:
    """The override lists of every grid point: fixed overrides, then the swept ones in the order
    given; points ordered seed-major when the seed is swept."""
    fixed, swept = [], []
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or not key:
            raise SweepError(f"override {override!r} is not key=value (sweep several values with key=a,b).")
        values = split_values(value)
        if len(values) == 1:
            fixed.append(override)
        elif any(v == "" for v in values):
            raise SweepError(f"override {override!r} has an empty value in its list; write key=a,b with no empty entry.")
        elif key in (k for k, _ in swept):
            raise SweepError(f"{key} is swept twice; give its values in one override ({key}=a,b,c).")
        else:
            swept.append((key, values))
    points = [fixed + list(point) for point in itertools.product(*[[f"{key}={v}" for v in values] for key, values in swept])]
    seeds = dict(swept).get("seed")
    if seeds:  # seed-major: a sweep stopped part-way holds every configuration's first seeds
        points.sort(key=lambda point: seeds.index(next(o for o in point if o.startswith("seed=")).partition("=")[2]))
    return points


def folder_name(point: list[str], swept_keys: list[str]) -> str:
    """``alpha=2.5,seed=1`` from the swept overrides of a point (``run`` for a grid of one)."""
    parts = [o for o in point if o.partition("=")[0] in swept_keys]
    name = ",".join(parts) or "run"
    return name.replace(os.sep, "_").replace(" ", "")


@dataclass
class SweepRun:
    """One grid point: its overrides, its run folder and log, and optionally the overrides of an
    offline-to-online phase (``advrl finetune``) after training. Plain data, so that Ray and
    submitit can ship it to the worker that trains it."""

    recipe: Path
    overrides: list[str]
    run_dir: Path
    finetune: list[str] | None = None

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def log(self) -> Path:
        return self.run_dir.parent / f"{self.run_dir.name}.log"

    def finished(self) -> bool:
        return (self.run_dir / "DONE").exists()

    def offline_done(self) -> bool:
        return (self.run_dir / "OFFLINE_DONE").exists() or (self.finetune is None and self.finished())

    def phase_args(self) -> list[str]:
        """The ``advrl`` arguments of the next phase: training, or fine-tuning after it; each
        resumes its folder when a start is there already (also one stopped before its first
        checkpoint: ``train`` would refuse its folder)."""
        from advrl.learner.rundir import resumable

        if not self.offline_done():
            if resumable(self.run_dir):
                return ["train", "--resume", str(self.run_dir), *self.resume_overrides(), "--no-progress"]
            return ["train", str(self.recipe), *self.overrides, "--run-dir", str(self.run_dir), "--no-progress"]
        tuned = self.run_dir / "finetune"
        if resumable(tuned):
            return ["finetune", "--resume", str(tuned), "--no-progress"]
        return ["finetune", str(self.run_dir), *self.finetune, "--out", str(tuned), "--no-progress"]

    def resume_overrides(self) -> list[str]:
        """The run's overrides that a resume applies (``train.steps`` & co.): a grid or study
        whose ``train.steps`` was raised resumes its runs to the new count."""
        from advrl.learner.trainer import RESUME_KEYS

        keys = [o.partition("=")[0].strip() for o in self.overrides]
        return [o for o, key in zip(self.overrides, keys) if key in RESUME_KEYS[:-1] or key.startswith(RESUME_KEYS[-1])]

    def command(self) -> list[str]:
        return CLI + self.phase_args()

    def mark_phase_done(self) -> bool:
        """Record the finished phase; True when the whole run is done."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        if self.finetune is not None and not self.offline_done():
            (self.run_dir / "OFFLINE_DONE").write_text(stamp)
            return False
        (self.run_dir / "DONE").write_text(stamp)
        return True

    def portable(self) -> SweepRun:
        """This run as a plain SweepRun (a subclass, like the harness's, may not import on a worker)."""
        return SweepRun(Path(self.recipe), list(self.overrides), Path(self.run_dir),
                        None if self.finetune is None else list(self.finetune))


def _seed_of(run: SweepRun) -> str | None:
    return next((o.partition("=")[2].strip() for o in run.overrides if o.partition("=")[0].strip() == "seed"), None)


@dataclass
class SeedGroup:
    """Runs that differ only in their seed, trained as one job with vectorised seeds
    (``advrl train ... seed=a,b --vectorize``); each member keeps its own folder, so the sweep
    resumes, compares and reports them as runs. Offered to the executors as one run.

    A group whose members all start fresh (or all resume) trains them together; a mixed group
    (some members started alone, fine-tuning phases) trains its members one by one."""

    members: list[SweepRun]

    def __post_init__(self):
        self._phase: list[SweepRun] = []  # the members the phase of the last phase_args() trains

    @property
    def run_dir(self) -> Path:
        return self.members[0].run_dir

    @property
    def name(self) -> str:
        return f"{self.members[0].name}+{len(self.members) - 1}" if len(self.members) > 1 else self.members[0].name

    @property
    def log(self) -> Path:
        return self.run_dir.parent / f"{self.name}.log"

    def finished(self) -> bool:
        return all(m.finished() for m in self.members)

    def phase_args(self) -> list[str]:
        from advrl.learner.rundir import resumable

        waiting = [m for m in self.members if not m.offline_done()]
        started = [m for m in waiting if resumable(m.run_dir)]
        # resumed together only from one step: a group stopped while it saved its seeds one by one
        # (or a member resumed alone) has members at different steps, which train on alone
        together = len(waiting) > 1 and (not started or (len(started) == len(waiting) and _one_step(started)))
        if together:
            self._phase = waiting
            dirs = ["--seed-dirs", *(str(m.run_dir) for m in waiting)]
            if started:
                return ["train", *waiting[0].resume_overrides(), "--vectorize", *dirs, "--no-progress"]
            common = [o for o in waiting[0].overrides if o.partition("=")[0].strip() != "seed"]
            seeds = "seed=" + ",".join(_seed_of(m) or "0" for m in waiting)
            return ["train", str(waiting[0].recipe), *common, seeds, "--vectorize", *dirs, "--no-progress"]
        member = next(m for m in self.members if not m.finished())
        self._phase = [member]
        return member.phase_args()

    def command(self) -> list[str]:
        return CLI + self.phase_args()

    def mark_phase_done(self) -> bool:
        for member in self._phase:
            member.mark_phase_done()
        return self.finished()

    def portable(self) -> SeedGroup:
        return SeedGroup([m.portable() for m in self.members])


def _one_step(runs: list[SweepRun]) -> bool:
    """True when every run's newest checkpoint is at the same step (none yet counts as step 0)."""
    from advrl.learner.checkpoint import load_latest

    steps = set()
    for run in runs:
        latest = load_latest(Path(run.run_dir) / "checkpoints")
        steps.add(latest[0]["step"] if latest else 0)
    return len(steps) == 1


def group_seeds(runs: list[SweepRun]) -> list[SweepRun | SeedGroup]:
    """``runs`` with those differing only in ``seed=`` (same recipe, fine-tuning) as one group each."""
    groups: dict[tuple, list[SweepRun]] = {}
    for run in runs:
        rest = tuple(o for o in run.overrides if o.partition("=")[0].strip() != "seed")
        groups.setdefault((str(run.recipe), rest, tuple(run.finetune or ()), run.finetune is None), []).append(run)
    return [members[0] if len(members) == 1 else SeedGroup(members) for members in groups.values()]


def plan(recipe: str | Path, overrides: list[str], out: str | Path) -> list[SweepRun]:
    """The sweep's runs, each recipe validated first (a typo fails before anything starts);
    ``out`` keeps a manifest so that the same folder is never reused for other settings."""
    from advrl.recipe import RecipeError, load_recipe, recipe_path

    recipe, out = recipe_path(recipe).resolve(), Path(out)  # advrl:NAME.yaml -> the packaged file
    points = expand_grid(list(overrides))
    swept_keys = [o.partition("=")[0] for o in overrides if len(split_values(o.partition("=")[2])) > 1]
    for point in points:  # every point, data flow included, before any folder is made
        try:
            load_recipe(recipe, point)
        except RecipeError as err:
            raise RecipeError(f"sweep point {folder_name(point, swept_keys)}: {err}") from None
    manifest = {"recipe": str(recipe), "overrides": list(overrides)}
    saved = out / MANIFEST
    if saved.exists() and OmegaConf.to_container(OmegaConf.load(saved)) != manifest:
        raise SweepError(f"{out} holds a sweep of other settings ({saved}); choose another --out, or delete it to start over.")
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(manifest), saved)
    return [SweepRun(recipe, point, out / folder_name(point, swept_keys)) for point in points]


def check_runs(runs: list[SweepRun]) -> None:
    """Validate each run's recipe with its overrides, data flow included (as :func:`plan` does for
    a grid), and its fine-tuning overrides, so that a typo fails before anything is submitted."""
    from advrl.learner.finetune import online_recipe
    from advrl.recipe import RecipeError, load_recipe

    for run in runs:
        try:
            recipe = load_recipe(run.recipe, run.overrides)
        except RecipeError as err:
            raise RecipeError(f"{run.name}: {err}") from None
        if run.finetune is not None:  # a typo there would otherwise fail after the whole offline phase
            try:  # keys and ranges as load_recipe checks them, then what fine-tuning adds (frozen slots & co.)
                load_recipe(run.recipe, [*run.overrides, *run.finetune], check_flow=False)
                online_recipe(recipe, run.finetune)
            except RecipeError as err:
                raise RecipeError(f"{run.name}, fine-tuning: {err}") from None


class Job(Protocol):
    name: str
    log: Path

    def command(self) -> list[str]: ...

    def mark_phase_done(self) -> bool: ...


def run_jobs(jobs: list[Job], workers: int, on_done: Callable[[Job], None] | None = None, poll: float = 1.0,
             cpus_per_run: int | None = None) -> list[Job]:
    """Run each job's next process, at most ``workers`` at a time (each with a fair share of the
    cores, see ``advrl.threads.worker_environment``, or ``cpus_per_run`` threads), until every
    job is done or has failed; a job with several phases (``mark_phase_done`` False) is started
    again for the next. Ctrl-C or SIGTERM stops the running processes (they resume from their
    checkpoints next time) and raises KeyboardInterrupt. Returns the failed jobs."""
    pending, running, failed = list(jobs), [], []
    env = threads.worker_environment(workers)
    if cpus_per_run is not None:  # an executor's explicit request (--cpus-per-run) wins over the share
        env["OMP_NUM_THREADS"] = str(cpus_per_run)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill PID` stops the runs too, as Ctrl-C does
    try:
        while pending or running:
            while pending and len(running) < workers:
                job = pending.pop(0)
                job.log.parent.mkdir(parents=True, exist_ok=True)
                command = job.command()
                print(f"start {job.name}: {' '.join(command[3:])}", flush=True)
                with open(job.log, "a") as log:
                    running.append((job, subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)))
            time.sleep(poll)
            for job, proc in list(running):
                if proc.poll() is None:
                    continue
                running.remove((job, proc))
                if proc.returncode != 0:
                    print(f"FAILED {job.name} (exit {proc.returncode}); see {job.log}", flush=True)
                    failed.append(job)
                elif job.mark_phase_done():
                    if on_done is not None:
                        on_done(job)
                    print(f"done  {job.name}", flush=True)
                else:
                    print(f"phase done {job.name}; its next phase follows", flush=True)
                    pending.insert(0, job)
    except KeyboardInterrupt:
        for _, proc in running:
            proc.terminate()
        for _, proc in running:
            proc.wait()
        print("stopped; run again to resume", flush=True)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    return failed


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _engine(executor: str, options: dict):
    """The executor, checked (its package, options, cluster) before anything is made or submitted."""
    from advrl import executors

    engine = executors.make(executor, executors.Options(**options))
    engine.check()
    return engine


def check_executor(executor: str = "local", **options) -> None:
    """Raise SweepError for bad executor input (see :func:`_engine`), before a caller makes anything."""
    _engine(executor, options)


def _train(runs: list[SweepRun], engine, on_done, vectorize: bool = False) -> list[SweepRun]:
    pending = [run for run in runs if not run.finished()]
    where = f"{engine.workers} at a time" if engine.name == "local" else f"on {engine.name}"
    jobs = group_seeds(pending) if vectorize else pending
    grouped = f" in {len(jobs)} jobs (seeds vectorised)" if len(jobs) != len(pending) else ""
    print(f"{len(runs) - len(pending)} of {len(runs)} runs finished; {len(pending)} to go{grouped}, {where}", flush=True)
    if not grouped:
        return engine.run(pending, on_done) if pending else []

    def members_done(job) -> None:
        for member in getattr(job, "members", [job]):
            if on_done is not None:
                on_done(member)

    failed = engine.run(jobs, members_done)
    return [member for job in failed for member in getattr(job, "members", [job])]


def execute(runs: list[SweepRun], executor: str = "local", on_done: Callable[[SweepRun], None] | None = None,
            vectorize: bool = False, **options) -> list[SweepRun]:
    """Train every unfinished run of ``runs`` (any recipes, fine-tuning phases) with ``executor``
    (options: :class:`advrl.executors.Options`); ``on_done`` is called here for each run that
    finishes. ``vectorize``: runs differing only in their seed train as one job (see
    :class:`SeedGroup`). Returns the failed runs."""
    return _train(runs, _engine(executor, options), on_done, vectorize)


def sweep(recipe: str | Path, overrides: list[str], out: str | Path, workers: int | None = None,
          executor: str = "local", vectorize: bool = False, **options) -> list[SweepRun]:
    """Train every unfinished run of the grid; returns the failed runs. ``options``:
    ``cpus_per_run``, ``gpus_per_run``, ``ray_address``, ``max_retries``, ``slurm`` (a list of
    ``KEY=VALUE``), as the command's flags; ``vectorize`` trains each point's seeds as one job."""
    engine = _engine(executor, {"workers": workers, **options})
    return _train(plan(recipe, overrides, out), engine, None, vectorize)


class _CallableModule(types.ModuleType):
    """``advrl.sweep(...)`` runs a sweep while ``advrl.sweep.plan`` & co. stay reachable: the
    module and the function share the name, and a package attribute cannot be both."""

    def __call__(self, *args, **kwargs):
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
