"""TLS benchmark: what TLS on every link costs a request/reply and a connect.

    .venv/bin/python bench/tls.py [--round-trips 300] [--repeat 3] [--connects 100]

Two networks of the same shape run side by side (NOC bridged to dc_a and dc_b, Debian's
ActiveMQ): the TLS one from ``scripts/brokers up`` in var/activemq (bridges over ``ssl://``,
clients on the ``stomp+nio+ssl`` ports with client certificates), started if its ports do not
answer, and a plain one (``--no-tls``, port base 63610, in var/bench-plain) started for the
run and stopped after it.

round trip  a stand-in node on dc_a answers every message on /topic/mcollective.bench.agent to
            its reply-to queue; a client at the NOC publishes and waits for the answer, which
            crosses the bridges both ways. The baseline is the bare stomp.py round trip through
            the plain network, measured in the same run; the figure is TLS / plain.
connect     a STOMP CONNECT (and DISCONNECT) of the node login to dc_a: TCP vs TCP + mutual TLS.

Rounds alternate plain and TLS (--repeat of each) so a change of the machine's load hits
both; the load average is recorded before and after. Results: bench/results/tls.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

import stomp  # noqa: E402

from agents.protocol.transport import TLSConfig, connect  # noqa: E402
from harness.activemq import BROKER_DIR, brokers, network_description, network_json  # noqa: E402

PLAIN_DIR = BASE_DIR / "var" / "bench-plain"
PLAIN_PORT_BASE = 63610
TOPIC = "/topic/mcollective.bench.agent"
WARM_UP = 30  # round trips before timing: the bridge must carry the subscription first
PASSWORDS = {"portal": "portal-secret", "node": "node-secret"}


@dataclass(frozen=True)
class Network:
    """One network's addresses for a client, and the TLS material when it is the TLS one."""

    name: str
    noc: tuple[str, int]
    dc_a: tuple[str, int]
    tls: dict[str, TLSConfig] | None

    def client_tls(self, login: str) -> TLSConfig | None:
        return self.tls[login] if self.tls else None


def load_network(directory: Path, use_tls: bool) -> Network:
    description = network_description(directory)
    if description is None:
        raise SystemExit(f"no network described in {network_json(directory)}")
    return Network(
        "tls" if use_tls else "plain",
        description.stomp("noc", tls=use_tls),
        description.stomp("dc_a", tls=use_tls),
        description.clients() if use_tls else None,
    )


class _Responder(stomp.ConnectionListener):
    """The stand-in node: sends every message body back to its reply-to queue."""

    def __init__(self) -> None:
        self.connection: stomp.Connection | None = None

    def on_message(self, frame: Any) -> None:
        assert self.connection is not None
        self.connection.send(frame.headers["reply-to"], frame.body)


class _Waiter(stomp.ConnectionListener):
    def __init__(self) -> None:
        self.expected = ""
        self.arrived = threading.Event()

    def on_message(self, frame: Any) -> None:
        if frame.body == self.expected:
            self.arrived.set()


def round_trips(network: Network, count: int) -> list[float]:
    """Seconds per round trip NOC -> dc_a -> NOC, ``count`` of them after the warm-up."""
    responder = _Responder()
    node = connect(
        [network.dc_a], "node", PASSWORDS["node"], tls=network.client_tls("node"),
        listeners={"responder": responder},
    )  # fmt: skip
    responder.connection = node
    node.subscribe(TOPIC, id="bench", ack="auto")
    waiter = _Waiter()
    client = connect(
        [network.noc], "portal", PASSWORDS["portal"], tls=network.client_tls("portal"),
        listeners={"waiter": waiter},
    )  # fmt: skip
    reply_to = f"/queue/mcollective.reply.bench_{network.name}_{os.getpid()}"
    client.subscribe(reply_to, id="replies", ack="auto")
    timings: list[float] = []
    lost = 0
    try:
        sent = 0
        while len(timings) < count:
            waiter.expected = f"{network.name}-{sent}"
            waiter.arrived.clear()
            started = time.perf_counter()
            expires = str(int(time.time() * 1000) + 10_000)
            client.send(TOPIC, waiter.expected, headers={"reply-to": reply_to, "expires": expires})
            answered = waiter.arrived.wait(2.0)
            elapsed = time.perf_counter() - started
            sent += 1
            if sent <= WARM_UP:
                continue
            if not answered:
                lost += 1
                if lost > count // 10:
                    raise RuntimeError(f"{network.name}: {lost} round trips lost")
                continue
            timings.append(elapsed)
    finally:
        client.disconnect()
        node.disconnect()
    return timings


def connects(network: Network, count: int) -> list[float]:
    """Seconds per CONNECT + DISCONNECT of the node login at dc_a."""
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        connection = connect(
            [network.dc_a], "node", PASSWORDS["node"], tls=network.client_tls("node")
        )
        timings.append(time.perf_counter() - started)
        connection.disconnect()
    return timings


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "mean_ms": round(statistics.mean(ordered) * 1000, 3),
        "p95_ms": round(ordered[int(len(ordered) * 0.95)] * 1000, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--round-trips", type=int, default=300, help="timed, per round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each, alternating")
    parser.add_argument("--connects", type=int, default=100)
    args = parser.parse_args()
    # stomp.py warns about every TLS peer that closes without a TLS close_notify: noise here.
    logging.getLogger("stomp.py").setLevel(logging.ERROR)

    load_before = os.getloadavg()[0]
    brokers("up", timeout=300)  # the default network, with TLS; a no-op when it runs
    tls = load_network(BROKER_DIR, use_tls=True)
    brokers(
        "up", "--dir", str(PLAIN_DIR), "--port-base", str(PLAIN_PORT_BASE), "--no-tls", timeout=300
    )
    try:
        plain = load_network(PLAIN_DIR, use_tls=False)
        samples: dict[str, list[float]] = {"plain": [], "tls": []}
        for _ in range(args.repeat):
            for network in (plain, tls):
                samples[network.name] += round_trips(network, args.round_trips)
        connect_samples = {n.name: connects(n, args.connects) for n in (plain, tls)}
    finally:
        brokers("down", "--dir", str(PLAIN_DIR), timeout=300)
    result = {
        "round_trip": {name: summary(values) for name, values in samples.items()},
        "connect": {name: summary(values) for name, values in connect_samples.items()},
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpus": os.cpu_count(),
    }
    for kind in ("round_trip", "connect"):
        figures = result[kind]
        figures["ratio_median"] = round(
            figures["tls"]["median_ms"] / figures["plain"]["median_ms"], 2
        )
        figures["ratio_mean"] = round(figures["tls"]["mean_ms"] / figures["plain"]["mean_ms"], 2)
        plain_ms, tls_ms = figures["plain"], figures["tls"]
        print(
            f"{kind:10} plain median {plain_ms['median_ms']:.2f} ms (p95 {plain_ms['p95_ms']:.2f}),"
            f" TLS median {tls_ms['median_ms']:.2f} ms (p95 {tls_ms['p95_ms']:.2f}):"
            f" TLS/plain {figures['ratio_median']} (means {figures['ratio_mean']})"
        )
    print(f"load average {result['load_average'][0]} -> {result['load_average'][1]}")
    out = BASE_DIR / "bench" / "results" / "tls.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(BASE_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
