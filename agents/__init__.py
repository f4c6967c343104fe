"""Switchboard node side: wire protocol, filters, DDL, agents, node daemon and simulator.

Nothing in this package imports Django, Celery, Channels or ``portal``; the portal imports
``agents.protocol``, ``agents.filters`` and ``agents.ddl`` from here.
"""

__version__ = "0.1.0"
