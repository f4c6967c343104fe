"""Many virtual nodes in one process, each a real NodeDaemon with its own STOMP connection.

Facts are generated from a seed, so the same ``--seed`` gives the same fleet; tests and the
portal's demo runner use the ``Simulator`` class directly.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agents.config import NodeConfig
from agents.daemon import NodeDaemon
from agents.filters import Node
from agents.plugins.base import BACKEND_SIMULATED
from agents.protocol.security import SigningKey, TrustedKeys
from agents.protocol.transport import format_brokers, parse_brokers

log = logging.getLogger(__name__)

CUSTOMERS = ("acme", "acmeinc", "globex", "initech")
ENVIRONMENTS = ("prod", "staging", "dev")
ROLES = ("web", "db", "cache", "lb")
OS_RELEASES = {"debian": ("11", "12"), "ubuntu": ("22.04", "24.04"), "rhel": ("8.9", "9.4")}
ROLE_CLASSES = {
    "web": (("apache",), ("nginx",)),
    "db": (("mysql",), ("postgresql",)),
    "cache": (("redis",),),
    "lb": (("haproxy",),),
}
START_THREADS = 64


def make_node_facts(
    index: int, rng: random.Random, datacenter: str, prefix: str
) -> tuple[str, dict[str, Any], list[str]]:
    """Identity, facts and classes for virtual node ``index`` (deterministic for a given rng)."""
    role = rng.choice(ROLES)
    os_name = rng.choice(sorted(OS_RELEASES))
    identity = f"{prefix}{index:04d}.{datacenter}.example"
    facts: dict[str, Any] = {
        "datacenter": datacenter,
        "customer": rng.choice(CUSTOMERS),
        "os": os_name,
        "os_release": rng.choice(OS_RELEASES[os_name]),
        "role": role,
        "environment": rng.choice(ENVIRONMENTS),
        "processorcount": rng.choice((2, 4, 8, 16, 32)),
        "memorysize_mb": rng.choice((2048, 4096, 8192, 16384, 65536)),
        "fqdn": identity,
    }
    classes = ["base", "monitoring", *rng.choice(ROLE_CLASSES[role]), f"role::{role}"]
    return identity, facts, classes


class Simulator:
    """N virtual nodes spread over datacenters; ``start()`` returns when all are subscribed.

    ``datacenters`` maps a datacenter name to its broker list; each node connects only to its
    own datacenter's brokers and gets the matching ``datacenter`` fact. With a single
    ``brokers`` list, every node is in datacenter ``dc1``.
    """

    def __init__(
        self,
        count: int,
        brokers: list[tuple[str, int]] | str | None = None,
        *,
        datacenters: dict[str, list[tuple[str, int]]] | None = None,
        seed: int = 0,
        collective: str = "mcollective",
        login: str | None = None,
        passcode: str | None = None,
        identity_prefix: str = "node",
        connect_timeout: float = 10.0,
        register_interval: float = 300.0,
        workers_per_node: int = 2,
        trusted_keys: list[str] | None = None,
        sign_replies: bool = True,
    ) -> None:
        """With ``trusted_keys`` (PEM files or directories) the nodes obey only requests
        signed by those keys; without, they accept unsigned requests (a lab fleet)."""
        if datacenters is None:
            if brokers is None:
                raise ValueError("give brokers or datacenters")
            pool = parse_brokers(brokers) if isinstance(brokers, str) else list(brokers)
            datacenters = {"dc1": pool}
        self.datacenters = datacenters
        self.register_interval = register_interval
        rng = random.Random(seed)  # noqa: S311 - reproducible fake facts, not security
        names = sorted(datacenters)
        trusted = TrustedKeys.from_files(trusted_keys or [])
        self.daemons: list[NodeDaemon] = []
        for index in range(count):
            dc = names[index % len(names)]
            identity, facts, classes = make_node_facts(index, rng, dc, identity_prefix)
            config = NodeConfig(
                identity=identity,
                facts=facts,
                classes=classes,
                collectives=[collective],
                main_collective=collective,
                brokers=datacenters[dc],
                login=login,
                passcode=passcode,
                connect_timeout=connect_timeout,
                register_interval=register_interval,
                workers=workers_per_node,
                # Virtual nodes must never restart services or install packages on this
                # machine; no audit log either (audit_log stays None) unless a caller sets one.
                backend=BACKEND_SIMULATED,
                require_signatures=bool(trusted_keys),
            )
            # The daemon builds its own agents, so each simulated backend keeps that node's state.
            # Each node has its own key, kept in memory: it signs replies and is registered.
            key = SigningKey.generate() if sign_replies else None
            self.daemons.append(NodeDaemon(config, trusted_keys=trusted, signing_key=key))
        self._stop = threading.Event()
        self._register_thread: threading.Thread | None = None

    @property
    def nodes(self) -> list[Node]:
        """The NodeView of every virtual node: identity, facts, classes, agents."""
        return [d.node for d in self.daemons]

    def start(self) -> Simulator:
        """Connect every node in parallel; raises the first BrokerUnavailable after cleanup."""
        self._stop.clear()
        with ThreadPoolExecutor(min(START_THREADS, max(1, len(self.daemons)))) as pool:
            futures = [pool.submit(d.start, register_periodically=False) for d in self.daemons]
            errors = [f.exception() for f in futures]
        failed = [e for e in errors if e is not None]
        if failed:
            self.stop()
            raise failed[0]
        if self.register_interval > 0:
            # One thread registers the whole fleet instead of one thread per node.
            self._register_thread = threading.Thread(
                target=self._register_loop, name="simulator-register", daemon=True
            )
            self._register_thread.start()
        return self

    def _register_loop(self) -> None:
        while not self._stop.wait(self.register_interval):
            for daemon in self.daemons:
                daemon.publish_registration()

    def stop(self) -> None:
        """Disconnect every node (in parallel, so a large fleet stops quickly)."""
        self._stop.set()
        with ThreadPoolExecutor(min(START_THREADS, max(1, len(self.daemons)))) as pool:
            list(pool.map(lambda d: d.stop(), self.daemons))

    def stats(self) -> dict[str, int]:
        """Counters summed over every node."""
        total: dict[str, int] = {}
        for daemon in self.daemons:
            for key, value in daemon.stats().items():
                total[key] = total.get(key, 0) + value
        return total

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _parse_dc(values: list[str]) -> dict[str, list[tuple[str, int]]]:
    datacenters = {}
    for value in values:
        name, sep, spec = value.partition("=")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"--dc {value!r} must be NAME=host:port[,host:port]")
        datacenters[name] = parse_brokers(spec)
    return datacenters


def main(argv: list[str] | None = None) -> int:
    """``switchboard-simulator --count 50 --brokers 127.0.0.1:61613``: run until interrupted."""
    parser = argparse.ArgumentParser(prog="switchboard-simulator", description=__doc__)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--brokers", help="host:port[,host:port] for every node")
    parser.add_argument(
        "--dc", action="append", default=[], help="NAME=host:port[,...]; repeat per datacenter"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--collective", default="mcollective")
    parser.add_argument("--login", default=os.environ.get("SWITCHBOARD_NODE_LOGIN"))
    parser.add_argument("--passcode", default=os.environ.get("SWITCHBOARD_NODE_PASSCODE"))
    parser.add_argument("--identity-prefix", default="node")
    parser.add_argument("--register-interval", type=float, default=300.0)
    parser.add_argument(
        "--trusted-key",
        action="append",
        default=[],
        help="public key (PEM file or directory of *.pub) whose signed requests nodes obey; "
        "without one, nodes accept unsigned requests",
    )
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    try:
        datacenters = _parse_dc(args.dc) if args.dc else None
        if datacenters is None and not args.brokers:
            parser.error("give --brokers or at least one --dc")
        sim = Simulator(
            args.count,
            args.brokers,
            datacenters=datacenters,
            seed=args.seed,
            collective=args.collective,
            login=args.login,
            passcode=args.passcode,
            identity_prefix=args.identity_prefix,
            register_interval=args.register_interval,
            trusted_keys=args.trusted_key,
        )
    except (ValueError, OSError, argparse.ArgumentTypeError) as exc:
        parser.error(str(exc))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        sim.start()
    except ConnectionError as exc:
        print(f"simulator: {exc}", flush=True)
        return 1
    where = "; ".join(f"{dc}={format_brokers(b)}" for dc, b in sorted(sim.datacenters.items()))
    print(f"simulator: {args.count} nodes connected to {where}", flush=True)
    stop.wait()
    sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
