"""Registered objectives."""

from advrl.components.objectives import sac_actor  # noqa: F401
from advrl.components.objectives import sac_critic  # noqa: F401
from advrl.components.objectives import td3_actor  # noqa: F401
from advrl.components.objectives import td3_critic  # noqa: F401
from advrl.components.objectives import value_backup_critic  # noqa: F401
