"""Registration consumer benchmark: what sealing and enrolment cost per registration.

    .venv/bin/python bench/registrations.py [--nodes 10000] [--sqlite] [--keep] [--output FILE]

Builds ``--nodes`` registrations with the simulator's facts, each node with its own key, and
times the consumer's work per registration in this process, in the same run:

* **before** (the path before enrolment): ``decode_registration`` of the unsigned body, then
  ``record_registrations`` in batches of 500 (the consumer's flush size);
* **after, first sight**: ``open_registration`` (JSON, seal check against the key carried)
  and ``admit_registrations`` with auto-accept by token (the enrolment rows are created);
* **after, steady state**: the same registrations again (the enrolments exist: the usual
  5-minute re-registration).

Baseline: a bare stomp.py round trip through the same kind of broker (the embedded STOMP
broker, in-process), median of 500: each figure is also given as a ratio to it. The database
is a throwaway PostgreSQL one (dropped at the end unless ``--keep``), or SQLite with
``--sqlite``. Every step checks its outcome (all nodes written, none refused), so a smoke run
(``--nodes 50``, as the test suite does) proves the script still works.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from bench.support import throwaway_portal  # noqa: E402

BATCH = 500  # portal.inventory.registrations.FLUSH_MESSAGES
TOKEN = "bench-enrolment-token"  # noqa: S105 - a throwaway token for a throwaway database
BASELINE_ROUND_TRIPS = 500


def build_bodies(count: int) -> tuple[list[str], list[str]]:
    """(unsigned bodies, sealed bodies) for ``count`` simulated nodes."""
    from agents.protocol import Registration, encode
    from agents.protocol.security import SigningKey, enrolment_proof, seal_registration
    from agents.simulator import make_node_facts

    rng = random.Random(7)
    plain, sealed = [], []
    for index in range(count):
        identity, facts, classes = make_node_facts(index, rng, "ab"[index % 2], "bench")
        key = SigningKey.derive(f"bench:{identity}".encode())
        registration = Registration(
            identity=identity,
            collectives=["mcollective"],
            facts=facts,
            classes=classes,
            agents=["echo", "nrpe", "package", "puppet", "rpcutil", "service"],
            msgtime=time.time(),
            public_key=key.public_pem(),
            enrolment_proof=enrolment_proof(TOKEN, identity, key.key_id),
        )
        plain.append(encode(registration))
        sealed.append(seal_registration(registration, key))
    return plain, sealed


def time_before(bodies: list[str]) -> dict[str, float]:
    from agents.protocol import decode_registration
    from portal.inventory.services import record_registrations

    started = time.perf_counter()
    registrations = [decode_registration(body) for body in bodies]
    decoded = time.perf_counter()
    written = sum(
        record_registrations(registrations[i : i + BATCH])
        for i in range(0, len(registrations), BATCH)
    )
    done = time.perf_counter()
    assert written == len(bodies), f"{written} of {len(bodies)} written"
    return {"decode_s": decoded - started, "write_s": done - decoded, "total_s": done - started}


def time_after(bodies: list[str]) -> dict[str, float]:
    from agents.protocol.security import open_registration
    from portal.inventory.services import SealedRegistration, admit_registrations

    started = time.perf_counter()
    opened = [SealedRegistration(*open_registration(body)) for body in bodies]
    decoded = time.perf_counter()
    recorded, refused = 0, 0
    for i in range(0, len(opened), BATCH):
        admission = admit_registrations(opened[i : i + BATCH])
        recorded += admission.recorded
        refused += sum(admission.refused.values())
    done = time.perf_counter()
    assert (recorded, refused) == (len(bodies), 0), f"recorded {recorded}, refused {refused}"
    return {"decode_s": decoded - started, "write_s": done - decoded, "total_s": done - started}


def baseline_round_trip() -> float:
    """Median seconds of a bare stomp.py send-and-receive through the embedded broker."""
    import stomp

    from portal.core.embedded_broker import EmbeddedBroker

    class Arrivals(stomp.ConnectionListener):
        def __init__(self) -> None:
            self.event = threading.Event()

        def on_message(self, frame: Any) -> None:
            self.event.set()

    with EmbeddedBroker(port=0) as broker:
        conn = stomp.Connection([("127.0.0.1", broker.port)], heartbeats=(0, 0))
        arrivals = Arrivals()
        conn.set_listener("arrivals", arrivals)
        conn.connect(wait=True)
        conn.subscribe("/queue/bench.baseline", id="baseline", ack="auto")
        time.sleep(0.2)
        samples = []
        for _ in range(BASELINE_ROUND_TRIPS):
            arrivals.event.clear()
            started = time.perf_counter()
            conn.send("/queue/bench.baseline", "x" * 1500)  # about a registration's size
            assert arrivals.event.wait(5), "the baseline message never came back"
            samples.append(time.perf_counter() - started)
        conn.disconnect()
    return statistics.median(samples)


def median_round(rounds: list[dict[str, float]]) -> dict[str, float]:
    """The round with the median total time (its parts stay consistent with each other)."""
    return sorted(rounds, key=lambda r: r["total_s"])[len(rounds) // 2]


def reset_tables() -> None:
    from portal.inventory.models import Enrolment, Node

    Node.objects.all().delete()
    Enrolment.objects.all().delete()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database")
    parser.add_argument("--runs", type=int, default=3, help="rounds; the median is shown")
    parser.add_argument("--output", help="also write the figures as JSON to this file")
    args = parser.parse_args(argv)

    env = {"SWITCHBOARD_AUTO_ACCEPT": "token", "SWITCHBOARD_ENROLMENT_TOKEN": TOKEN}
    with throwaway_portal("registrations", sqlite=args.sqlite, keep=args.keep, env=env):
        print(f"building {args.nodes} registrations (each node its own key)...", flush=True)
        plain, sealed = build_bodies(args.nodes)
        load_before = os.getloadavg()[0]
        baseline = baseline_round_trip()
        # Rounds alternate the paths, so a machine busy for a while slows all of them alike.
        rounds: dict[str, list[dict[str, float]]] = {"before": [], "first": [], "steady": []}
        for _ in range(args.runs):
            reset_tables()
            rounds["before"].append(time_before(plain))
            reset_tables()
            rounds["first"].append(time_after(sealed))
            rounds["steady"].append(time_after(sealed))  # again: accepted nodes now
        before, first, steady = (median_round(rounds[k]) for k in ("before", "first", "steady"))
        load_after = os.getloadavg()[0]

    n = args.nodes
    rows = {"before": before, "after, first sight": first, "after, steady state": steady}
    where = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"\n{n} registrations, {where}, median of {args.runs} rounds")
    print(f"load average (1 min) {load_before:.1f} before, {load_after:.1f} after (wall-clock)")
    print(f"baseline: bare stomp.py round trip (embedded broker) median {baseline * 1e6:.0f} us")
    header = ("path", "decode us/reg", "write us/reg", "total us/reg", "x baseline")
    print(f"{header[0]:<22}{header[1]:>15}{header[2]:>14}{header[3]:>14}{header[4]:>12}")
    for name, figures in rows.items():
        per = {k: v / n * 1e6 for k, v in figures.items()}
        print(
            f"{name:<22}{per['decode_s']:>15.1f}{per['write_s']:>14.1f}{per['total_s']:>14.1f}"
            f"{figures['total_s'] / n / baseline:>12.2f}"
        )
    ratio = steady["total_s"] / before["total_s"]
    print(f"ratio after (steady) / before: {ratio:.2f}")
    print(f"ratio after (first sight) / before: {first['total_s'] / before['total_s']:.2f}")
    if args.output:
        Path(args.output).write_text(
            json.dumps({"nodes": n, "runs": args.runs, "baseline_s": baseline, **rows}, indent=2)
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
