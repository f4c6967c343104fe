import argparse
import contextlib
import os
import queue
import random
import resource
import signal
import subprocess
import sys
import time

import pytest
import stomp

from agents.filters import Filter
from agents.plugins import REGISTRY
from agents.protocol import (
    Request,
    broadcast_topic,
    connect,
    encode,
    reply_queue,
    request_headers,
)
from agents.protocol.security import open_reply
from agents.simulator import (
    Simulator,
    fleet_identities,
    parse_shard,
    raise_file_limit,
    shard_range,
)
from portal.core.embedded_broker import EmbeddedBroker


def test_facts_are_deterministic_and_split_by_datacenter():
    dcs = {"a": [("127.0.0.1", 61613)], "b": [("127.0.0.1", 61614)]}
    one = Simulator(10, datacenters=dcs, seed=3)
    two = Simulator(10, datacenters=dcs, seed=3)
    assert one.nodes == two.nodes
    assert [n.facts["datacenter"] for n in one.nodes[:4]] == ["a", "b", "a", "b"]
    assert [d.config.brokers for d in one.daemons[:2]] == [dcs["a"], dcs["b"]]
    for node in one.nodes:
        assert {"base", "monitoring"} <= set(node.classes)
        assert node.agents == sorted(REGISTRY)  # simulated backends load everywhere
        assert node.identity.endswith(f".{node.facts['datacenter']}.example")
    web = [n for n in one.nodes if Filter.parse("role=web").matches(n)]
    assert all(Filter.parse("/apache|nginx/").matches(n) for n in web)
    assert Simulator(10, "127.0.0.1:61613", seed=4).nodes != one.nodes


def test_simulator_nodes_use_simulated_backends_and_no_audit():
    sim = Simulator(2, "127.0.0.1:61613", seed=1)
    first, second = sim.daemons
    assert first.config.backend == "simulated" and first.audit is None
    assert type(first.agents["service"].backend).__name__ == "SimulatedServiceBackend"
    assert type(first.agents["package"].backend).__name__ == "SimulatedPackageBackend"
    # each node has its own state: stopping a service on one leaves the other alone
    first.agents["service"].backend.change("cron", "stop")
    assert second.agents["service"].backend.status("cron") == "running"


@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_shards_split_the_same_fleet_without_gaps_or_overlap(shards):
    dcs = {"a": [("127.0.0.1", 61613)], "b": [("127.0.0.1", 61614)]}
    whole = Simulator(20, datacenters=dcs, seed=5, identity_prefix="x", sign_replies=False)
    parts = [
        Simulator(20, datacenters=dcs, seed=5, identity_prefix="x", sign_replies=False, **split)
        for split in ({"shard": shard, "shards": shards} for shard in range(shards))
    ]
    assert [n for part in parts for n in part.nodes] == whole.nodes
    assert [list(part.indices) for part in parts] == [
        list(shard_range(20, shard, shards)) for shard in range(shards)
    ]
    assert [d.config.brokers for d in parts[-1].daemons] == [
        d.config.brokers for d in whole.daemons[-len(parts[-1].daemons) :]
    ]


def test_shard_range_and_parse_shard():
    assert shard_range(10, 0, 3) == range(0, 3)
    assert shard_range(10, 2, 3) == range(6, 10)
    assert len(shard_range(2, 0, 4)) == 0  # more shards than nodes: some are empty
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(argparse.ArgumentTypeError, match="must be I/K"):
            parse_shard(bad)


def test_raise_file_limit_stops_at_the_hard_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert raise_file_limit(min(soft, 64)) == soft
    if hard != resource.RLIM_INFINITY:
        with pytest.raises(OSError, match=r"--processes"):
            raise_file_limit(hard + 1)


@pytest.mark.integration
@pytest.mark.integration
def test_processes_run_one_fleet_that_answers_and_stops_together():
    """--processes 2: both shards' nodes answer one broadcast; SIGTERM ends every process."""
    with EmbeddedBroker() as broker:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "agents.simulator", "--count", "6", "--processes", "2",
                "--brokers", broker.address, "--seed", "3", "--register-interval", "0",
            ],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            lines = []
            for line in proc.stdout:
                lines.append(line)
                if "nodes connected" in line:
                    break
            assert sum("ready: nodes" in line for line in lines) == 2, lines
            assert "6 nodes connected" in lines[-1] and "2 processes" in lines[-1], lines
            shard_pids = [int(p) for p in lines[-1].rsplit(": ", 1)[1].rstrip(")\n").split(",")]

            replies: queue.Queue[str] = queue.Queue()

            class Collect(stomp.ConnectionListener):
                def on_message(self, frame):
                    replies.put(open_reply(frame.body)[0].senderid)

            conn = connect(broker.address, None, None, listeners={"c": Collect()})
            reply_to = reply_queue("mcollective", "shardtest")
            conn.subscribe(reply_to, id="r", ack="auto")
            time.sleep(0.2)
            request = Request.new(
                collective="mcollective", agent="rpcutil", action="ping", callerid="user=t"
            )
            conn.send(
                broadcast_topic("mcollective", "rpcutil"),
                encode(request),
                headers=request_headers(reply_to, request.msgtime, request.ttl),
            )
            seen = set()
            deadline = time.monotonic() + 10
            while len(seen) < 6 and time.monotonic() < deadline:
                with contextlib.suppress(queue.Empty):
                    seen.add(replies.get(timeout=0.2))
            conn.disconnect()
            expected = {n.identity for n in Simulator(6, broker.address, seed=3).nodes}
            assert seen == expected
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        for pid in shard_pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


def test_fleet_identities_names_every_node_without_building_it():
    dcs = {"b": [("127.0.0.1", 61614)], "a": [("127.0.0.1", 61613)]}
    sim = Simulator(9, datacenters=dcs, seed=2, identity_prefix="f", sign_replies=False)
    assert fleet_identities(9, list(dcs), "f") == {n.identity for n in sim.nodes}


def test_the_services_fact_lists_services_the_simulated_backend_knows() -> None:
    from agents.plugins.service.backends import SIMULATED_SERVICES
    from agents.simulator import make_node_facts

    rng = random.Random(3)
    for index in range(50):
        _, facts, classes = make_node_facts(index, rng, "a", "node")
        assert set(facts["services"]) <= set(SIMULATED_SERVICES)
        assert ("nginx" in facts["services"]) == ("nginx" in classes)
