"""Registered behaviors."""

