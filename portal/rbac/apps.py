from django.apps import AppConfig
from django.db.models.signals import post_migrate


class RbacConfig(AppConfig):
    name = "portal.rbac"
    label = "rbac"
    verbose_name = "Roles and grants"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(_after_migrate, sender=self)


def _after_migrate(**kwargs: object) -> None:
    # The catalog follows the DDLs shipped with the code, and the built-in roles always exist:
    # both are facts of the deployment, not data an admin types in.
    from portal.rbac.services import ensure_builtin_roles, sync_catalog

    sync_catalog()
    ensure_builtin_roles()
