"""Where advrl keeps results it would otherwise recompute (e.g. a selector's pre-trained labels)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$ADVRL_CACHE``, default ``~/.cache/advrl``."""
    return Path(os.environ.get("ADVRL_CACHE", Path.home() / ".cache" / "advrl"))
