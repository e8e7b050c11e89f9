"""Registered selectors."""

from advrl.components.selectors import return_threshold  # noqa: F401
