"""Atomic checkpoints: write to a temporary file, fsync, then rename over the old one.

A process killed mid-write (even with SIGKILL) leaves the previous checkpoint intact, and
the checkpoint before it is kept as ``previous.pt`` for when ``last.pt`` is damaged anyway.

Every ``.pt`` advrl reads goes through :func:`safe_load` (``torch.load(weights_only=True)``):
unpickling a file may otherwise call any Python function, so a crafted checkpoint, cache or
policy would run code under ``advrl eval``. What advrl saves is therefore tensors and plain
Python values only (random generator states included, see :func:`rng_state`).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from advrl.locks import pid_lock


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, corrupt or does not match the run."""


class UnsafeFileError(CheckpointError):
    """A .pt file holding Python objects that could run code when loaded."""


LAST, PREVIOUS = "last.pt", "previous.pt"


def _legacy_numpy_globals() -> list:
    """The exact numpy types a checkpoint of advrl before 2026-12-06 holds (numpy's random state,
    MuJoCo env state): plain arrays and scalars of numeric dtypes. Rebuilding them calls no other
    code, so such runs still resume; object arrays stay refused."""
    try:
        import numpy._core.multiarray as multiarray
    except ImportError:  # numpy 1.x
        import numpy.core.multiarray as multiarray

    numeric = [np.dtypes.BoolDType, np.dtypes.Float16DType, np.dtypes.Float32DType, np.dtypes.Float64DType]
    numeric += [getattr(np.dtypes, f"{sign}Int{bits}DType") for sign in ("", "U") for bits in (8, 16, 32, 64)]
    rebuild = [multiarray._reconstruct, multiarray.scalar]
    # pickles name these functions where the numpy that wrote them had them: numpy.core (1.x) or numpy._core (2.x)
    aliases = [(f, f"numpy.{core}.multiarray.{f.__name__}") for f in rebuild for core in ("core", "_core")]
    return [np.ndarray, np.dtype, *numeric, *rebuild, *aliases]


def safe_load(path: Path, what: str = "File") -> object:
    """``torch.load`` that cannot run code: tensors, containers and plain values only (plus
    :func:`_legacy_numpy_globals`). Raises :class:`UnsafeFileError` naming the Python objects a
    file would call; other read errors (truncated, not a torch file) propagate."""
    import pickle

    try:
        with torch.serialization.safe_globals(_legacy_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        allowed = {f"{g.__module__}.{g.__name__}" for g in _legacy_numpy_globals() if not isinstance(g, tuple)}
        refused = [name for name in _code_references(path) if name not in allowed]
        if not refused:
            raise  # not a pickle advrl can read at all: a damaged file
        raise UnsafeFileError(
            f"{what} {path} was not loaded: it holds Python objects ({', '.join(refused[:3])}) that could run code "
            "when loaded, and advrl never writes such files. Use only files advrl wrote; remove this one."
        ) from None


def _code_references(path: Path) -> list[str]:
    """The functions and classes a pickled file names, read without unpickling it."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not torch's zip format: a bare pickle, or torch's legacy stream of pickles
        pass
    import pickletools

    names, strings = [], []
    try:
        with open(path, "rb") as handle:
            while handle.peek(1) if hasattr(handle, "peek") else False:
                for op, arg, _ in pickletools.genops(handle):
                    if op.name in ("GLOBAL", "INST"):
                        names.append(str(arg).replace(" ", "."))
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        names.append(".".join(strings[-2:]))
                    elif isinstance(arg, str):
                        strings.append(arg)
    except Exception:  # damaged bytes: report what was found before them
        pass
    return names


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
    run_dir.mkdir(parents=True, exist_ok=True)

    def busy(holder: str) -> CheckpointError:
        return CheckpointError(
            f"Run directory {run_dir} is in use by another advrl process (pid {holder}). "
            "Wait for it to finish, or stop it, before training or resuming in this directory."
        )

    with pid_lock(run_dir / LOCK_FILE, busy):
        yield


def remove_stale_temporaries(directory: Path) -> None:
    """Delete temporaries left by a write that was killed before its rename."""
    for tmp in directory.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}; the run saved none yet (nothing to resume from).")
    try:
        state = safe_load(path, "Checkpoint")
    except UnsafeFileError:
        raise
    except Exception as err:  # truncated zip, wrong format
        raise CheckpointError(
            f"Checkpoint {path} is corrupt or incomplete ({read_error(err)}). "
            "Restore it from a copy, or move it aside and resume the run (--resume) to train it again from step 0 in its folder "
            "(its records are kept)."
        ) from err
    if not isinstance(state, dict) or "step" not in state or "components" not in state:
        raise CheckpointError(f"Checkpoint {path} is not an advrl checkpoint (no step/components).")
    return state


def read_error(err: Exception) -> str:
    """A short reason a .pt file did not load (torch's own messages run to paragraphs, and its
    advice to turn weights_only off is exactly what must not be done with such a file)."""
    import pickle

    if isinstance(err, pickle.UnpicklingError):
        return "not a file torch wrote"
    first = str(err).split(". ")[0].splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {first}"[:160]


def save_checkpoint(state: dict, path: Path) -> None:
    """Keep the current ``last.pt`` as ``previous.pt``, then write the new one atomically:
    a ``last.pt`` damaged later (disk, a copy cut short) still leaves a checkpoint to resume."""
    previous = path.with_name(PREVIOUS)
    # both names on one file (a save killed between the two steps): rename would do nothing
    if path.is_file() and not (previous.is_file() and os.path.samefile(path, previous)):
        fd, tmp = tempfile.mkstemp(prefix=f".{PREVIOUS}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.unlink(tmp)
        try:
            os.link(path, tmp)  # a second name for the old file: no copy, and last.pt never goes missing
        except OSError:  # file systems without hard links
            shutil.copyfile(path, tmp)
        os.replace(tmp, previous)
    atomic_torch_save(state, path)


def load_latest(folder: Path, set_aside: bool = False) -> tuple[dict, Path] | None:
    """The newest readable checkpoint in ``folder`` and its path: ``last.pt``, or with a warning
    ``previous.pt`` when ``last.pt`` cannot be read; None when there is neither. ``set_aside``
    renames a damaged ``last.pt`` to ``last.pt.damaged``, so the next save keeps the good
    ``previous.pt`` instead of rotating the damaged file over it."""
    last, previous = folder / LAST, folder / PREVIOUS
    if last.is_file():
        try:
            return load_checkpoint(last), last
        except CheckpointError as err:
            if not previous.is_file():
                raise
            reason = str(err).split(". ")[0]  # what is wrong, without the advice for when there is no previous.pt
        if set_aside:
            os.replace(last, last.with_name(LAST + ".damaged"))
        warn(f"{reason}; continuing from the checkpoint before it, {previous}"
             + (f" (the damaged file is kept as {last.name}.damaged)." if set_aside else "."))
    if previous.is_file():
        return load_checkpoint(previous), previous
    return None


def warn(message: str) -> None:
    print(f"advrl: warning: {message}", file=sys.stderr, flush=True)


def rng_state() -> dict:
    """The random generators' states as tensors and plain values (numpy's own tuple holds an
    ndarray, which a weights-only load refuses)."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    numpy_state = {"kind": kind, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    saved = state["numpy"]
    if isinstance(saved, dict):
        key = saved["key"].numpy().astype(np.uint32)
        saved = (saved["kind"], key, saved["pos"], saved["has_gauss"], saved["cached_gaussian"])
    np.random.set_state(saved)  # a tuple: checkpoints of advrl before 2026-12-06
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
