"""Registered constraints."""

from advrl.components.constraints import (
    awr,  # noqa: F401
    bc_mse,  # noqa: F401
    cql_penalty,  # noqa: F401
)
