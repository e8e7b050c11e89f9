"""Registered schedules."""

from advrl.components.schedules import (
    constant,  # noqa: F401
    cosine,  # noqa: F401
    distribution_aware_threshold,  # noqa: F401
    linear,  # noqa: F401
)
