from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The audit history: append-only, hash-chained events, pages for managers, retention."""

    name = "portal.audit"
    label = "audit"

    def ready(self) -> None:
        from django.contrib.auth import signals

        from portal.accounts.signals import account_changed
        from portal.audit import checks, receivers  # noqa: F401  (checks register themselves)
        from portal.rbac.signals import access_changed

        signals.user_logged_in.connect(receivers.on_login, dispatch_uid="audit-login")
        signals.user_logged_out.connect(receivers.on_logout, dispatch_uid="audit-logout")
        signals.user_login_failed.connect(
            receivers.on_login_failed, dispatch_uid="audit-login-failed"
        )
        access_changed.connect(receivers.on_access_changed, dispatch_uid="audit-access-changed")
        account_changed.connect(receivers.on_account_changed, dispatch_uid="audit-account-changed")
