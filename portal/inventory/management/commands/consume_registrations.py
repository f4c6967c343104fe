"""``manage.py consume_registrations``: keep the inventory up to date from nodes' registrations."""

from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand

from portal.broker.gateway import BrokerSettings
from portal.inventory.registrations import READY_LINE, RegistrationConsumer


class Command(BaseCommand):
    help = (
        "Subscribe to the registration topic and record every node's registration; "
        "runs until SIGTERM or SIGINT."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        def ready() -> None:
            self.stdout.write(READY_LINE)
            self.stdout.flush()

        consumer = RegistrationConsumer(BrokerSettings.from_django(), on_ready=ready)
        signal.signal(signal.SIGTERM, lambda *_: consumer.stop())
        signal.signal(signal.SIGINT, lambda *_: consumer.stop())
        consumer.run()
        stats = consumer.stats
        refused = ", ".join(f"{n} {why}" for why, n in sorted(stats.refused.items())) or "none"
        self.stdout.write(
            f"registration consumer stopped: {stats.received} received, {stats.malformed} "
            f"malformed, {stats.recorded} nodes written in {stats.flushes} flushes, "
            f"{stats.pending} pending, {stats.auto_accepted} auto-accepted; refused: {refused}"
        )
