"""Errors a user or plug-in author can cause; the CLI prints them as one line (no traceback)."""

from __future__ import annotations


class RecipeError(ValueError):
    """A recipe that cannot be loaded or does not validate; the message names the path."""
