from agents.filters import Filter
from agents.plugins import REGISTRY
from agents.simulator import Simulator


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
