"""Registered coefficients."""

from advrl.components.coefficients import (
    constant,  # noqa: F401
    sac_temperature,  # noqa: F401
    state_adaptive,  # noqa: F401
)
