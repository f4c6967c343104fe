from django.apps import AppConfig


class BrokerConfig(AppConfig):
    name = "portal.broker"
    label = "broker"
    verbose_name = "Broker network"
    default_auto_field = "django.db.models.BigAutoField"
