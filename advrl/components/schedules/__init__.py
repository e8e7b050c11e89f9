"""Registered schedules."""

from advrl.components.schedules import constant  # noqa: F401
from advrl.components.schedules import cosine  # noqa: F401
from advrl.components.schedules import linear  # noqa: F401
