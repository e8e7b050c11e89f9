"""Registered behaviors."""

from advrl.components.behaviors import (
    cvae,  # noqa: F401
    vae,  # noqa: F401
)
