"""Registered selectors."""

from advrl.components.selectors import (
    advantage_threshold,  # noqa: F401
    iql_advantage,  # noqa: F401
    return_threshold,  # noqa: F401
    select_all,  # noqa: F401
)
