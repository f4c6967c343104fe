from django.apps import AppConfig


class JobsConfig(AppConfig):
    """Jobs: one agent action sent to the nodes a filter matches, and their replies."""

    name = "portal.jobs"
    label = "jobs"
