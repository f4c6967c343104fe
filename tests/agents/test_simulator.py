from agents.filters import Filter
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
        assert node.agents == ["echo", "rpcutil"]
        assert node.identity.endswith(f".{node.facts['datacenter']}.example")
    web = [n for n in one.nodes if Filter.parse("role=web").matches(n)]
    assert all(Filter.parse("/apache|nginx/").matches(n) for n in web)
    assert Simulator(10, "127.0.0.1:61613", seed=4).nodes != one.nodes
