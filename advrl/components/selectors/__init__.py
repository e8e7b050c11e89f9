"""Registered selectors."""

from advrl.components.selectors import (
    advantage_threshold,  # noqa: F401
    return_threshold,  # noqa: F401
)
