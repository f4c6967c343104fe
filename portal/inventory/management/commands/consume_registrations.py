"""``manage.py consume_registrations``: keep the inventory up to date from nodes' registrations."""

from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand

from portal.broker.gateway import BrokerSettings
from portal.inventory.registrations import READY_LINE, RegistrationConsumer


class Command(BaseCommand):
    help = (
        "Take node registrations from the registration queue (shared with any other "
        "consumer) and record them; runs until SIGTERM or SIGINT."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        def ready() -> None:
            self.stdout.write(READY_LINE)
            self.stdout.flush()

        consumer = RegistrationConsumer(BrokerSettings.from_django(), on_ready=ready)
        signal.signal(signal.SIGTERM, lambda *_: consumer.stop())
        signal.signal(signal.SIGINT, lambda *_: consumer.stop())
        consumer.run()
        self.stdout.write(f"registration consumer stopped: {consumer.stats.summary()}")
