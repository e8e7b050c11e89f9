"""Atomic checkpoints: write to a temporary file, fsync, then rename over the old one.

A process killed mid-write (even with SIGKILL) leaves the previous checkpoint intact.
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt or does not match the run."""


def atomic_torch_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


LOCK_FILE = ".lock"


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on a run directory while a process trains in it.

    Two processes in one run (say a resumed run started while the first still runs) would
    overwrite each other's checkpoints and metrics, and the second's clean-up of stale
    temporaries would delete the first's checkpoint being written. The lock is ``flock`` on
    ``<run_dir>/.lock``: the kernel releases it when the holder ends, even by SIGKILL, so a
    crashed run never leaves a stale lock behind. (Not enforced where ``fcntl`` is missing.)
    """
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise CheckpointError(
                f"Run directory {run_dir} is in use by another advrl process (pid {holder}). "
                "Wait for it to finish, or stop it, before training or resuming in this directory."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


def remove_stale_temporaries(directory: Path) -> None:
    """Delete temporaries left by a write that was killed before its rename."""
    for tmp in directory.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}; the run saved none yet (nothing to resume from).")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated zip, wrong format, unpickling errors
        raise CheckpointError(
            f"Checkpoint {path} is corrupt or incomplete ({type(err).__name__}: {err}). "
            "Delete it to restart the run from scratch, or restore it from a copy."
        ) from err
    if not isinstance(state, dict) or "step" not in state or "components" not in state:
        raise CheckpointError(f"Checkpoint {path} is not an advrl checkpoint (no step/components).")
    return state


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
