"""Fan-out benchmark: one request to N nodes over the ActiveMQ network, raw vs the full pipe.

    .venv/bin/python -m bench.fanout [--nodes 100,1000,5000] [--repeat 3]
                                     [--discovery 0,2.0] [--profile-at 5000]
                                     [--nodes-per-process 1000] [--worker-threads 16]
                                     [--stack activemq|embedded] [--json FILE]

For each N it starts N simulated nodes split between dc_a and dc_b (``python -m
agents.simulator --processes K``: K = ceil(N / --nodes-per-process) shard processes of one
seeded fleet, identities ``<prefix><index>.<dc>.example``, trusting only this run's portal
key; each process runs its nodes' actions on one pool of --worker-threads threads) and
measures, against those same nodes:

raw   a bare stomp.py client at the NOC broker publishes one sealed ``rpcutil ping`` to
      /topic/mcollective.rpcutil.agent with a reply-to queue; time from publish to the last
      of the N replies.
full  a running portal (PostgreSQL throwaway database, Redis, a Celery worker, the
      registration consumer, daphne; started by harness.stacks.activemq_portal):
      POST /api/jobs/ (token auth, as the unscoped demo ``admin``) for rpcutil ping, then a
      logged-in WebSocket client on /ws/jobs/<id>/; time from the POST until the N-th distinct
      reply identity has reached the WebSocket (job.snapshot + job.frame messages). Measured
      once per setting in --discovery: 0 = inventory discovery, else a broadcast discovery
      with that timeout (the worker is restarted with SWITCHBOARD_DISCOVERY_TIMEOUT set).

Every reply set is checked against the fleet's identities (``same_nodes`` in the JSON): raw
and full must both be answered by exactly the N nodes started. Every request carries the
filter ``identity:/^<prefix>/`` so that only this run's nodes answer even if other clients
share the brokers (each node still receives and evaluates every request). Medians over
--repeat runs; each measurement records the 1-minute load average before and after it (the
machine may be shared). The brokers are reused when their STOMP ports already answer,
otherwise started with ``scripts/brokers up`` and stopped at the end.

--stack embedded runs the same on the embedded profile instead (the demo's: the embedded
STOMP broker on a free port for the portal and both datacenters, SQLite, no Redis;
harness.stacks.embedded_portal): nothing outside this checkout, for a smoke run at a tiny
size (tests/bench/test_fanout_bench.py); its figures are not the deployment's.

Limits are checked before each N: the simulated nodes need two threads each (stomp.py's
receiver and heart-beat; three with --worker-threads 0), counted against pid_max,
threads-max and ``ulimit -u``; when per-node pools would not fit, the shared pool is used
(and recorded), and an N that does not fit at all is skipped with the reason. A size that
fails is reported as such and the others still run; the portal's logs are then kept.

--profile-at N: after the measurements at N, run one more full-pipe job at N with
``py-spy record`` attached to the worker, daphne, the registration consumer and every
simulator process; collapsed stacks go to bench/results/pyspy-<N>-*.txt and a summary of the
hottest frames to the JSON and the log.

Modules: ``stacks`` (where it runs), ``processes`` (the nodes and the worker), ``machine``
(limits, threads, CPU), ``raw`` and ``full`` (the two measurements), ``measure`` (one N),
``pyspy`` (--profile-at), ``report`` (the table and the JSON), ``__main__`` (the command).
"""
