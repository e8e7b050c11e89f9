"""Registered advantages."""

from advrl.components.advantages import q_minus_v  # noqa: F401
