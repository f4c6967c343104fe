from typing import Any

from django.apps import AppConfig
from django.db.backends.signals import connection_created

from portal.inventory.filtering import sqlite_functions


def _register_sqlite_functions(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Give SQLite the nodes' own filter matcher, so ``Node.objects.matching`` runs in SQL."""
    if connection.vendor != "sqlite":
        return
    for name, arity, function in sqlite_functions():
        connection.connection.create_function(name, arity, function, deterministic=True)


class InventoryConfig(AppConfig):
    """Nodes as they registered themselves: identity, facts, classes, agents, keys."""

    name = "portal.inventory"
    label = "inventory"

    def ready(self) -> None:
        connection_created.connect(_register_sqlite_functions, dispatch_uid="inventory-sqlite")
