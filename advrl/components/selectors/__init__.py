"""Registered selectors."""

from advrl.components.selectors import advantage_threshold  # noqa: F401
from advrl.components.selectors import all  # noqa: F401
from advrl.components.selectors import iql_advantage  # noqa: F401
from advrl.components.selectors import return_threshold  # noqa: F401
