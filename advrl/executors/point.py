"""Training one sweep run inside a worker (a Ray task, a Slurm job): every phase it has left,
in this process.

In-process rather than in a child ``advrl train``: the process holding the run's lock is then
the worker itself, so a worker that dies (SIGKILL, lost node) is seen by its engine, which
starts the run again (Ray's ``max_retries``, Slurm's requeue); the new attempt finds the
run's checkpoint and resumes it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time

from advrl.sweep import SweepRun


def train_run(run: SweepRun) -> str:
    """Run ``run``'s remaining phases; returns "done", or raises RuntimeError naming its log."""
    from advrl.cli import main

    run.log.parent.mkdir(parents=True, exist_ok=True)
    while not run.finished():
        args = run.phase_args()
        with open(run.log, "a", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            print(f"[{time.strftime('%H:%M:%S')}] start {' '.join(args)} (pid {os.getpid()} on {socket.gethostname()})")
            code = main(args)
        if code != 0:
            raise RuntimeError(f"{run.name} failed (exit {code}); see {run.log}")
        run.mark_phase_done()
    return "done"
