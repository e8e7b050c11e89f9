"""``--executor slurm``: the runs as one Slurm job array, submitted with submitit.

``--slurm KEY=VALUE`` options (repeatable, or comma-separated) become the array's sbatch
options; see :data:`KEYS`. A task that reaches its time limit, or is preempted, gets
submitit's signal (USR2, 90 s before the limit): :class:`TrainRun` is ``Checkpointable``,
so submitit requeues the task and the requeued one resumes the run from its last checkpoint
(at most ``train.checkpoint_every`` steps are trained again). The submitting process
waits, reading each task's result; the run folders and submitit's files (``OUT/.submitit``)
must be on storage that the submitting machine and every node see.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from advrl.executors import Executor, require, settle
from advrl.sweep import SweepError


def _minutes(value: str) -> int:
    """``90``, ``1:30:00``, ``2-00:00:00`` (Slurm's forms) -> minutes."""
    days, _, clock = value.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if len(parts) == 1:
        minutes = parts[0]
    else:
        parts = parts + [0] * (3 - len(parts)) if len(parts) < 3 else parts
        minutes = parts[0] * 60 + parts[1] + (parts[2] > 0)
    return minutes + 24 * 60 * int(days or 0)


# --slurm key -> (submitit parameter, parse)
KEYS = {
    "partition": ("slurm_partition", str),
    "time": ("timeout_min", _minutes),
    "cpus_per_task": ("cpus_per_task", int),
    "gpus_per_task": ("slurm_gpus_per_task", int),
    "array_parallelism": ("slurm_array_parallelism", int),
    "mem": ("slurm_mem", str),
    "account": ("slurm_account", str),
    "qos": ("slurm_qos", str),
    "constraint": ("slurm_constraint", str),
}
MAX_REQUEUES = 1000  # time limits a run may reach: it resumes each time, so it is no error to hit many


def parse_options(items: list[str]) -> dict[str, str]:
    """``["partition=debug,time=60", "cpus_per_task=2"]`` -> ``{partition: debug, ...}``."""
    options = {}
    for item in (part for entry in items for part in entry.split(",") if part):
        key, sep, value = item.partition("=")
        if not sep or not value or key not in KEYS:
            raise SweepError(f"--slurm {item!r}: give KEY=VALUE with KEY one of {', '.join(KEYS)} "
                             "(e.g. --slurm partition=debug,time=60).")
        options[key] = value
    return options


def parameters(options: dict[str, str], cpus: float, gpus: float) -> dict:
    """submitit's parameters for ``--slurm`` options, defaults from --cpus/gpus-per-run."""
    params = {"timeout_min": 60, "cpus_per_task": max(1, int(cpus))}
    if gpus:
        params["slurm_gpus_per_task"] = int(gpus)
    for key, value in options.items():
        name, parse = KEYS[key]
        try:
            params[name] = parse(value)
        except ValueError:
            raise SweepError(f"--slurm {key}={value}: not a valid {key} (time: minutes or [D-]HH:MM:SS; counts: integers).") from None
    params["slurm_setup"] = [f"export OMP_NUM_THREADS={params['cpus_per_task']}"]
    return params


class TrainRun:
    """The job's callable. ``checkpoint`` (called by submitit on USR2) resubmits the same call:
    the run folder holds all of the state, so the requeued task resumes from the checkpoint."""

    def __call__(self, run):
        from advrl.executors.point import train_run

        return train_run(run)

    def checkpoint(self, run):
        import submitit

        return submitit.helpers.DelayedSubmission(self, run)


class SlurmExecutor(Executor):
    name = "slurm"
    poll = 2.0

    def check(self) -> None:
        require("submitit", "slurm")
        self.params = parameters(parse_options(self.options.slurm), self.options.cpus_per_run, self.options.gpus_per_run)
        if shutil.which("sbatch") is None:
            raise SweepError("--executor slurm: sbatch is not on PATH; run on a Slurm login node "
                             "(scripts/slurm-local.sh makes this machine a one-node cluster).")
        partition = self.params.get("slurm_partition")
        if partition and not _sinfo("-h", "-p", partition, "-o", "%P"):
            raise SweepError(f"--slurm partition={partition}: Slurm has no such partition (see `sinfo`).")

    def run(self, runs, on_done=None):
        """Submit the runs that have no job in the queue yet (a sweep started again while its jobs
        still run waits for them instead of submitting them twice), then wait for all."""
        submitit = require("submitit", "slurm")
        folder = Path(os.path.commonpath([Path(run.run_dir).parent for run in runs])) / ".submitit"
        ledger = Ledger(folder / "jobs.json")
        queued = _queued() or set()
        attached = [(submitit.SlurmJob(folder / "%j", ledger.job(run)), run) for run in runs if ledger.job(run) in queued]
        fresh = [run for run in runs if ledger.job(run) not in queued]
        jobs = self._submit(submitit, folder, fresh) if fresh else []
        ledger.record(zip(fresh, jobs))
        print(f"submitted {len(jobs)} Slurm jobs{' (' + jobs[0].job_id.split('_')[0] + ')' if jobs else ''}"
              f"{f'; waiting for {len(attached)} submitted before' if attached else ''}", flush=True)
        try:
            return self._collect(attached + list(zip(jobs, fresh)), on_done)
        except KeyboardInterrupt:  # the jobs belong to the cluster now: they go on
            print("stopped waiting; the jobs go on in Slurm (squeue). The same command waits for them again "
                  "without submitting them twice; scancel their ids to stop them.", flush=True)
            raise

    def _submit(self, submitit, folder: Path, runs: list) -> list:
        """The runs as one job array (a single sbatch call, ``array_parallelism`` at a time)."""
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm", slurm_max_num_timeout=MAX_REQUEUES)
        executor.update_parameters(name="advrl-sweep", **self.params)
        with executor.batch():
            return [executor.submit(TrainRun(), run.portable()) for run in runs]

    def _collect(self, pending: list, on_done) -> list:
        failed = []
        while pending:
            time.sleep(self.poll)
            queued = _queued()
            for job, run in list(pending):
                if not job.paths.result_pickle.exists():
                    if queued is None or job.job_id in queued:
                        continue  # pending, running or requeued (or the controller did not answer)
                    if not job.paths.result_pickle.exists():  # gone from the queue without a result
                        print(f"FAILED {run.name}: job {job.job_id} left the queue without a result; see {job.paths.stderr}", flush=True)
                        pending.remove((job, run))
                        failed.append(run)
                        continue
                pending.remove((job, run))
                settle(run, job.result, on_done, failed)
        return failed


class Ledger:
    """Which Slurm job trains which run folder (``.submitit/jobs.json``)."""

    def __init__(self, path: Path):
        self.path = path
        self.jobs = json.loads(path.read_text()) if path.exists() else {}

    def job(self, run) -> str | None:
        return self.jobs.get(str(run.run_dir))

    def record(self, pairs) -> None:
        self.jobs.update({str(run.run_dir): job.job_id for run, job in pairs})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.jobs, indent=1))


def _queued() -> set[str] | None:
    """Ids of the jobs in Slurm's queue (array tasks as ``ARRAY_TASK``, as submitit names them);
    None when the controller did not answer (then ask again at the next poll). squeue rather than
    submitit's sacct: a cluster without accounting has no sacct."""
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(out.stdout.split()) if out.returncode == 0 else None


def _sinfo(*args: str) -> str:
    try:
        out = subprocess.run(["sinfo", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SweepError(f"--executor slurm: sinfo did not answer ({err}); is slurmctld up?") from None
    if out.returncode != 0:
        raise SweepError(f"--executor slurm: sinfo failed: {out.stderr.strip()}; is slurmctld up?")
    return out.stdout.strip()
