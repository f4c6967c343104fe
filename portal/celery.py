"""The Celery application: tasks live in each app's ``tasks.py``."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The filesystem transport (embedded profile) needs its folders before the first message.
for folder_key in ("data_folder_in", "data_folder_out", "control_folder"):
    folder = app.conf.broker_transport_options.get(folder_key)
    if folder:
        os.makedirs(folder, exist_ok=True)
