"""What the portal last saw of each broker it is configured to use."""

from __future__ import annotations

from django.db import models


class BrokerLink(models.Model):
    """One broker of ``STOMP_BROKERS``: reachable or not, since when, and the last error.

    Written by ``portal.broker.health.check_brokers`` (the worker's sweep, and the status page's
    "check now"); ``since`` moves only when the state flips.
    """

    address = models.CharField(max_length=255, unique=True)
    connected = models.BooleanField(default=False)
    since = models.DateTimeField(help_text="When the broker last became reachable or not.")
    checked_at = models.DateTimeField()
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["address"]

    def __str__(self) -> str:
        return f"{self.address}: {'up' if self.connected else 'down'}"
