"""Where a sweep's runs train: ``local`` (processes on this machine), ``ray`` (one Ray task per
run, on a Ray cluster) or ``slurm`` (one Slurm array task per run, submitted with submitit).

Every executor takes the same runs (:class:`advrl.sweep.SweepRun`: plain data naming a run
folder) and trains each until its ``DONE`` mark; run folders are the only state, so the
machines that train must all see ``--out`` at the same path (a shared file system), and a
sweep started again with the same command, on any executor, skips finished runs and resumes
the others from their checkpoints. ``check()`` runs before anything is submitted: a missing
package, a malformed option or an unreachable cluster is one line naming the fix.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from advrl.sweep import SweepError, SweepRun

EXECUTORS = ("local", "ray", "slurm")


@dataclass
class Options:
    """What the executors may be asked for; each reads its own fields."""

    workers: int | None = None  # local: runs at a time (default: one per core)
    cpus_per_run: float = 1.0  # ray: the task's CPU request; local: threads of each run; slurm: default cpus_per_task
    gpus_per_run: float = 0.0  # ray: the task's GPU request; slurm: default gpus_per_task
    ray_address: str | None = None  # ray: a cluster to attach to (default: a running local one, else a new one)
    max_retries: int = 3  # ray: restarts of a run whose worker died
    slurm: list[str] = field(default_factory=list)  # slurm: KEY=VALUE items (partition=debug, time=60, ...)


class Executor:
    name = ""

    def __init__(self, options: Options):
        self.options = options

    def check(self) -> None:
        """Raise SweepError if this executor cannot run here; nothing is submitted yet."""

    def run(self, runs: list[SweepRun], on_done: Callable[[SweepRun], None] | None = None) -> list[SweepRun]:
        """Train every run to its end; ``on_done`` is called here (the submitting process) for
        each finished one. Returns the runs that failed."""
        raise NotImplementedError


# options that only one executor reads: given to another, they would be silently ignored
ONLY_FOR = {"ray_address": ("ray", "--ray-address"), "slurm": ("slurm", "--slurm"), "workers": ("local", "--workers")}


def make(name: str, options: Options) -> Executor:
    for option, (executor, flag) in ONLY_FOR.items():
        if name in EXECUTORS and name != executor and getattr(options, option):
            raise SweepError(f"{flag} applies to --executor {executor} only; drop it, or add --executor {executor}.")
    if name == "local":
        from advrl.executors.local import LocalExecutor

        return LocalExecutor(options)
    if name == "ray":
        from advrl.executors.ray_tasks import RayExecutor

        return RayExecutor(options)
    if name == "slurm":
        from advrl.executors.slurm_jobs import SlurmExecutor

        return SlurmExecutor(options)
    raise SweepError(f"unknown executor {name!r}: use --executor local, ray or slurm.")


def require(module: str, extra: str):
    """Import an optional engine, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise SweepError(f"--executor {extra} needs the {module} package: pip install 'advrl[{extra}]'.") from None


def settle(run: SweepRun, result: Callable[[], object], on_done: Callable[[SweepRun], None] | None, failed: list) -> None:
    """Record one run whose task or job has ended: ``result()`` raises the run's own error (or
    its worker's or job's death beyond the retries), which marks it failed; else it is done."""
    try:
        result()
    except Exception as err:
        print(f"FAILED {run.name}: {str(err).strip().splitlines()[-1]}; see {run.log}", flush=True)
        failed.append(run)
        return
    if on_done is not None:
        on_done(run)
    print(f"[{time.strftime('%H:%M:%S')}] done  {run.name}", flush=True)
