"""The node as a site installs it: the .deb built from this tree (``make deb``), installed with
apt on this machine, its daemon (/usr/bin/switchboard-node, Debian's python3, the package's
modules) started from /etc/switchboard/node.yaml in a datacenter's nodes namespace of the
isolation lab (tests/integration/netns.py), over TLS with its own certificate to its
datacenter broker; the portal in the NOC namespace, over TLS too, reaches it through the
bridges, and the node's real backends answer about this host:

- ``rpcutil ping`` (signed reply, verified by the portal) and ``daemon_stats`` (the TLS port);
- ``process list``: finds the daemon's own process;
- ``filemgr status`` of a file the test writes (size, md5, mode, owner);
- ``package status``: dpkg's version of bash, and of switchboard-node itself;
- ``nrpe runcommand``: Debian's check_dummy (monitoring-plugins-basic, which
  scripts/install-deb-tools installs; the test installs it with apt-get if it is missing);
- ``service status``: through systemd where systemd is PID 1; elsewhere (a container, this CI
  machine) the node's service agent falls back to SysV ``service(8)``, and the reply for the
  package's systemd unit says why there is no such service.

The lab brokers are the test's own (a throw-away CA from scripts/make-dev-ca whose broker
certificates name the lab addresses), not scripts/brokers' network. Root, iproute2, ActiveMQ
and dpkg-buildpackage are needed; the machine must have no switchboard-node package and no
/etc/switchboard (purged and removed afterwards, even on failure).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import agents
from agents.protocol.transport import TLSConfig
from harness.activemq import network_description
from harness.portal import PortalStack
from harness.services import require_service
from harness.stacks import ENROLMENT_TOKEN, portal_public_key
from portal.core.supervisor import Child, Supervisor
from tests.deploy.test_deb import (
    SYSTEM_ENV,
    build,
    installed_version,
    purge_node_package,
    require_build_tools,
    require_clean_machine,
)
from tests.integration import netns
from tests.integration.test_netns import finished_job, lab, require_lab, start_portal_side

__all__ = ["lab"]  # the isolation test's namespace fixture, used here as is

pytestmark = [
    pytest.mark.integration,
    pytest.mark.netns,
    pytest.mark.deb,
    pytest.mark.activemq,
    pytest.mark.timeout(900),
]

IDENTITY = "installed.a.example"
VERSION = agents.__version__
ETC = Path("/etc/switchboard")
CONFIG = ETC / "node.yaml"
DAEMON = "/usr/bin/switchboard-node"
AUDIT_LOG = Path("/var/log/switchboard/audit.log")
PLUGINS_PACKAGE = "monitoring-plugins-basic"
CHECK_DUMMY = Path("/usr/lib/nagios/plugins/check_dummy")
TIMINGS: dict[str, float] = {}


def timed(step: str, started: float) -> None:
    TIMINGS[step] = round(time.monotonic() - started, 1)


def apt(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", *args], capture_output=True, text=True, timeout=timeout, check=False,
        stdin=subprocess.DEVNULL, env=SYSTEM_ENV,
    )  # fmt: skip


def dpkg_version(package: str) -> str:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


# -- the machine: the package installed, a real Nagios plugin ---------------------------------
@pytest.fixture(scope="module")
def check_plugin() -> Path:
    """Debian's check_dummy; installed from the package lists when missing (root needed)."""
    if not CHECK_DUMMY.exists() and os.geteuid() == 0:
        started = time.monotonic()
        done = apt("install", "-y", "-q", "--no-install-recommends", PLUGINS_PACKAGE)
        timed(f"apt-get install {PLUGINS_PACKAGE}", started)
        assert done.returncode == 0 or CHECK_DUMMY.exists(), done.stdout[-2000:] + done.stderr
    require_service(
        f"{CHECK_DUMMY} ({PLUGINS_PACKAGE})",
        CHECK_DUMMY.exists(),
        "run scripts/install-deb-tools, which installs monitoring-plugins-basic",
    )
    return CHECK_DUMMY


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """switchboard-node built from this tree and installed with apt-get; purged on exit, with
    /etc/switchboard and what the daemon left, whatever happened."""
    require_lab()
    require_build_tools()
    require_clean_machine()
    started = time.monotonic()
    deb = build(tmp_path_factory.mktemp("deb"))
    timed("make deb", started)
    try:
        started = time.monotonic()
        done = apt("install", "-y", str(deb))
        timed("apt-get install", started)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert installed_version() == VERSION
        yield deb
    finally:
        purge_node_package()
        print("timings (s):", TIMINGS)


# -- the lab: brokers with TLS, the portal side, the installed daemon in dc_a's nodes namespace --
@dataclass
class System:
    lab: netns.Lab
    site: netns.Site
    portal: PortalStack
    node: Child  # /usr/bin/switchboard-node in site.nodes_ns
    tls_port: int  # dc_a's STOMP over TLS port, which the node dials
    tmp: Path


def write_node_config(site: netns.Site, tls_port: int, tls: TLSConfig, portal_key: Path) -> None:
    """/etc/switchboard as an operator sets it up: node.yaml, the TLS files, the portal key."""
    (ETC / "tls").mkdir(mode=0o700, exist_ok=True)
    shutil.copyfile(tls.ca_file, ETC / "tls" / "ca.pem")
    shutil.copyfile(tls.cert_file, ETC / "tls" / "node.pem")
    shutil.copyfile(tls.key_file, ETC / "tls" / "node.key")
    (ETC / "tls" / "node.key").chmod(0o600)
    shutil.copyfile(portal_key, ETC / "keys" / "portal.pub")
    CONFIG.write_text(
        f"""# Written by tests/integration/test_installed_node.py
identity: {IDENTITY}
facts:
  datacenter: {site.name}
  role: installed
classes: [base]
collectives: [mcollective]
brokers: "{site.lan_broker}:{tls_port}"
tls_ca: tls/ca.pem
tls_cert: tls/node.pem
tls_key: tls/node.key
backend: auto
nrpe_commands:
  check_dummy_ok: [{CHECK_DUMMY}, "0", "installed node is fine"]
  check_dummy_critical: [{CHECK_DUMMY}, "2", "installed node is on fire"]
audit_log: {AUDIT_LOG}
trusted_keys: [keys/portal.pub]
require_signatures: true
signing_key: keys/node.pem
register_interval: 300
""",
        encoding="utf-8",
    )


@pytest.fixture(scope="module")
def system(
    installed: Path,
    check_plugin: Path,
    lab: netns.Lab,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("installed-node")
    site = lab.sites[0]
    started = time.monotonic()
    tls_dir = netns.make_lab_ca(tmp / "tls", lab, [IDENTITY])
    root = netns.render_brokers(tmp / "activemq", tls_dir)
    description = network_description(root)
    assert description is not None and description.tls_ready, root
    assert description.has_nodes(IDENTITY), description.nodes()
    tls_port = int(description.brokers[site.broker]["stomp_ssl_port"])
    noc_tls_port = int(description.brokers["noc"]["stomp_ssl_port"])
    portal_tls = description.client_tls("portal")
    sups = {ns: Supervisor(tmp / "logs" / ns.removeprefix(lab.prefix)) for ns in lab.namespaces}
    try:
        netns.start_broker(sups[lab.noc], lab, lab.noc, root, "noc")
        for each in lab.sites:
            child = netns.start_broker(sups[each.broker_ns], lab, each.broker_ns, root, each.broker)
            # The bridges dial the NOC's OpenWire TLS port over the WAN link.
            netns.wait_for_log_count(sups[each.broker_ns], child, netns.BRIDGE_UP, 2, 120)
        timed("brokers up (TLS)", started)
        started = time.monotonic()
        portal = start_portal_side(
            lab, sups[lab.noc], tmp,
            {"STOMP_BROKERS": f"{netns.NOC_ADDRESS}:{noc_tls_port}",
             "STOMP_TLS_CA": portal_tls.ca_file, "STOMP_TLS_CERT": portal_tls.cert_file,
             "STOMP_TLS_KEY": portal_tls.key_file},
        )  # fmt: skip
        timed("portal side up", started)

        write_node_config(site, tls_port, description.nodes()[IDENTITY], portal_public_key(tmp))
        started = time.monotonic()
        # Debian's python3 and nothing of the test's virtualenv: a clean environment, as
        # systemd gives the unit (the enrolment token would come from /etc/switchboard/node.env).
        node = sups[site.nodes_ns].start(
            "switchboard-node",
            [*lab.wrap(site.nodes_ns), "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
             "LANG=C.UTF-8", f"SWITCHBOARD_ENROLMENT_TOKEN={ENROLMENT_TOKEN}",
             DAEMON, "--config", str(CONFIG)],
        )  # fmt: skip
        sups[site.nodes_ns].wait_for_log(node, f"{IDENTITY} serving agents", timeout=60)
        portal.wait_for_inventory(1, timeout=120)
        timed("installed node up and registered", started)
        yield System(lab, site, portal, node, tls_port, tmp)
    finally:
        for sup in reversed(sups.values()):
            sup.stop()


def run_job(system: System, agent: str, action: str, **inputs: Any) -> dict[str, Any]:
    """One job to the installed node only, through the portal's API in the NOC namespace; its
    one reply (the job's counts checked: expected 1, replied 1)."""
    lab, portal = system.lab, system.portal
    payload = {"agent": agent, "action": action, "inputs": inputs, "filter": f"identity:{IDENTITY}"}
    started = time.monotonic()
    response = netns.call_in(lab.noc, portal.api, "POST", "/api/jobs/", json=payload)
    assert response.status_code == 201, response.text
    job = netns.call_in(lab.noc, finished_job, portal, response.json()["id"], 120.0)
    timed(f"job {agent} {action}", started)
    assert job["status"] == "completed", job
    assert job["counts"]["expected"] == 1 and job["counts"]["replied"] == 1, job["counts"]
    assert [reply["identity"] for reply in job["replies"]] == [IDENTITY], job
    reply = job["replies"][0]
    reply["job_id"] = job["id"]
    return reply


# -- the daemon from the package ----------------------------------------------------------------
def test_the_packaged_daemon_runs_in_the_nodes_namespace(system: System) -> None:
    assert system.node.process is not None
    pid = system.node.process.pid
    assert netns.namespace_of(pid) == system.site.nodes_ns
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    # `ip netns exec` and `env -i` exec'd it: the package's script under Debian's python3.
    assert [a.decode() for a in argv if a] == ["/usr/bin/python3", DAEMON, "--config", str(CONFIG)]
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"VIRTUAL_ENV" not in environ and b"PYTHONPATH" not in environ
    log = system.node.log_path.read_text(errors="replace")
    assert f"via {system.site.lan_broker}:{system.tls_port}" in log, log[-2000:]
    assert "Traceback" not in log, log[-4000:]


def test_the_node_registers_through_its_datacenter_and_is_accepted(system: System) -> None:
    stored = system.portal.stored_nodes()
    assert set(stored) == {IDENTITY}
    assert stored[IDENTITY]["datacenter"] == "a"
    assert stored[IDENTITY]["role"] == "installed"


def test_rpcutil_ping_and_daemon_stats(system: System) -> None:
    reply = run_job(system, "rpcutil", "ping")
    assert reply["statuscode"] == 0, reply
    assert isinstance(reply["data"]["pong"], int | float), reply
    # Signed with the key postinst made, and verified against the one it registered.
    verified = system.portal.query(
        "SELECT verified FROM jobs_nodereply WHERE job_id = %s AND identity = %s",
        reply["job_id"], IDENTITY,
    )  # fmt: skip
    assert [bool(row[0]) for row in verified] == [True]

    stats = run_job(system, "rpcutil", "daemon_stats")
    assert stats["statuscode"] == 0, stats
    assert stats["data"]["version"] == VERSION
    assert stats["data"]["broker"] == f"{system.site.lan_broker}:{system.tls_port}"


def test_process_list_finds_the_daemon_itself(system: System) -> None:
    assert system.node.process is not None
    reply = run_job(system, "process", "list", pattern="switchboard-node --config")
    assert reply["statuscode"] == 0, reply
    mine = [p for p in reply["data"]["pslist"] if p["pid"] == system.node.process.pid]
    assert len(mine) == 1, reply["data"]
    assert mine[0]["user"] == "root"
    assert mine[0]["command"] == f"/usr/bin/python3 {DAEMON} --config {CONFIG}"
    assert mine[0]["rss"] > 0
    assert reply["data"]["count"] >= 1 and reply["data"]["truncated"] is False


def test_filemgr_status_of_a_file_the_test_wrote(system: System) -> None:
    path = system.tmp / "filemgr-probe.txt"
    body = b"what the installed node sees on this host\n"
    path.write_bytes(body)
    path.chmod(0o640)
    reply = run_job(system, "filemgr", "status", file=str(path))
    assert reply["statuscode"] == 0, reply
    data = reply["data"]
    assert data["present"] is True and data["type"] == "file"
    assert data["size"] == len(body)
    assert data["md5"] == hashlib.md5(body, usedforsecurity=False).hexdigest()
    assert data["mode"] == "0640" and data["owner"] == "root"
    assert abs(data["mtime"] - path.stat().st_mtime) < 1

    absent = run_job(system, "filemgr", "status", file=str(system.tmp / "no-such-file"))
    assert absent["statuscode"] == 0 and absent["data"]["present"] is False, absent


def test_package_status_comes_from_dpkg(system: System) -> None:
    reply = run_job(system, "package", "status", package="bash")
    assert reply["statuscode"] == 0, reply
    assert reply["data"]["ensure"] == dpkg_version("bash") != ""
    itself = run_job(system, "package", "status", package="switchboard-node")
    assert itself["data"]["ensure"] == VERSION, itself


def test_nrpe_runs_a_real_nagios_plugin(system: System) -> None:
    ok = run_job(system, "nrpe", "runcommand", command="check_dummy_ok")
    assert ok["statuscode"] == 0, ok
    assert ok["data"] == {"output": "OK: installed node is fine", "exitcode": 0, "perfdata": ""}
    # A CRITICAL check is ABORTED with the plugin's own output and exit code in the data.
    critical = run_job(system, "nrpe", "runcommand", command="check_dummy_critical")
    assert critical["statuscode"] == 1, critical
    assert critical["statusmsg"] == "CRITICAL: CRITICAL: installed node is on fire", critical
    assert critical["data"]["exitcode"] == 2
    assert critical["data"]["output"] == "CRITICAL: installed node is on fire"
    unknown = run_job(system, "nrpe", "runcommand", command="check_load")
    assert unknown["statuscode"] == 4, unknown
    assert "configured: check_dummy_critical, check_dummy_ok" in unknown["statusmsg"]


def test_service_status_through_the_hosts_service_manager(system: System) -> None:
    reply = run_job(system, "service", "status", service="switchboard-node")
    if Path("/run/systemd/system").is_dir():
        # systemd is PID 1: the package's unit is known (installed, not started by the test).
        assert reply["statuscode"] == 0, reply
        assert reply["data"]["status"] in ("running", "stopped"), reply
        return
    # No systemd running (this CI machine, a container): the agent uses SysV service(8) and
    # /etc/init.d, where the package ships no script (only its systemd unit): it says so.
    assert shutil.which("service") and Path("/etc/init.d").is_dir()
    assert reply["statuscode"] == 1, reply
    assert reply["statusmsg"] == "no such service 'switchboard-node' in /etc/init.d", reply


def test_every_request_is_in_the_audit_log(system: System) -> None:
    text = AUDIT_LOG.read_text(encoding="utf-8")
    assert (AUDIT_LOG.stat().st_mode & 0o777) == 0o600
    for agent, action in [
        ("rpcutil", "ping"), ("process", "list"), ("filemgr", "status"),
        ("package", "status"), ("nrpe", "runcommand"), ("service", "status"),
    ]:  # fmt: skip
        assert f'"action":"{action}","agent":"{agent}"' in text, (agent, action)
