"""Is each configured broker reachable with the portal's credentials? For the status page.

Each broker of the failover list is tried on its own (a STOMP CONNECT with the portal's login,
then DISCONNECT), so the page shows which one is down and why: refused login, closed
connection, ERROR frame, or nothing listening. State changes are logged.
"""

from __future__ import annotations

import logging

import stomp
from django.utils import timezone

from agents.protocol import BrokerUnavailable
from agents.protocol.transport import TLSConfig, connect, parse_brokers
from portal.broker.gateway import BrokerSettings
from portal.broker.models import BrokerLink

logger = logging.getLogger(__name__)

PROBE_TIMEOUT = 3.0


def probe(
    host: str,
    port: int,
    login: str,
    passcode: str,
    timeout: float = PROBE_TIMEOUT,
    tls: TLSConfig | None = None,
) -> str:
    """ "" when the broker accepts the portal's login (over TLS with ``tls``), otherwise why not."""
    try:
        connection = connect([(host, port)], login, passcode, timeout=timeout, tls=tls)
    except BrokerUnavailable as exc:
        return str(exc) or "no STOMP answer"
    except (OSError, stomp.exception.StompException) as exc:
        return f"{type(exc).__name__}: {exc}"
    try:
        connection.disconnect()
    except (OSError, stomp.exception.StompException):
        logger.debug("disconnect after a probe of %s:%s failed", host, port)
    return ""


def check_brokers(config: BrokerSettings | None = None) -> list[BrokerLink]:
    """Probe every configured broker and record what was seen; returns the rows."""
    config = config or BrokerSettings.from_django()
    rows = []
    for host, port in parse_brokers(config.brokers):
        address = f"{host}:{port}"
        error = probe(host, port, config.login, config.passcode, tls=config.tls)
        rows.append(record_state(address, error))
    BrokerLink.objects.exclude(address__in=[row.address for row in rows]).delete()
    return rows


def record_state(address: str, error: str) -> BrokerLink:
    now = timezone.now()
    connected = not error
    link = BrokerLink.objects.filter(address=address).first()
    if link is None:
        link = BrokerLink(address=address, connected=connected, since=now)
    elif link.connected != connected:
        link.connected, link.since = connected, now
        if connected:
            logger.warning("broker %s is reachable again", address)
        else:
            logger.warning("broker %s is unreachable: %s", address, error)
    link.checked_at = now
    link.last_error = error
    link.save()
    return link
