"""A lab of Linux network namespaces for the isolation test (tests/integration/test_netns.py).

Five namespaces per run, named ``sbnet<pid>-<role>`` after the test process:

    noc         NOC broker and the portal side; the NOC address 10.231.0.1/32 sits on its lo
    dca-brk     dc_a's broker: WAN link to noc 10.231.1.0/30, LAN link to its nodes 10.231.11.0/24
    dca-nodes   dc_a's nodes: only the LAN link
    dcb-brk     dc_b's broker: WAN 10.231.2.0/30, LAN 10.231.12.0/24
    dcb-nodes   dc_b's nodes

Each veth is created with both ends already inside the run's namespaces, so nothing is added
to the host's namespace, names cannot clash between runs, and deleting the namespaces deletes
the links. No namespace has a default route; the broker namespaces have forwarding off and
one host route to the NOC address; nodes have a route to their LAN only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from harness.activemq import ACTIVEMQ_PORTS
from portal.core.supervisor import Child, ChildFailed, Supervisor

BASE_DIR = Path(__file__).resolve().parents[2]
RENDER = BASE_DIR / "deploy" / "activemq" / "render.py"
MAKE_DEV_CA = BASE_DIR / "scripts" / "make-dev-ca"
AMQ_HOME = Path(os.environ.get("SWITCHBOARD_ACTIVEMQ_HOME", "/usr/share/activemq"))
AMQ_JAR = AMQ_HOME / "bin" / "activemq.jar"
BROKER_HEAP = "256m"  # a handful of nodes; scripts/brokers gives 1g for thousands

PREFIX = "sbnet"
LEFTOVER = re.compile(rf"^{PREFIX}(\d+)-")
NOC_ADDRESS = "10.231.0.1"
STOMP_PORTS = ACTIVEMQ_PORTS  # render.py's port plan
BROKER_STARTED = "started | org.apache.activemq.broker.BrokerService"
BRIDGE_UP = "(noc) has been established"
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)  # for setns(2), which Python 3.11's os lacks

T = TypeVar("T")


@dataclass(frozen=True)
class Site:
    """One datacenter: a broker namespace between the NOC and a nodes namespace."""

    name: str  # "a": broker dc_a, datacenter fact "a"
    broker_ns: str
    nodes_ns: str
    wan_noc: str  # the NOC's end of the WAN link
    wan_broker: str
    lan_broker: str  # the address the nodes dial
    lan_nodes: str

    @property
    def broker(self) -> str:
        return f"dc_{self.name}"

    @property
    def stomp(self) -> str:
        """host:port of the broker as the nodes see it."""
        return f"{self.lan_broker}:{STOMP_PORTS[self.broker]}"


class Lab:
    """The namespaces of one test run: ``create()`` builds them, ``destroy()`` removes them."""

    def __init__(self, pid: int) -> None:
        self.prefix = f"{PREFIX}{pid}-"
        self.noc = self.prefix + "noc"
        self.sites = [
            Site(
                name=name,
                broker_ns=f"{self.prefix}dc{name}-brk",
                nodes_ns=f"{self.prefix}dc{name}-nodes",
                wan_noc=f"10.231.{i}.1",
                wan_broker=f"10.231.{i}.2",
                lan_broker=f"10.231.{10 + i}.1",
                lan_nodes=f"10.231.{10 + i}.10",
            )
            for i, name in enumerate(("a", "b"), start=1)
        ]

    @property
    def namespaces(self) -> list[str]:
        return [self.noc] + [ns for s in self.sites for ns in (s.broker_ns, s.nodes_ns)]

    def create(self) -> None:
        for ns in self.namespaces:
            run("ip", "netns", "add", ns)
            self.ip(ns, "link", "set", "lo", "up")
            self.sysctl_set(ns, "net.ipv4.ip_forward", "0")
        self.ip(self.noc, "addr", "add", f"{NOC_ADDRESS}/32", "dev", "lo")
        for site in self.sites:
            # WAN: noc <-> datacenter broker, a /30; the broker reaches the NOC address via it.
            self.veth((self.noc, f"wan-{site.name}", site.wan_noc),
                      (site.broker_ns, "wan", site.wan_broker), prefix_len=30)  # fmt: skip
            self.ip(site.broker_ns, "route", "add", f"{NOC_ADDRESS}/32", "via", site.wan_noc)
            # LAN: datacenter broker <-> its nodes, a /24 and nothing else.
            self.veth((site.broker_ns, "lan", site.lan_broker),
                      (site.nodes_ns, "eth0", site.lan_nodes), prefix_len=24)  # fmt: skip

    def veth(self, end1: tuple[str, str, str], end2: tuple[str, str, str], prefix_len: int) -> None:
        """A veth pair, each end (namespace, device name, address) made in its namespace."""
        (ns1, name1, _), (ns2, name2, _) = end1, end2
        run("ip", "link", "add", name1, "netns", ns1, "type", "veth",
            "peer", "name", name2, "netns", ns2)  # fmt: skip
        for ns, name, address in (end1, end2):
            self.ip(ns, "addr", "add", f"{address}/{prefix_len}", "dev", name)
            self.ip(ns, "link", "set", name, "up")

    def destroy(self) -> None:
        """Kill whatever still runs in the namespaces, then delete them (and so the veths)."""
        for ns in self.namespaces:
            remove_namespace(ns)

    # -- running things inside -------------------------------------------------------------
    def wrap(self, ns: str) -> tuple[str, ...]:
        """The command prefix that runs a program in ``ns``."""
        return ("ip", "netns", "exec", ns)

    def ip(self, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run("ip", "-n", ns, *args, check=check)

    def sysctl(self, ns: str, key: str) -> str:
        return run(*self.wrap(ns), "sysctl", "-n", key).stdout.strip()

    def sysctl_set(self, ns: str, key: str, value: str) -> None:
        run(*self.wrap(ns), "sysctl", "-q", "-w", f"{key}={value}")

    def route_get(self, ns: str, address: str) -> subprocess.CompletedProcess[str]:
        """``ip route get``: the route ``ns`` would use for ``address`` (non-zero if none)."""
        return self.ip(ns, "route", "get", address, check=False)

    def connect_error(self, ns: str, host: str, port: int, timeout: float = 5.0) -> OSError | None:
        """The error a TCP connect from ``ns`` to ``host:port`` gets; None if it connected."""

        def attempt() -> OSError | None:
            try:
                with socket.create_connection((host, port), timeout=timeout):
                    return None
            except OSError as exc:
                return exc

        return call_in(ns, attempt)


def call_in(ns: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on a thread moved into network namespace ``ns``.

    setns(2) moves only the calling thread, so the test process itself stays where it is;
    the sockets ``fn`` opens, and the processes it starts, belong to ``ns``.
    """
    outcome: dict[str, Any] = {}

    def body() -> None:
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=body, name=f"netns-{ns}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr}")
    return result


def namespaces_work() -> bool:
    """Whether this process may create a network namespace (root without CAP_SYS_ADMIN may not)."""
    probe = f"{PREFIX}{os.getpid()}-probe"
    if run("ip", "netns", "add", probe, check=False).returncode != 0:
        return False
    run("ip", "netns", "del", probe, check=False)
    return True


def namespace_of(pid: int) -> str:
    """The named namespace process ``pid`` is in ('' for the host's)."""
    return run("ip", "netns", "identify", str(pid)).stdout.strip()


# -- leftovers -----------------------------------------------------------------------------
def namespaces() -> list[str]:
    out = run("ip", "netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def remove_namespace(ns: str) -> None:
    """SIGKILL every process still in ``ns`` (never this one), then delete ``ns``."""
    if ns not in namespaces():
        return
    listed = run("ip", "netns", "pids", ns, check=False).stdout.split()
    pids = {int(pid) for pid in listed} - {os.getpid()}
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        _wait_gone(pid)
    run("ip", "netns", "del", ns)


def remove_leftovers() -> list[str]:
    """Delete the namespaces of earlier runs whose test process is gone; returns their names.

    A run that is still alive (a parallel one) keeps its namespaces.
    """
    removed = []
    for ns in namespaces():
        match = LEFTOVER.match(ns)
        if match and not _alive(int(match.group(1))):
            remove_namespace(ns)
            removed.append(ns)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    return True


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait until ``pid`` is gone or a zombie (left for its parent to reap)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state == "Z":
            return
        time.sleep(0.1)


# -- brokers -------------------------------------------------------------------------------
def render_brokers(out: Path, tls_dir: Path | None = None) -> Path:
    """The NOC and two datacenter brokers, listening on every address of their own
    namespace, the bridges dialling the NOC address (deploy/activemq/render.py).

    With ``tls_dir`` (``make_lab_ca``'s): STOMP and OpenWire over TLS next to the plain ports,
    the bridges over TLS, and a login per node certificate in ``tls_dir``/clients/nodes.
    """
    tls = ["--tls-dir", str(tls_dir)] if tls_dir is not None else []
    subprocess.run(
        [sys.executable, str(RENDER), "--out", str(out), "--host", "0.0.0.0",  # noqa: S104
         "--noc-address", NOC_ADDRESS, "--datacenters", "a,b", *tls],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return out


def make_lab_ca(out: Path, lab: Lab, nodes: Sequence[str] = ()) -> Path:
    """A throw-away CA for the lab (scripts/make-dev-ca) in ``out``: the brokers' certificates
    also name the lab addresses they are dialled at (the NOC address, each datacenter broker's
    LAN end), and each of ``nodes`` gets its own certificate (CN = the identity)."""
    sans = [f"IP:{NOC_ADDRESS}"] + [f"IP:{site.lan_broker}" for site in lab.sites]
    argv = [sys.executable, str(MAKE_DEV_CA), str(out), "--datacenters", "a,b",
            "--san", ",".join(sans), "--no-dev-nodes", *(f"--node={n}" for n in nodes)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"make-dev-ca failed ({done.returncode}): {done.stderr[-2000:]}")
    return out


def start_broker(sup: Supervisor, lab: Lab, ns: str, root: Path, name: str) -> Child:
    """One ActiveMQ broker in ``ns``, launched as scripts/brokers does; returns once started."""
    base = root / name
    (base / "data").mkdir(parents=True, exist_ok=True)
    child = sup.start(
        f"broker-{name}",
        [*lab.wrap(ns), "java", f"-Xmx{BROKER_HEAP}", f"-Dactivemq.base={base}",
         f"-Dactivemq.home={AMQ_HOME}", f"-Dactivemq.conf={base}/conf",
         f"-Dactivemq.data={base}/data", "-jar", str(AMQ_JAR), "start",
         f"xbean:file:{base}/conf/activemq.xml"],
    )  # fmt: skip
    wait_for_log_count(sup, child, BROKER_STARTED, 1, timeout=180)
    return child


def wait_for_log_count(
    sup: Supervisor, child: Child, text: str, count: int, timeout: float
) -> None:
    """Wait until ``text`` shows ``count`` times in the child's log (early out if it dies)."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        sup.check()
        try:
            seen = child.log_path.read_text(errors="replace").count(text)
        except OSError:
            seen = 0
        if seen >= count:
            return
        time.sleep(0.25)
    raise ChildFailed(
        f"{child.name} logged {text!r} {seen} of {count} times within {timeout:.0f} s:\n"
        f"{child.log_tail()}"
    )
