"""Registered constraints."""

from advrl.components.constraints import (
    a2pr_adaptive,  # noqa: F401
    advantage_aware_bc,  # noqa: F401
    awr,  # noqa: F401
    bc_mse,  # noqa: F401
    cql_penalty,  # noqa: F401
    generative_bc,  # noqa: F401
)
