"""Registered objectives."""

from advrl.components.objectives import (
    sac_actor,  # noqa: F401
    sac_critic,  # noqa: F401
    td3_actor,  # noqa: F401
    td3_critic,  # noqa: F401
    value_backup_critic,  # noqa: F401
)
