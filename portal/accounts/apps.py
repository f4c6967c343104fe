from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Operators (Django users), API tokens and the demo accounts."""

    name = "portal.accounts"
    label = "accounts"

    def ready(self) -> None:
        # Connects the receivers that close a person's WebSockets when their session ends.
        from portal.accounts import receivers  # noqa: F401
