"""Typed readers for settings taken from the environment.

Each helper takes the variable's name and a safe embedded default, so a fresh checkout runs with
no environment at all and production switches parts on one variable at a time.
"""

from __future__ import annotations

import os


class ConfigurationError(ValueError):
    """An environment variable holds a value the portal cannot use."""


def env_str(name: str, default: str) -> str:
    """The variable's value, or ``default`` when it is unset or empty."""
    value = os.environ.get(name, "")
    return value if value else default


def env_bool(name: str, default: bool) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case); ``default`` when unset."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"{name}={raw!r} is not a boolean; use 1/0, true/false, yes/no")


def env_float(name: str, default: float) -> float:
    """A float, e.g. a timeout in seconds; ``default`` when unset."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated list with blanks dropped; ``default`` when unset."""
    raw = os.environ.get(name, "")
    items = [item.strip() for item in raw.split(",") if item.strip()]
    return items or list(default)
