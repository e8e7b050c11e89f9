"""`advrl sweep --executor ray|slurm` on real engines: a local Ray cluster, and the one-node Slurm
cluster of scripts/slurm-local.sh. A worker is killed (Ray) or a job preempted (Slurm) in the
middle of a run; the run must resume from its checkpoint and end with every step counted once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

import advrl
from advrl.cli import main

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
STEPS = 20000  # about 15 s of BC on one core: long enough to be interrupted after its first checkpoint


def long_overrides(tiny_overrides: list[str]) -> list[str]:
    return [*tiny_overrides, f"train.steps={STEPS}", "train.checkpoint_every=500", "train.log_every=250",
            f"eval.every={STEPS}"]


def lock_pid(run_dir: Path) -> int:
    return int((run_dir / ".lock").read_text().strip())


def wait_for_checkpoint(run_dir: Path, errors: list, timeout: float = 150) -> int:
    """The pid training ``run_dir`` once its first checkpoint is written (and it is still training)."""
    deadline = time.time() + timeout
    while not (run_dir / "checkpoints" / "last.pt").exists():
        assert not errors, errors
        assert time.time() < deadline, f"no checkpoint in {run_dir} after {timeout} s"
        time.sleep(0.2)
    assert not (run_dir / "DONE").exists(), "the run ended before it could be interrupted"
    return lock_pid(run_dir)


def in_thread(target) -> tuple[threading.Thread, list, list]:
    """Run ``target`` in a thread; its result or its error land in the lists returned."""
    results, errors = [], []

    def body():
        try:
            results.append(target())
        except BaseException as err:  # noqa: B036 - handed to the test's thread to fail there
            errors.append(err)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, results, errors


def check_resumed_once(run_dir: Path, killed_pid: int) -> None:
    """Every run step recorded once, the run complete, and trained on after the interruption by
    another process resuming it (not started over)."""
    steps = [r["step"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS, steps  # strictly increasing, to the end
    assert steps == list(range(250, STEPS + 1, 250))
    log = (run_dir.parent / f"{run_dir.name}.log").read_text()
    assert "start train --resume" in log, log[-2000:]
    assert lock_pid(run_dir) != killed_pid


def test_bad_executor_input_is_one_line_before_anything_is_made(tmp_path, capsys):
    out = tmp_path / "sweep"
    base = ["sweep", str(RECIPES / "bc.yaml"), "seed=0,1", "--out", str(out)]
    cases = [
        (["--executor", "kubernetes"], "unknown executor 'kubernetes': use --executor local, ray or slurm."),
        (["--executor", "slurm", "--slurm", "partition"], "--slurm 'partition': give KEY=VALUE with KEY one of partition"),
        (["--executor", "slurm", "--slurm", "walltime=10"], "--slurm 'walltime=10': give KEY=VALUE"),
        (["--executor", "slurm", "--slurm", "time=ten"], "--slurm time=ten: not a valid time"),
        (["--executor", "ray", "--ray-address", "127.0.0.1:9"], "--ray-address 127.0.0.1:9: no Ray cluster answers"),
        (["--executor", "ray", "--ray-address", "head-node"], "--ray-address 'head-node' is not HOST:PORT"),
        (["--slurm", "partition=debug"], "--slurm applies to --executor slurm only"),
        (["--executor", "slurm", "--workers", "2"], "--workers applies to --executor local only"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 1, extra
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
        assert not out.exists()  # nothing made, nothing submitted


def test_a_ray_sweep_resumes_the_run_whose_worker_was_killed(tmp_path, minari_root, tiny_overrides):
    import ray

    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 characters
    ray.init(num_cpus=2, _temp_dir=temp, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path / "ray"
        overrides = [*long_overrides(tiny_overrides), "seed=0,1,2,3"]
        thread, results, errors = in_thread(lambda: advrl.sweep(RECIPES / "bc.yaml", overrides, out, executor="ray"))
        victim = out / "seed=1"
        pid = wait_for_checkpoint(victim, errors)
        assert pid != os.getpid()
        os.kill(pid, signal.SIGKILL)  # the Ray worker itself: its task trains in-process
        thread.join(timeout=240)
        assert not thread.is_alive() and not errors, errors
        assert results == [[]]  # no run failed
        for seed in range(4):
            assert (out / f"seed={seed}" / "DONE").exists()
        check_resumed_once(victim, pid)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def _slurm_answers() -> bool:
    if shutil.which("sbatch") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h", "-p", "debug", "-o", "%t"], capture_output=True, text=True, timeout=10).stdout.strip() != ""
    except (OSError, subprocess.TimeoutExpired):
        return False


def _job_id(pid: int) -> str:
    """The Slurm job (``ARRAY_TASK``, as scancel takes it) of the process ``pid``."""
    env = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"


@pytest.mark.skipif(not _slurm_answers(), reason="no Slurm cluster answers here (sbatch/sinfo with a 'debug' partition); "
                                                 "bash scripts/slurm-local.sh starts a one-node one (.ci/run does)")
def test_a_slurm_sweep_requeues_a_preempted_job_and_resumes_its_run(tmp_path, minari_root, tiny_overrides):
    out = tmp_path / "slurm"
    overrides = [*long_overrides(tiny_overrides), "seed=0,1,2"]
    thread, results, errors = in_thread(lambda: advrl.sweep(
        RECIPES / "bc.yaml", overrides, out, executor="slurm", slurm=["partition=debug,time=10,array_parallelism=2"]))
    victim = out / "seed=1"
    try:
        pid = wait_for_checkpoint(victim, errors)
        job = _job_id(pid)
        # what Slurm sends before a time limit or a preemption (submitit asks for USR2): the job requeues itself
        subprocess.run(["scancel", "--signal=USR2", job], check=True, timeout=30)
        submitted = json.loads((out / ".submitit" / "jobs.json").read_text())
        # the same command again while the jobs run (a new login, say): it waits for them, submits nothing
        again, results_again, errors_again = in_thread(lambda: advrl.sweep(
            RECIPES / "bc.yaml", overrides, out, executor="slurm", slurm=["partition=debug,time=10,array_parallelism=2"]))
        thread.join(timeout=240)
        again.join(timeout=60)
        assert not errors_again and results_again == [[]], errors_again
        assert json.loads((out / ".submitit" / "jobs.json").read_text()) == submitted
    finally:  # a test that failed leaves no job of its own in the queue
        ledger = out / ".submitit" / "jobs.json"
        if thread.is_alive() and ledger.exists():
            subprocess.run(["scancel", *json.loads(ledger.read_text()).values()], timeout=30)
    assert not thread.is_alive() and not errors, errors
    assert results == [[]]
    for seed in range(3):
        assert (out / f"seed={seed}" / "DONE").exists()
    check_resumed_once(victim, pid)
    stderr = "".join(p.read_text() for p in (out / ".submitit").rglob(f"{job}_0_log.err"))
    assert "Requeued job" in stderr or "requeue" in stderr.lower(), stderr[-2000:]


def test_slurm_options_become_submitit_parameters():
    from advrl.executors.slurm_jobs import parameters, parse_options

    options = parse_options(["partition=debug,time=1:30:00", "cpus_per_task=2", "gpus_per_task=1", "array_parallelism=8"])
    params = parameters(options, cpus=1, gpus=0)
    assert params["slurm_partition"] == "debug" and params["timeout_min"] == 90
    assert params["cpus_per_task"] == 2 and params["slurm_gpus_per_task"] == 1 and params["slurm_array_parallelism"] == 8
    assert params["slurm_setup"] == ["export OMP_NUM_THREADS=2"]  # each run's threads match its CPUs
    assert parameters(parse_options(["time=2-00:00:00"]), cpus=4, gpus=0)["timeout_min"] == 2880
    assert parameters({}, cpus=4, gpus=2)["cpus_per_task"] == 4  # --cpus-per-run is the default
    # the command line's --slurm takes space-separated items too
    from advrl.cli import build_parser

    args = build_parser().parse_args(["sweep", "r.yaml", "seed=0,1", "--out", "o", "--slurm", "partition=debug", "time=10"])
    assert args.slurm == ["partition=debug", "time=10"] and args.overrides == ["seed=0,1"]
