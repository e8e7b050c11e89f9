"""Registered advantages."""

from advrl.components.advantages import (
    q_minus_v,  # noqa: F401
    tanh_q_minus_v,  # noqa: F401
)
