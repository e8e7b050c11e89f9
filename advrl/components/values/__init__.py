"""Registered values."""

from advrl.components.values import expectile  # noqa: F401
