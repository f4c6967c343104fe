"""What the tests and the benchmarks share to run a real Switchboard and talk to it.

* ``harness.services``: is a local service there (``port_open``), a free port, and
  ``require_service`` (a test's skip, or in CI failure, when one is missing);
* ``harness.activemq``: the local ActiveMQ network of ``scripts/brokers``: ports, pid files,
  and ``network_description()``, a network's network.json (addresses, TLS material);
* ``harness.databases``: throwaway PostgreSQL databases;
* ``harness.stacks``: start a portal (worker, registration consumer, daphne) on the embedded
  profile or on the ActiveMQ network, with a known password and an API token;
* ``harness.portal``: ``PortalStack``, the running portal as its users reach it, and its
  database read directly;
* ``harness.replies``: who replied to a job, and who should have.

Plain Python: no import from ``tests`` or ``bench``; Django is only set up in the child
processes.
"""
