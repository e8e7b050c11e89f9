"""Registered actors."""

from advrl.components.actors import (
    deterministic,  # noqa: F401
    gaussian,  # noqa: F401
    latent,  # noqa: F401
    tanh_gaussian,  # noqa: F401
)
