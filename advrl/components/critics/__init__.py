"""Registered critics."""

from advrl.components.critics import q_ensemble  # noqa: F401
