"""Registered coefficients."""

from advrl.components.coefficients import constant  # noqa: F401
from advrl.components.coefficients import sac_temperature  # noqa: F401
