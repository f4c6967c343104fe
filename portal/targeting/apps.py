from django.apps import AppConfig


class TargetingConfig(AppConfig):
    """Saved filters: named target expressions, an operator's own or shared with a role."""

    name = "portal.targeting"
    label = "targeting"
