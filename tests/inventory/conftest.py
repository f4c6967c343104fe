"""Fixtures for the inventory tests: registrations and nodes as the broker would bring them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from agents.protocol import Registration


@pytest.fixture
def make_registration() -> Callable[..., Registration]:
    def make(identity: str = "web01.dc1.example", **fields: Any) -> Registration:
        values: dict[str, Any] = {
            "collectives": ["mcollective"],
            "facts": {"customer": "acme", "environment": "prod"},
            "classes": ["base", "apache"],
            "agents": ["rpcutil"],
            "msgtime": time.time(),
        }
        values.update(fields)
        return Registration(identity=identity, **values)

    return make
