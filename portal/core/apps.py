from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Infrastructure shared by every app: settings helpers, checks, the STOMP channel layer."""

    name = "portal.core"
    label = "core"

    def ready(self) -> None:
        from portal.core import checks  # noqa: F401  (registers the system checks)
