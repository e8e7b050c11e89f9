"""Cross-process locks on files (``flock``): the kernel releases them when their holder ends,
even by SIGKILL, so a crashed process never leaves a stale lock behind. Where ``fcntl`` is
missing (Windows) nothing is locked."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator


def try_lock(handle, wait: bool = False) -> bool:
    """Take the exclusive lock of an open file; False if another process holds it (never with
    ``wait``, which blocks until it is free)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def pid_lock(path: str | os.PathLike, busy: Callable[[str], Exception] | None = None) -> Iterator[None]:
    """Hold the lock of ``path`` while the block runs, with this process's pid written in it.

    Held by another process: raise ``busy(holder_pid)`` at once, or, when ``busy`` is None,
    wait until it is free."""
    with open(path, "a+") as handle:
        if not try_lock(handle, wait=busy is None):
            handle.seek(0)
            raise busy(handle.read().strip() or "unknown")
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield  # closing the file releases the lock
