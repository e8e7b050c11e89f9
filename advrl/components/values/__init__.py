"""Registered values."""

from advrl.components.values import (
    expectile,  # noqa: F401
    td,  # noqa: F401
    td_min,  # noqa: F401
)
