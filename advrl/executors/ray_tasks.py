"""``--executor ray``: each run one Ray task asking for ``--cpus-per-run`` CPUs and
``--gpus-per-run`` GPUs, on the cluster at ``--ray-address`` (default: the Ray instance
running on this machine, else a new local one, stopped at the end).

A task whose worker process dies (killed, out of memory, node lost) is started again by Ray
(``max_retries``) and resumes the run from its checkpoint; a run that fails by itself (a
recipe error, a non-finite loss) is not retried: it would fail again.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from advrl.executors import Executor, require, settle
from advrl.sweep import SweepError

# the worker's environment: where datasets, caches and policies are, and no hub look-ups
FORWARDED = ("MINARI_DATASETS_PATH", "ADVRL_CACHE", "ADVRL_POLICIES_PATH", "HF_HUB_OFFLINE", "PYTHONPATH", "OMP_NUM_THREADS")


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of ``host:port`` or ``ray://host:port``; None for ``auto`` and ``local``."""
    if address in ("auto", "local"):
        return None
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SweepError(f"--ray-address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379, ray://head:10001, or auto).")
    return host, int(port)


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after Ray's own minute of retries, when nothing listens there."""
    target = _host_port(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError as err:
        raise SweepError(f"--ray-address {address}: no Ray cluster answers ({err.strerror or err}); "
                         "start one there (`ray start --head`) or leave --ray-address out to use this machine.") from None


def _token_auth_if_known() -> None:
    """Send this machine's Ray token when there is one: `ray start` enables token authentication
    by default, and Ray 2.60's driver sends no token to a given address unless RAY_AUTH_MODE says
    so (a cluster without authentication ignores it)."""
    token = os.environ.get("RAY_AUTH_TOKEN") or Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token")).is_file()
    if token and "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"


def _train(run):
    from advrl.executors.point import train_run

    return train_run(run)


class RayExecutor(Executor):
    name = "ray"

    def check(self) -> None:
        if self.options.ray_address:  # before Ray is imported: it reads RAY_AUTH_MODE once (a local instance sets its own up)
            _token_auth_if_known()
        require("ray", "ray")
        if self.options.cpus_per_run <= 0 or self.options.gpus_per_run < 0:
            raise SweepError("--cpus-per-run must be > 0 and --gpus-per-run >= 0.")
        if self.options.ray_address:
            check_reachable(self.options.ray_address)

    def _connect(self, ray) -> bool:
        """Attach to (or start) Ray; True when this call started it, so it stops it again."""
        if ray.is_initialized():  # a session opened by the caller (a notebook, a test): use it as it is
            return False
        env = {name: os.environ[name] for name in FORWARDED if name in os.environ}
        try:
            ray.init(address=self.options.ray_address, runtime_env={"env_vars": env}, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        except (ConnectionError, TimeoutError, RuntimeError) as err:
            first = str(err).strip().splitlines()[0]
            if not self.options.ray_address:
                raise SweepError(f"--executor ray: Ray did not start here ({first}); see /tmp/ray/session_latest/logs, "
                                 "or give --ray-address of a running cluster.") from None
            raise SweepError(f"--ray-address {self.options.ray_address}: {first} (a cluster with token authentication "
                             "needs its token here: RAY_AUTH_TOKEN or ~/.ray/auth_token).") from None
        return True

    def run(self, runs, on_done=None):
        ray = require("ray", "ray")
        started = self._connect(ray)
        task = ray.remote(_train).options(num_cpus=self.options.cpus_per_run, num_gpus=self.options.gpus_per_run,
                                          max_retries=self.options.max_retries, retry_exceptions=False)
        pending = {}
        try:
            pending = {task.remote(run.portable()): run for run in runs}
            print(f"submitted {len(pending)} Ray tasks ({self.options.cpus_per_run:g} CPU, {self.options.gpus_per_run:g} GPU each)", flush=True)
            return self._collect(ray, pending, on_done)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)  # the runs resume from their checkpoints next time
            print("stopped; run again to resume", flush=True)
            raise
        finally:
            if started:
                ray.shutdown()

    @staticmethod
    def _collect(ray, pending: dict, on_done) -> list:
        failed = []
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=60)
            for ref in ready:
                settle(pending.pop(ref), lambda ref=ref: ray.get(ref), on_done, failed)
        return failed
