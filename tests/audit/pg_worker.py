"""Writes audit events from a separate process (run by test_postgres.py with DATABASE_URL).

    python -m tests.audit.pg_worker <label> <count> [--days-ago N]

Creates (or reuses) the user ``pgw-<label>`` and records ``count`` job.submitted events as
that user, each in its own transaction, as concurrent portal processes would.
"""

from __future__ import annotations

import argparse
import os
from datetime import timedelta
from unittest import mock

import django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("label")
    parser.add_argument("count", type=int)
    parser.add_argument("--days-ago", type=float, default=0.0)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    django.setup()

    from django.contrib.auth.models import User
    from django.utils import timezone

    from portal.audit.services import record_event

    user, _ = User.objects.get_or_create(username=f"pgw-{args.label}")
    moment = timezone.now() - timedelta(days=args.days_ago)
    with mock.patch("portal.audit.services.timezone.now", return_value=moment):
        for index in range(args.count):
            record_event(
                "job.submitted",
                actor=user,
                agent="service",
                action="restart",
                job_id=index,
                summary=f"{args.label} #{index}",
                data={"inputs": {"service": "nginx", "n": index}},
                nodes=[f"web{index % 5:02d}.example"],
            )


if __name__ == "__main__":
    main()
