"""What software and processor produced a dataset build, a behaviour policy or a run.

A build made from a behaviour policy or an online run (``--retrain``) is byte-reproducible
only with the same library versions and, since torch picks its kernels by processor, on the
same kind of processor. Records keep :func:`software` so that a build that comes out
different (another content fingerprint) can be explained with :func:`differences` instead
of guessed at.
"""

from __future__ import annotations

import hashlib
import platform
import sys
from importlib import metadata

# distributions whose versions change what a build or a run computes
PACKAGES = ("advrl", "torch", "numpy", "gymnasium", "mujoco", "minari", "tensordict", "torchrl")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def processor() -> dict:
    """The processor's model name and a short hash of its feature flags (torch and MuJoCo's
    kernels, hence their floating-point results, follow the flags)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as handle:  # Linux; elsewhere platform's name is what there is
            for line in handle:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = " ".join(sorted(fields.get("flags", fields.get("Features", "")).split()))
    return {
        "model": fields.get("model name") or platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "flags_sha256": hashlib.sha256(flags.encode()).hexdigest()[:12] if flags else None,
    }


def software() -> dict:
    """Python, the versions of :data:`PACKAGES` (None where not installed) and the processor."""
    return {
        "python": platform.python_version(),
        "platform": sys.platform,
        **{package: _version(package) for package in PACKAGES},
        "processor": processor(),
    }


def differences(recorded: dict | None, current: dict | None = None) -> list[str]:
    """``name: recorded -> current`` for every entry of ``recorded`` that differs now; the
    processor's entries are named ``processor.<key>``. An empty list when nothing recorded
    differs (or nothing was recorded)."""
    current = software() if current is None else current
    changed = []
    for key, before in (recorded or {}).items():
        now = current.get(key)
        if isinstance(before, dict):
            changed += [f"{key}.{line}" for line in differences(before, now if isinstance(now, dict) else {})]
        elif before != now:
            changed.append(f"{key}: {before} -> {now}")
    return changed
