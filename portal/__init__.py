"""Switchboard's web portal: a Django project, one app per domain."""

from portal.celery import app as celery_app

__all__ = ("celery_app",)
