"""Registered actors."""

from advrl.components.actors import deterministic  # noqa: F401
from advrl.components.actors import gaussian  # noqa: F401
from advrl.components.actors import tanh_gaussian  # noqa: F401
