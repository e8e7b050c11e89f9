"""``--executor local``: each run in its own ``advrl train`` process on this machine, at most
``--workers`` at a time (:func:`advrl.sweep.run_jobs`)."""

from __future__ import annotations

import os

from advrl.executors import Executor
from advrl.sweep import SweepError, run_jobs


class LocalExecutor(Executor):
    name = "local"

    def check(self) -> None:
        if self.options.workers is not None and self.options.workers < 1:
            raise SweepError(f"--workers {self.options.workers}: give at least 1.")

    @property
    def workers(self) -> int:
        return self.options.workers or os.cpu_count() or 1

    def run(self, runs, on_done=None):
        # the default request (1) leaves each worker its fair share of the cores (or the user's OMP_NUM_THREADS)
        cpus = None if self.options.cpus_per_run == 1.0 else max(1, int(self.options.cpus_per_run))
        return run_jobs(runs, self.workers, on_done=on_done, cpus_per_run=cpus)
