from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Operators (Django users), API tokens and the demo accounts."""

    name = "portal.accounts"
    label = "accounts"
