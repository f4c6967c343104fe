from django.apps import AppConfig


class InventoryConfig(AppConfig):
    """Nodes as they registered themselves: identity, facts, classes, agents, keys."""

    name = "portal.inventory"
    label = "inventory"
