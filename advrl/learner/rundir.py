"""Which folders are advrl's runs: the ``.advrl-run`` mark, written first when a run starts.

Without it, any folder holding ``recipe.yaml`` or ``train.csv`` looked like a run to be
overwritten, and a run killed before its first checkpoint was silently started over (its
metrics deleted). So a new run only starts in a folder that is new, empty, or marked but
holding nothing yet; a marked run is continued with ``--resume`` (from its checkpoint, or from
step 0 when it was stopped before the first one); and a start that fails before training
removes what it created, so no half-made run folder is left to be refused next time.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from advrl.learner.checkpoint import LAST, LOCK_FILE, PREVIOUS, run_lock
from advrl.recipe import RecipeError

MARKER = ".advrl-run"
FORMAT = "advrl-run-v1"
# what a start leaves before it records anything: a folder holding only these has nothing to lose
_BOOKKEEPING = {MARKER, LOCK_FILE}


class RunDirError(RecipeError):
    """A run folder advrl may not start (or continue) a run in."""


def is_marked(run_dir: Path) -> bool:
    return (Path(run_dir) / MARKER).is_file()


def has_checkpoint(run_dir: Path) -> bool:
    folder = Path(run_dir) / "checkpoints"
    return (folder / LAST).is_file() or (folder / PREVIOUS).is_file()


def resumable(run_dir: Path) -> bool:
    """Whether ``--resume`` continues this folder (rather than a new run starting in it): it
    holds a checkpoint, or the mark and recipe of a run stopped before its first one."""
    run_dir = Path(run_dir)
    return has_checkpoint(run_dir) or (is_marked(run_dir) and (run_dir / "recipe.yaml").is_file())


def check_resumable(run_dir: Path, start_hint: str) -> None:
    """Raise unless ``run_dir`` holds the recipe ``--resume`` continues with."""
    if (Path(run_dir) / "recipe.yaml").is_file():
        return
    if is_marked(run_dir):
        raise RunDirError(
            f"{run_dir} was stopped before its run saved its recipe: there is nothing to resume. "
            f"Start the run again in it: `{start_hint} RECIPE ... --run-dir {run_dir}`."
        )
    raise RunDirError(f"{run_dir} is not an advrl run directory (no recipe.yaml).")


def _records(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir() if p.name not in _BOOKKEEPING) if run_dir.is_dir() else []


def check_not_foreign(run_dir: Path) -> None:
    """Raise if ``run_dir`` is a file, or a non-empty folder advrl did not mark."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--run-dir {run_dir} is a file, not a folder: pick an empty or new --run-dir.")
    records = _records(run_dir)
    if records and not is_marked(run_dir):
        raise RunDirError(
            f"{run_dir} is not empty ({', '.join(records[:3])}{', ...' if len(records) > 3 else ''}) and not an advrl run "
            f"(no {MARKER}): nothing in it is overwritten. Pick an empty or new --run-dir."
        )


def check_new(run_dir: Path, resume_hint: str) -> None:
    """Raise unless a new run may start in ``run_dir`` (see the module's docstring)."""
    check_not_foreign(run_dir)
    if not _records(run_dir):
        return
    if has_checkpoint(run_dir):
        raise RunDirError(f"{run_dir} already holds a run; continue it with `{resume_hint} {run_dir}` or pick another --run-dir.")
    raise RunDirError(
        f"{run_dir} holds a run stopped before its first checkpoint; continue it (from step 0, its records kept) "
        f"with `{resume_hint} {run_dir}`, or pick another --run-dir."
    )


def write_marker(run_dir: Path, kind: str) -> None:
    import advrl

    body = {"format": FORMAT, "kind": kind, "advrl_version": advrl.__version__,
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
    (run_dir / MARKER).write_text(json.dumps(body) + "\n")


def adopt(run_dir: Path, kind: str) -> None:
    """Mark a run that an advrl before the mark made, when it is resumed (it has a checkpoint)."""
    if not is_marked(run_dir) and has_checkpoint(run_dir):
        write_marker(run_dir, kind)


class Start:
    """Handed to the body of :func:`new_run`; ``started()`` once the run is set up."""

    def __init__(self) -> None:
        self.done = False

    def started(self) -> None:
        self.done = True


@contextlib.contextmanager
def new_run(run_dir: Path, kind: str, resume_hint: str) -> Iterator[Start]:
    """Claim ``run_dir`` for a new run and hold its lock for the block. If the block fails before
    ``started()``, what this start created is removed: the folder (and the parents it needed)
    when it did not exist, else its contents, which were nothing but a stale mark before."""
    run_dir = Path(run_dir)
    check_not_foreign(run_dir)  # before the lock: the user's own folder gets no .lock file
    created = _topmost_missing(run_dir)
    start, claimed = Start(), False
    try:
        with run_lock(run_dir):
            check_new(run_dir, resume_hint)  # under the lock: a run still going is reported as such
            write_marker(run_dir, kind)
            claimed = True  # from here on, everything in the folder is this start's
            yield start
    except BaseException:
        if claimed and not start.done:
            _remove_failed_start(run_dir, created)
        raise


def _topmost_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` (itself included) that does not exist yet."""
    missing = None
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing = folder
    return missing


def _remove_failed_start(run_dir: Path, created: Path | None) -> None:
    if created is None:  # the folder was there (empty but for a stale mark): empty it again
        for entry in run_dir.iterdir():
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    folder = run_dir.parent
    while created in (folder, *folder.parents):  # parents made for this run, if nothing else came in since
        try:
            os.rmdir(folder)
        except OSError:
            break
        folder = folder.parent
