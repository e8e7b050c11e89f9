"""Threads and OpenMP wait policy: the CLI sets them before torch starts (checked by what
libgomp itself reports), a run records them, the user's environment wins, and sweep workers
get a fair share of the cores."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from advrl import sweep, threads

REPO = Path(__file__).resolve().parent.parent
RECIPES = REPO / "recipes"
CONSOLE_SCRIPT = "import sys; from advrl.cli import main; sys.exit(main())"  # what the `advrl` script runs


def clean_env(**extra) -> dict[str, str]:
    """The test process's environment without any OMP choice, advrl's or the user's."""
    env = {k: v for k, v in os.environ.items() if k not in (*threads.VARIABLES, threads.MARK)}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return {**env, **extra}


def test_importing_the_cli_does_not_import_torch():
    """Both entry points import advrl.cli (and so the advrl package) before main() runs."""
    code = "import sys, advrl, advrl.cli; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"


@pytest.mark.parametrize("entry", [["-m", "advrl.cli"], ["-c", CONSOLE_SCRIPT]], ids=["python -m advrl.cli", "advrl script"])
def test_the_cli_gives_openmp_a_passive_wait_policy_before_torch_starts(entry):
    """libgomp prints the settings it initialised with (OMP_DISPLAY_ENV): a passive policy is
    GOMP_SPINCOUNT 0; set after torch's import it would still be the spinning default 300000."""
    env = clean_env(OMP_DISPLAY_ENV="verbose")
    proc = subprocess.run([sys.executable, *entry, "components", "actor"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    if "GOMP_SPINCOUNT" in proc.stderr:  # GNU libgomp (torch's Linux wheels) shows the policy as a spin count
        assert "GOMP_SPINCOUNT = '0'" in proc.stderr
    else:  # another OpenMP runtime (e.g. Intel's) prints the policy itself
        assert re.search(r"OMP_WAIT_POLICY\s*=\s*'PASSIVE'", proc.stderr), proc.stderr
    assert re.search(rf"OMP_NUM_THREADS\s*=\s*'{threads.cores()}'", proc.stderr), proc.stderr


def test_the_users_omp_variables_win_over_advrls_choice():
    env = clean_env(OMP_DISPLAY_ENV="verbose", OMP_WAIT_POLICY="ACTIVE", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "advrl.cli", "components", "actor"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "OMP_WAIT_POLICY = 'ACTIVE'" in proc.stderr and "OMP_NUM_THREADS = '1'" in proc.stderr


def train(tmp_path: Path, name: str, minari_root: Path, tiny_overrides: list[str], extra: list[str], progress: bool = False,
          **env) -> tuple[dict, str]:
    run_dir = tmp_path / name
    command = [sys.executable, "-m", "advrl.cli", "train", str(RECIPES / "bc.yaml"), *tiny_overrides, "eval.episodes=0",
               *extra, "--run-dir", str(run_dir), *([] if progress else ["--no-progress"])]
    proc = subprocess.run(command, env=clean_env(MINARI_DATASETS_PATH=str(minari_root), **env), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads((run_dir / "software.json").read_text())["threads"], proc.stderr


def test_a_run_records_its_threads_and_wait_policy_and_the_environment_wins(tmp_path, minari_root, tiny_overrides):
    chosen, log = train(tmp_path, "auto", minari_root, tiny_overrides, [], progress=True)
    assert chosen == {"threads": threads.cores(), "threads_from": "advrl: one per core",
                      "omp_wait_policy": "PASSIVE", "omp_wait_policy_from": "advrl"}
    assert threads.describe(chosen) in log  # the same, as one line on stderr beside the progress bar
    chosen, quiet = train(tmp_path, "recipe", minari_root, tiny_overrides, ["train.threads=1"])
    assert "thread(s)" not in quiet  # --no-progress: only software.json says it
    assert (chosen["threads"], chosen["threads_from"]) == (1, "train.threads")
    chosen, _ = train(tmp_path, "user", minari_root, tiny_overrides, ["train.threads=2"], OMP_NUM_THREADS="1", OMP_WAIT_POLICY="ACTIVE")
    assert chosen == {"threads": 1, "threads_from": "OMP_NUM_THREADS (environment)",
                      "omp_wait_policy": "ACTIVE", "omp_wait_policy_from": "OMP_WAIT_POLICY (environment)"}


def test_train_threads_is_applied_in_process_and_validated(monkeypatch):
    from advrl.recipe import RecipeError, load_recipe

    for name in (*threads.VARIABLES, threads.MARK):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    try:
        assert threads.apply(1)["threads"] == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    with pytest.raises(RecipeError, match=r"train.threads=-1 is out of range: must be >= 0\."):
        load_recipe(RECIPES / "bc.yaml", ["train.threads=-1"])


@dataclass
class EnvJob:
    """A sweep job whose process prints the OMP variables it was started with."""

    name: str
    log: Path

    def command(self) -> list[str]:
        return [sys.executable, "-c", "import os, json; print(json.dumps({k: os.environ.get(k) for k in ('OMP_NUM_THREADS', 'OMP_WAIT_POLICY')}))"]

    def mark_phase_done(self) -> bool:
        return True


@pytest.mark.parametrize(("cores", "workers", "share"), [(4, 2, "2"), (2, 2, "1"), (2, 3, "1"), (8, 3, "2")])
def test_sweep_workers_get_a_fair_share_of_the_cores(tmp_path, monkeypatch, cores, workers, share):
    for name in (*threads.VARIABLES, threads.MARK):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "cores", lambda: cores)
    jobs = [EnvJob(f"job{i}", tmp_path / f"job{i}.log") for i in range(workers)]
    assert sweep.run_jobs(jobs, workers=workers, poll=0.05) == []
    for job in jobs:
        assert json.loads(job.log.read_text()) == {"OMP_NUM_THREADS": share, "OMP_WAIT_POLICY": "PASSIVE"}


def test_a_sweep_keeps_the_users_thread_count_and_tells_its_share_from_the_users(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 4)
    for name in (*threads.VARIABLES, threads.MARK):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    job = EnvJob("job", tmp_path / "job.log")
    assert sweep.run_jobs([job], workers=2, poll=0.05) == []
    assert json.loads(job.log.read_text())["OMP_NUM_THREADS"] == "3"
    # the `advrl sweep` process itself set one thread per core before it started the workers:
    # that is advrl's choice, not the user's, so the workers get their share instead
    monkeypatch.delenv("OMP_NUM_THREADS")
    threads.prepare_environment()
    assert os.environ["OMP_NUM_THREADS"] == "4" and not threads.user_set("OMP_NUM_THREADS")
    env = threads.worker_environment(2)
    assert env["OMP_NUM_THREADS"] == "2" and not threads.user_set("OMP_NUM_THREADS", env)
