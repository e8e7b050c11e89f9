"""Registered constraints."""

from advrl.components.constraints import awr  # noqa: F401
from advrl.components.constraints import bc_mse  # noqa: F401
from advrl.components.constraints import cql_penalty  # noqa: F401
