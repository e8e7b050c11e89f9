"""Registered coefficients."""

from advrl.components.coefficients import (
    constant,  # noqa: F401
    sac_temperature,  # noqa: F401
)
