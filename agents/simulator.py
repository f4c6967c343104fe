"""Many virtual nodes, each a real NodeDaemon with its own STOMP connection.

Facts are generated from a seed, so the same ``--seed`` gives the same fleet; tests and the
portal's demo runner use the ``Simulator`` class directly.

One process carries about 1,000 nodes: each node costs one file descriptor and two threads
(stomp.py's receiver and heart-beat threads), plus its own action pool unless
``--worker-threads`` gives the process one shared pool. Larger fleets are split with
``--processes K``: the command then starts K shard processes (``--shard i/K``), one after
the other, each running a contiguous slice of the same fleet, so node ``i`` has the same
identity, datacenter and facts whatever the number of processes. The command raises its
open-files limit to what its nodes need and its GIL switch interval to 100 ms (see main).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from agents.config import NodeConfig
from agents.daemon import NodeDaemon
from agents.filters import Node
from agents.plugins.base import BACKEND_SIMULATED
from agents.protocol.security import SigningKey, TrustedKeys
from agents.protocol.transport import TLSConfig, format_brokers, parse_brokers

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
BASE_SERVICES = ("cron", "sshd", "rsyslog", "ntp")
ROLE_SERVICES = {"apache": "apache2", "nginx": "nginx"}
START_THREADS = 64
# Descriptors a shard process needs besides one socket per node (logs, pipes, imports).
SPARE_FILES = 64
READY_TEXT = "nodes connected"
SWITCH_INTERVAL = 0.1  # seconds; see main()


def shard_range(count: int, shard: int, shards: int) -> range:
    """The node indices shard ``shard`` of ``shards`` runs: a contiguous slice of ``count``."""
    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"shard {shard}/{shards}: want 0 <= shard < shards")
    return range(count * shard // shards, count * (shard + 1) // shards)


def parse_shard(value: str) -> tuple[int, int]:
    """``"2/5"`` -> ``(2, 5)``; raises ArgumentTypeError for anything else."""
    index, sep, total = value.partition("/")
    try:
        shard, shards = int(index), int(total)
        shard_range(0, shard, shards)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--shard {value!r} must be I/K with 0 <= I < K (e.g. 0/4)"
        ) from None
    if not sep:
        raise argparse.ArgumentTypeError(f"--shard {value!r} must be I/K (e.g. 0/4)")
    return shard, shards


def raise_file_limit(needed: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE to at least ``needed`` (up to the hard limit).

    Returns the soft limit now in force; raises OSError naming the hard limit when it is too
    low, so the caller can say "use more processes" instead of failing on the 1,025th socket.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, max(needed, soft))
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise OSError(
            f"{needed} file descriptors needed, the hard limit (ulimit -Hn) is {hard}: "
            "run fewer nodes per process (--processes)"
        )
    return soft


def node_identity(index: int, datacenter: str, prefix: str) -> str:
    """The identity of virtual node ``index``: ``<prefix><index:04d>.<datacenter>.example``."""
    return f"{prefix}{index:04d}.{datacenter}.example"


def fleet_identities(count: int, datacenters: list[str], prefix: str) -> set[str]:
    """Every identity of a ``count``-node fleet over ``datacenters`` (split as Simulator does)."""
    names = sorted(datacenters)
    return {node_identity(i, names[i % len(names)], prefix) for i in range(count)}


def make_node_facts(
    index: int, rng: random.Random, datacenter: str, prefix: str
) -> tuple[str, dict[str, Any], list[str]]:
    """Identity, facts and classes for virtual node ``index`` (deterministic for a given rng)."""
    role = rng.choice(ROLES)
    os_name = rng.choice(sorted(OS_RELEASES))
    identity = node_identity(index, datacenter, prefix)
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
    # What the node runs, as a list fact (the service form offers it as choices): only services
    # the simulated service backend knows, and no random draw, so other facts stay as seeded.
    facts["services"] = [*BASE_SERVICES, *(ROLE_SERVICES[c] for c in classes if c in ROLE_SERVICES)]
    return identity, facts, classes


class PooledNode(NodeDaemon):
    """A NodeDaemon whose received frames run on a pool shared with other simulated nodes."""

    def __init__(self, config: NodeConfig, *, pool: ThreadPoolExecutor, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._shared_pool = pool

    def submit(self, headers: dict[str, str], body: str | bytes) -> None:
        """Queue one received frame on the shared pool; never blocks the receiver thread."""
        try:
            self._shared_pool.submit(self.handle_frame, headers, body)
        except RuntimeError:
            log.debug("%s: frame arrived after shutdown; dropped", self.identity)


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
        sub_collectives: bool = False,
        login: str | None = None,
        passcode: str | None = None,
        identity_prefix: str = "node",
        connect_timeout: float = 10.0,
        register_interval: float = 300.0,
        workers_per_node: int = 2,
        worker_threads: int = 0,
        trusted_keys: list[str] | None = None,
        sign_replies: bool = True,
        shard: int = 0,
        shards: int = 1,
        tls: TLSConfig | None = None,
        enrolment_token: str | None = None,
    ) -> None:
        """With ``trusted_keys`` (PEM files or directories) the nodes obey only requests
        signed by those keys; without, they accept unsigned requests (a lab fleet).

        ``worker_threads`` > 0: the nodes run their actions on one pool of that many threads
        instead of a pool each, so a broadcast does not start a thread per node (on a small
        machine, 1,000 new threads at once starve the heart-beat threads); a slow action on
        one node (``echo sleep``) then delays the others.

        ``tls``: every node dials its brokers over TLS with this CA and client certificate
        (the brokers' STOMP over TLS ports).

        ``sub_collectives``: each node also joins its datacenter's sub-collective
        ``dc_<datacenter>`` (twice the subscriptions per node).

        ``shard``/``shards``: run only this slice of the ``count``-node fleet (see
        ``shard_range``); the facts of every node are still drawn in order, so a node is the
        same in every split.

        Each node's key is derived from ``seed`` and its identity, so the same fleet restarted
        presents the keys the portal pinned (a simulated key is no secret: never use a
        simulator's seed for real nodes). ``enrolment_token``: the nodes prove it in their
        registrations, for a portal that auto-accepts by token."""
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
        self.indices = shard_range(count, shard, shards)
        self.daemons: list[NodeDaemon] = []
        self._shared_pool = (
            ThreadPoolExecutor(worker_threads, thread_name_prefix="simulator-worker")
            if worker_threads > 0
            else None
        )
        for index in range(count):
            dc = names[index % len(names)]
            identity, facts, classes = make_node_facts(index, rng, dc, identity_prefix)
            if index not in self.indices:
                continue  # drawn anyway: the rng sequence must not depend on the split
            config = NodeConfig(
                identity=identity,
                facts=facts,
                classes=classes,
                collectives=[collective, f"dc_{dc}"] if sub_collectives else [collective],
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
                tls_ca=tls.ca_file if tls else None,
                tls_cert=tls.cert_file if tls else None,
                tls_key=tls.key_file if tls else None,
                enrolment_token=enrolment_token,
            )
            # The daemon builds its own agents, so each simulated backend keeps that node's state.
            # Each node has its own key, kept in memory: it signs replies and registrations.
            key = SigningKey.derive(f"{seed}:{identity}".encode()) if sign_replies else None
            if self._shared_pool is None:
                daemon = NodeDaemon(config, trusted_keys=trusted, signing_key=key)
            else:
                daemon = PooledNode(
                    config, trusted_keys=trusted, signing_key=key, pool=self._shared_pool
                )
            self.daemons.append(daemon)
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
        if self._shared_pool is not None:
            self._shared_pool.shutdown(wait=True)

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


def _where(datacenters: dict[str, list[tuple[str, int]]]) -> str:
    return "; ".join(f"{dc}={format_brokers(b)}" for dc, b in sorted(datacenters.items()))


def _shard_argv(args: argparse.Namespace, shard: int, shards: int) -> list[str]:
    """The command line of one shard process: the same fleet, one slice of it."""
    argv = [
        sys.executable, "-m", "agents.simulator", "--count", str(args.count),
        "--seed", str(args.seed), "--collective", args.collective,
        "--identity-prefix", args.identity_prefix,
        "--register-interval", str(args.register_interval), "--log-level", args.log_level,
        "--worker-threads", str(args.worker_threads), "--shard", f"{shard}/{shards}",
    ]  # fmt: skip
    if args.brokers:
        argv += ["--brokers", args.brokers]
    if args.sub_collectives:
        argv.append("--sub-collectives")
    for value in args.dc:
        argv += ["--dc", value]
    for key in args.trusted_key:
        argv += ["--trusted-key", key]
    for option in ("tls_ca", "tls_cert", "tls_key"):
        if getattr(args, option):
            argv += [f"--{option.replace('_', '-')}", getattr(args, option)]
    return argv


def _relay(stream: IO[str], ready: threading.Event) -> None:
    """Copy a shard's stdout to ours; its "shard ... ready" line sets ``ready``."""
    for line in stream:
        if line.startswith("simulator: shard ") and " ready" in line:
            ready.set()
        sys.stdout.write(line)
        sys.stdout.flush()


def _end(processes: list[subprocess.Popen[str]], grace: float = 30.0) -> None:
    """SIGTERM every shard still running, then SIGKILL what is left after ``grace``."""
    for proc in processes:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in processes:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _exited(processes: list[subprocess.Popen[str]]) -> str | None:
    for index, proc in enumerate(processes):
        if proc.poll() is not None:
            return f"shard {index}/{len(processes)} (pid {proc.pid}) exited with {proc.returncode}"
    return None


def run_shards(
    args: argparse.Namespace, datacenters: dict[str, list[tuple[str, int]]], stop: threading.Event
) -> int:
    """Run the fleet as ``args.processes`` shard processes until ``stop``; 1 if one fails.

    The shards stay in this process group, so a signal to the group (Ctrl-C, a supervisor's
    killpg) reaches every one; each also stops on its own when this process goes away.
    """
    shards = args.processes
    env = dict(os.environ)
    # Credentials travel in the environment, not on the shards' command lines.
    if args.login:
        env["SWITCHBOARD_NODE_LOGIN"] = args.login
    if args.passcode:
        env["SWITCHBOARD_NODE_PASSCODE"] = args.passcode
    started = time.monotonic()
    processes: list[subprocess.Popen[str]] = []
    try:
        # One shard at a time: each connect burst (keys, agents, CONNECT and SUBSCRIBE for
        # ~1,000 nodes) gets the CPU and the brokers to itself, instead of all at once.
        for shard in range(shards):
            proc = subprocess.Popen(
                _shard_argv(args, shard, shards),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            processes.append(proc)
            ready = threading.Event()
            assert proc.stdout is not None
            threading.Thread(target=_relay, args=(proc.stdout, ready), daemon=True).start()
            while not ready.is_set():
                failure = _exited(processes)
                if failure:
                    print(f"simulator: {failure} before its nodes connected", flush=True)
                    return 1
                if stop.wait(0.2):
                    return 0
        pids = ",".join(str(p.pid) for p in processes)
        print(
            f"simulator: {args.count} {READY_TEXT} to {_where(datacenters)} in "
            f"{time.monotonic() - started:.1f} s ({shards} processes: {pids})",
            flush=True,
        )
        while not stop.wait(0.5):
            failure = _exited(processes)
            if failure:
                print(f"simulator: {failure}; stopping the others", flush=True)
                return 1
        return 0
    finally:
        _end(processes)


def _watch_parent(stop: threading.Event) -> None:
    """A shard stops when the process that started it is gone (it would be orphaned)."""
    parent = os.getppid()
    while not stop.wait(1.0):
        if os.getppid() != parent:
            stop.set()


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
    parser.add_argument(
        "--sub-collectives",
        action="store_true",
        help="every node also joins its datacenter's sub-collective dc_<NAME>",
    )
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
    parser.add_argument(
        "--worker-threads",
        type=int,
        default=0,
        help="run every node's actions on one pool of this many threads per process "
        "(0: a pool per node, as real nodes have)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="split the fleet over this many shard processes (about 1,000 nodes each)",
    )
    parser.add_argument(
        "--shard",
        type=parse_shard,
        help="I/K: run only slice I of K of the fleet (what --processes starts)",
    )
    parser.add_argument(
        "--tls-ca",
        default=os.environ.get("SWITCHBOARD_NODE_TLS_CA"),
        help="dial the brokers over TLS: the CA of their certificates (PEM); their STOMP over "
        "TLS ports go in --brokers/--dc",
    )
    parser.add_argument(
        "--tls-cert",
        default=os.environ.get("SWITCHBOARD_NODE_TLS_CERT"),
        help="with --tls-ca: the nodes' client certificate (PEM)",
    )
    parser.add_argument(
        "--tls-key",
        default=os.environ.get("SWITCHBOARD_NODE_TLS_KEY"),
        help="with --tls-ca: the key of --tls-cert (PEM)",
    )
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    # A broadcast wakes every node's receiver thread at once. With CPython's default 5 ms
    # switch interval each of ~1,000 threads waiting for the GIL wakes 200 times a second:
    # measured on 2 cores with 5,000 nodes, over 1,000 runnable threads, heart-beats late by
    # more than the broker's 15 s grace and a reconnect storm. At 100 ms the same broadcast
    # is answered in ~4 s with a few dozen runnable threads.
    sys.setswitchinterval(SWITCH_INTERVAL)
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    if args.processes > 1 and args.shard:
        parser.error("give --processes or --shard, not both")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        datacenters = _parse_dc(args.dc) if args.dc else None
        if datacenters is None and not args.brokers:
            parser.error("give --brokers or at least one --dc")
        if (args.tls_cert or args.tls_key) and not args.tls_ca:
            parser.error("--tls-cert and --tls-key need --tls-ca")
        if args.processes > 1:
            return run_shards(args, datacenters or {"dc1": parse_brokers(args.brokers)}, stop)
        shard, shards = args.shard or (0, 1)
        sim = Simulator(
            args.count,
            args.brokers,
            datacenters=datacenters,
            seed=args.seed,
            collective=args.collective,
            sub_collectives=args.sub_collectives,
            login=args.login,
            passcode=args.passcode,
            identity_prefix=args.identity_prefix,
            register_interval=args.register_interval,
            trusted_keys=args.trusted_key,
            worker_threads=args.worker_threads,
            shard=shard,
            shards=shards,
            tls=TLSConfig.from_files(args.tls_ca, args.tls_cert, args.tls_key),
            # From the environment (shards inherit it), like the passcode: never in argv.
            enrolment_token=os.environ.get("SWITCHBOARD_ENROLMENT_TOKEN") or None,
        )
    except (ValueError, OSError, argparse.ArgumentTypeError) as exc:
        parser.error(str(exc))
    what = f"shard {shard}/{shards}" if args.shard else "simulator"
    try:
        raise_file_limit(len(sim.daemons) + SPARE_FILES)
    except OSError as exc:
        print(f"simulator: {what}: {exc}", flush=True)
        return 1
    if args.shard:
        threading.Thread(target=_watch_parent, args=(stop,), daemon=True).start()
    started = time.monotonic()
    try:
        sim.start()
    except ConnectionError as exc:
        print(f"simulator: {what}: {exc}", flush=True)
        return 1
    except RuntimeError as exc:  # "can't start new thread": see the module docstring
        print(
            f"simulator: {what}: {exc} after {threading.active_count()} threads "
            "(limits: ulimit -u, /proc/sys/kernel/threads-max and pid_max)",
            flush=True,
        )
        sim.stop()
        return 1
    elapsed = time.monotonic() - started
    if args.shard:
        first, last = sim.indices.start, sim.indices.stop - 1
        print(
            f"simulator: shard {shard}/{shards} ready: nodes {first}-{last} of {args.count} "
            f"up in {elapsed:.1f} s",
            flush=True,
        )
    else:
        print(
            f"simulator: {args.count} {READY_TEXT} to {_where(sim.datacenters)} in {elapsed:.1f} s",
            flush=True,
        )
    stop.wait()
    sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
