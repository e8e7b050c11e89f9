"""How many threads an advrl process computes with, and how its OpenMP threads wait.

OpenMP (libgomp in torch's CPU wheels) reads ``OMP_NUM_THREADS`` and ``OMP_WAIT_POLICY`` once,
when torch is imported. Its default wait policy spins (about 300,000 iterations) before a
thread sleeps, which on a shared machine burns the cores the other processes need: beside one
other busy process, a 2-thread TD3+BC ran at 14.7 steps/s with the default policy and 78.5
with ``OMP_WAIT_POLICY=PASSIVE`` (272 on the idle machine). So the CLI calls
:func:`prepare_environment` before anything imports torch, and the trainer applies
``train.threads`` with :func:`apply` (torch can change its thread count at any time; the wait
policy only before the import).

Precedence: a variable the user set wins; then ``train.threads`` (thread count only); then
advrl's choice: one thread per core, or a sweep worker's fair share (:func:`worker_environment`).
This module must not import torch at import time.
"""

from __future__ import annotations

import os
import sys

VARIABLES = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")
# names the OMP variables that advrl set, and why (``OMP_NUM_THREADS=cores,...``), so that
# a child advrl process (a sweep worker) tells advrl's choices from the user's
MARK = "ADVRL_OMP_CHOSEN"


def cores() -> int:
    """The physical cores this process may run on: torch's own default is a thread per physical
    core, since a second hyperthread on a core slows a compute-bound step rather than helps."""
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1
    physical = _physical_cores(allowed)
    return len(physical) if physical else len(allowed)


def _physical_cores(allowed: set[int]) -> set[tuple[str, str]]:
    """(package, core) pairs of the allowed logical CPUs, from /proc/cpuinfo (empty if unknown)."""
    try:
        with open("/proc/cpuinfo") as handle:
            blocks = handle.read().split("\n\n")
    except OSError:
        return set()
    found = set()
    for block in blocks:
        fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in block.splitlines())}
        if fields.get("processor", "").isdigit() and int(fields["processor"]) in allowed and "core id" in fields:
            found.add((fields.get("physical id", "0"), fields["core id"]))
    return found


def _chosen(environ) -> dict[str, str]:
    """The variables advrl set in ``environ``, with the reason for each."""
    pairs = (item.partition("=") for item in environ.get(MARK, "").split(",") if item)
    return {name: reason for name, _, reason in pairs}


def _set(environ, name: str, value: str, reason: str) -> None:
    environ[name] = value
    environ[MARK] = ",".join(f"{k}={v}" for k, v in {**_chosen(environ), name: reason}.items())


def user_set(name: str, environ=None) -> bool:
    """True if ``name`` is in the environment and advrl did not put it there."""
    environ = os.environ if environ is None else environ
    return name in environ and name not in _chosen(environ)


def prepare_environment(environ=None) -> None:
    """Before torch is imported: the passive wait policy and one thread per core, for each of
    the two variables that is not already set (by the user, or by a parent advrl sweep)."""
    environ = os.environ if environ is None else environ
    # imported already (advrl.cli.main called from Python): the policy reaches child processes only
    late = " (torch was imported first: in effect for child processes only)" if "torch" in sys.modules else ""
    if "OMP_WAIT_POLICY" not in environ:
        _set(environ, "OMP_WAIT_POLICY", "PASSIVE", "advrl" + late)
    if "OMP_NUM_THREADS" not in environ:
        _set(environ, "OMP_NUM_THREADS", str(cores()), "one per core")


def worker_environment(workers: int, environ=None) -> dict[str, str]:
    """The environment of one of ``workers`` concurrent advrl processes: each gets a fair share
    of the cores (cores // workers threads, at least 1) unless the user fixed OMP_NUM_THREADS."""
    env = dict(os.environ if environ is None else environ)
    if not user_set("OMP_NUM_THREADS", env):
        _set(env, "OMP_NUM_THREADS", str(max(1, cores() // max(1, workers))), f"{workers} workers share {cores()} cores")
    if not user_set("OMP_WAIT_POLICY", env):
        _set(env, "OMP_WAIT_POLICY", "PASSIVE", "advrl")
    return env


def apply(threads: int = 0) -> dict:
    """Use ``threads`` (``train.threads``; 0: keep advrl's or torch's choice) unless the user
    set OMP_NUM_THREADS; returns what the process computes with, and why, for the run's
    records."""
    import torch

    chosen = _chosen(os.environ)
    if user_set("OMP_NUM_THREADS"):
        threads_from = "OMP_NUM_THREADS (environment)"
    elif threads > 0:
        torch.set_num_threads(int(threads))
        threads_from = "train.threads"
    else:
        threads_from = f"advrl: {chosen['OMP_NUM_THREADS']}" if "OMP_NUM_THREADS" in chosen else "torch default"
    policy = os.environ.get("OMP_WAIT_POLICY")
    if policy is None:
        policy_from = "unset: OpenMP spins before it sleeps"
    elif "OMP_WAIT_POLICY" in chosen:
        policy_from = chosen["OMP_WAIT_POLICY"]
    else:
        policy_from = "OMP_WAIT_POLICY (environment)"
    return {"threads": torch.get_num_threads(), "threads_from": threads_from, "omp_wait_policy": policy, "omp_wait_policy_from": policy_from}


def describe(report: dict) -> str:
    """One log line for :func:`apply`'s report."""
    return (
        f"advrl: {report['threads']} thread(s) ({report['threads_from']}), "
        f"OMP_WAIT_POLICY={report['omp_wait_policy'] or 'unset'} ({report['omp_wait_policy_from']})"
    )


def log(report: dict) -> None:
    print(describe(report), file=sys.stderr, flush=True)
