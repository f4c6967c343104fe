"""The standard agents: every simulated backend fully, the real ones where harmless here."""

import os
import shutil

import pytest

from agents.dispatch import dispatch
from agents.plugins import ActionContext, ActionError, AgentSettings, load_agents
from agents.plugins.filemgr.agent import FilemgrAgent
from agents.plugins.nrpe.agent import NrpeAgent, parse_output
from agents.plugins.package.agent import PackageAgent
from agents.plugins.package.backends import AptBackend
from agents.plugins.process.agent import ProcessAgent
from agents.plugins.puppet.agent import PuppetAgent
from agents.plugins.puppet.backends import MissingPuppetBackend
from agents.plugins.service.agent import ServiceAgent
from agents.plugins.service.backends import SysVBackend, detect_service_backend
from agents.protocol import Request, Status

SIMULATED = AgentSettings(backend="simulated")


def call(agents, agent, action, data=None, callerid="user=t"):
    request = Request.new(
        collective="mcollective", agent=agent, action=action, callerid=callerid, data=data or {}
    )

    def context(req):
        return ActionContext(
            identity="n1", facts={}, classes=[], agents=sorted(agents), collectives=["m"],
            main_collective="m", version="0", started_at=0.0, request=req,
        )  # fmt: skip

    return dispatch(request, agents, "n1", context)


@pytest.fixture
def sim():
    return load_agents(None, SIMULATED)


# -- simulated backends --------------------------------------------------------------------


def test_simulated_service_state_is_per_node_and_sticks(sim):
    other = load_agents(None, SIMULATED)
    assert call(sim, "service", "status", {"service": "cron"}).data == {"status": "running"}
    assert call(sim, "service", "stop", {"service": "cron"}).data == {"status": "stopped"}
    assert call(sim, "service", "status", {"service": "cron"}).data == {"status": "stopped"}
    assert call(other, "service", "status", {"service": "cron"}).data == {"status": "running"}
    assert call(sim, "service", "restart", {"service": "cron"}).data == {"status": "running"}
    assert call(sim, "service", "stop", {"service": "cron"}).data == {"status": "stopped"}
    assert call(sim, "service", "start", {"service": "cron"}).data == {"status": "running"}


@pytest.mark.parametrize("action", ["status", "start", "stop", "restart"])
def test_simulated_unknown_service_fails_in_every_action(sim, action):
    # Never a green OK "unknown": a service that does not exist is a failure with the reason.
    reply = call(sim, "service", action, {"service": "nosuch"})
    assert (reply.statuscode, reply.statusmsg) == (
        Status.ABORTED,
        "no such service 'nosuch' (simulated node)",
    )


@pytest.mark.parametrize("name", ["-h", "../etc/passwd", "a b", "x;reboot", "a" * 129, ".x"])
def test_service_names_are_validated(sim, name):
    reply = call(sim, "service", "status", {"service": name})
    assert reply.statuscode == Status.INVALID_DATA
    assert "service" in reply.data["errors"]


def test_service_name_regex_accepts_units():
    action = load_agents(["service"], SIMULATED)["service"].ddl.action("status")
    for name in ("getty@tty1", "ssh.service", "systemd-journald", "user@1000.service", "a:b"):
        assert action.validate_inputs({"service": name}) == {"service": name}


def test_simulated_package_lifecycle(sim):
    assert call(sim, "package", "status", {"package": "bash"}).data == {"ensure": "5.2.15-2"}
    assert call(sim, "package", "status", {"package": "htop"}).data == {"ensure": "absent"}
    assert call(sim, "package", "install", {"package": "htop"}).data == {"ensure": "3.2.2-2"}
    assert call(sim, "package", "update", {"package": "openssl"}).data == {"ensure": "3.0.13-1"}
    assert call(sim, "package", "uninstall", {"package": "htop"}).data == {"ensure": "absent"}
    assert call(sim, "package", "status", {"package": "htop"}).data == {"ensure": "absent"}
    reply = call(sim, "package", "install", {"package": "nosuchpkg"})
    assert reply.statuscode == Status.ABORTED
    assert reply.statusmsg == "unable to locate package nosuchpkg (simulated repository)"
    bad = call(sim, "package", "install", {"package": "-oAPT::x=1"})
    assert bad.statuscode == Status.INVALID_DATA


@pytest.mark.parametrize("action", ["status", "install", "update", "uninstall"])
def test_simulated_unknown_package_fails_in_every_action(sim, action):
    reply = call(sim, "package", action, {"package": "nosuchpkg"})
    assert (reply.statuscode, reply.statusmsg) == (
        Status.ABORTED,
        "unable to locate package nosuchpkg (simulated repository)",
    )
    # A known package that is not installed is still a plain answer.
    assert call(sim, "package", "status", {"package": "nginx"}).data == {"ensure": "absent"}


def test_simulated_process_list(sim):
    reply = call(sim, "process", "list", {"pattern": "cron|nginx"})
    assert reply.statuscode == Status.OK
    assert reply.data["count"] == 2 and reply.data["truncated"] is False
    assert reply.data["pslist"][0] == {
        "pid": 412, "user": "root", "command": "/usr/sbin/cron -f", "rss": 2816,
    }  # fmt: skip
    assert call(sim, "process", "list").data["count"] == 6
    unsafe = call(sim, "process", "list", {"pattern": "(a+)+"})
    assert unsafe.statuscode == Status.INVALID_DATA
    assert "nested quantifiers" in unsafe.statusmsg


def test_simulated_filemgr(sim):
    path = "/var/tmp/switchboard-sim"
    assert call(sim, "filemgr", "status", {"file": path}).data["present"] is False
    touched = call(sim, "filemgr", "touch", {"file": path}).data
    assert touched["present"] is True and touched["md5"] == "d41d8cd98f00b204e9800998ecf8427e"
    assert call(sim, "filemgr", "remove", {"file": path}).data["removed"] is True
    assert call(sim, "filemgr", "remove", {"file": path}).data["removed"] is False
    assert not os.path.exists(path)  # the simulated backend never touches the host


@pytest.mark.parametrize("path", ["relative/x", "", "/a\x00b", "/" + "a" * 4096])
def test_filemgr_path_is_validated(sim, path):
    reply = call(sim, "filemgr", "status", {"file": path})
    assert reply.statuscode in (Status.INVALID_DATA, Status.MISSING_DATA)


def test_simulated_nrpe(sim):
    ok = call(sim, "nrpe", "runcommand", {"command": "check_load"})
    assert ok.statuscode == Status.OK
    assert ok.data == {
        "output": "OK - load average: 0.15, 0.10, 0.05",
        "exitcode": 0,
        "perfdata": "load1=0.150;15;30;0",
    }
    warn = call(sim, "nrpe", "runcommand", {"command": "check_swap"})
    assert (warn.statuscode, warn.data["exitcode"]) == (Status.ABORTED, 1)
    assert warn.statusmsg.startswith("WARNING: SWAP WARNING")
    unknown = call(sim, "nrpe", "runcommand", {"command": "rm"})
    assert unknown.statuscode == Status.INVALID_DATA
    assert unknown.statusmsg.startswith("unknown nrpe command 'rm'; configured: check_disk")


def test_simulated_puppet(sim):
    assert call(sim, "puppet", "status").data["status"] == "idling"
    assert call(sim, "puppet", "runonce").data["lastrun"] is not None
    disabled = call(sim, "puppet", "disable", callerid="user=alice").data
    assert disabled["enabled"] is False
    assert disabled["disable_message"] == "disabled by user=alice via Switchboard"
    again = call(sim, "puppet", "disable", {"message": "maintenance"})
    assert again.statuscode == Status.ABORTED and "already disabled" in again.statusmsg
    assert call(sim, "puppet", "runonce").statusmsg.startswith("puppet is disabled: disabled by")
    assert call(sim, "puppet", "enable").data["status"] == "idling"
    assert call(sim, "puppet", "disable", {"message": "-x"}).statuscode == Status.INVALID_DATA


# -- real backends, only where harmless here -------------------------------------------------


def test_real_process_list_sees_this_process():
    agent = ProcessAgent()
    assert agent.available() == (True, "")
    # "python": this process, whether pytest runs it or one of its xdist workers does.
    reply = call({"process": agent}, "process", "list", {"pattern": "python"})
    mine = [p for p in reply.data["pslist"] if p["pid"] == os.getpid()]
    assert len(mine) == 1 and mine[0]["rss"] > 0 and mine[0]["user"]


def test_real_filemgr_in_tmp_path(tmp_path):
    agents = {"filemgr": FilemgrAgent()}
    path = str(tmp_path / "f")
    assert call(agents, "filemgr", "status", {"file": path}).data["type"] == "absent"
    touched = call(agents, "filemgr", "touch", {"file": path}).data
    assert touched["present"] is True and touched["size"] == 0 and touched["type"] == "file"
    assert touched["md5"] == "d41d8cd98f00b204e9800998ecf8427e"
    os.chmod(path, 0o640)
    status = call(agents, "filemgr", "status", {"file": path}).data
    assert status["mode"] == "0640" and status["owner"]
    directory = call(agents, "filemgr", "remove", {"file": str(tmp_path)})
    assert directory.statuscode == Status.ABORTED and "is a directory" in directory.statusmsg
    assert call(agents, "filemgr", "remove", {"file": path}).data["removed"] is True
    assert not os.path.exists(path)
    missing_dir = call(agents, "filemgr", "touch", {"file": str(tmp_path / "no" / "f")})
    assert missing_dir.statuscode == Status.ABORTED
    assert "No such file or directory" in missing_dir.statusmsg


def test_real_service_status_is_a_clear_answer():
    agent = ServiceAgent()
    backend = detect_service_backend()
    if backend is None:
        assert agent.available()[0] is False
        assert "no supported service manager" in agent.available()[1]
        return
    for action in ("status", "start", "stop", "restart"):
        reply = call({"service": agent}, "service", action, {"service": "no-such-unit-xyz"})
        assert reply.statuscode == Status.ABORTED, (action, reply)
        assert reply.statusmsg.startswith("no such service 'no-such-unit-xyz'"), reply.statusmsg


def test_sysv_backend_maps_lsb_exit_codes(tmp_path):
    # A stand-in for service(8) so the mapping is tested without touching real services.
    fake = tmp_path / "service"
    fake.write_text(
        '#!/bin/sh\ncase "$1 $2" in\n"up status") exit 0;;\n"down status") exit 3;;\n'
        '"odd status") exit 4;;\n"down start") echo failed >&2; exit 1;;\nesac\nexit 0\n'
    )
    fake.chmod(0o755)
    init_dir = tmp_path / "init.d"
    init_dir.mkdir()
    for name in ("up", "down", "odd"):
        (init_dir / name).write_text("")
    backend = SysVBackend(init_dir=str(init_dir))
    backend.service = str(fake)
    assert [backend.status(n) for n in ("up", "down", "odd")] == ["running", "stopped", "unknown"]
    with pytest.raises(ActionError, match="no such service 'absent'") as absent:
        backend.status("absent")
    assert absent.value.status == Status.ABORTED
    assert backend.change("up", "restart") == "running"
    with pytest.raises(ActionError, match="service down start failed: failed"):
        backend.change("down", "start")
    with pytest.raises(ActionError, match="no such service 'absent'"):
        backend.change("absent", "start")


@pytest.mark.skipif(not shutil.which("dpkg-query"), reason="needs dpkg-query")
def test_real_package_status_of_bash():
    agent = PackageAgent(backend=AptBackend())
    reply = call({"package": agent}, "package", "status", {"package": "bash"})
    assert reply.statuscode == Status.OK
    assert reply.data["ensure"][0].isdigit()
    unknown = call({"package": agent}, "package", "status", {"package": "no-such-package-xyz"})
    assert (unknown.statuscode, unknown.statusmsg) == (
        Status.ABORTED,
        "unable to locate package no-such-package-xyz: not installed and not in the apt "
        "package lists",
    )
    # A package the lists have but dpkg has not installed is absent, not unknown.
    for name in ("htop", "cowsay", "sl"):
        try:
            if AptBackend().status(name) != "absent":
                continue  # installed here
        except ActionError:
            continue  # not in this host's package lists
        absent = call({"package": agent}, "package", "status", {"package": name})
        assert (absent.statuscode, absent.data) == (Status.OK, {"ensure": "absent"})
        break


def test_real_nrpe_runs_only_configured_argv():
    settings = AgentSettings(
        nrpe_commands={
            "check_echo": ("/bin/echo", "ECHO OK - fine|x=1;2;3"),
            "check_false": ("/bin/false",),
        }
    )
    agents = {"nrpe": NrpeAgent(settings)}
    reply = call(agents, "nrpe", "runcommand", {"command": "check_echo"})
    assert (reply.statuscode, reply.data) == (
        Status.OK,
        {"output": "ECHO OK - fine", "exitcode": 0, "perfdata": "x=1;2;3"},
    )
    failed = call(agents, "nrpe", "runcommand", {"command": "check_false"})
    assert (failed.statuscode, failed.data["exitcode"]) == (Status.ABORTED, 1)
    unknown = call(agents, "nrpe", "runcommand", {"command": "check_disk"})
    assert unknown.statuscode == Status.INVALID_DATA
    assert (
        unknown.statusmsg
        == "unknown nrpe command 'check_disk'; configured: check_echo, check_false"
    )


def test_parse_output():
    assert parse_output("DISK OK | /=1MB\nlong text | more=1") == ("DISK OK", "/=1MB")
    assert parse_output("") == ("", "")


def test_puppet_missing_loads_but_aborts_every_action():
    agent = PuppetAgent(backend=MissingPuppetBackend())
    assert agent.available() == (True, "")
    for action, data in (("status", {}), ("runonce", {}), ("enable", {}), ("disable", {})):
        reply = call({"puppet": agent}, "puppet", action, data)
        assert (reply.statuscode, reply.statusmsg) == (
            Status.ABORTED,
            "puppet is not installed on this node",
        )


def test_agents_decline_with_a_reason_when_the_host_lacks_the_tool():
    agent = ServiceAgent.__new__(ServiceAgent)
    agent.backend = None
    assert agent.available() == (
        False,
        "no supported service manager (systemd is not running, no service(8))",
    )
    pkg = PackageAgent.__new__(PackageAgent)
    pkg.backend = None
    assert pkg.available()[1] == "no supported package manager (neither apt/dpkg nor dnf/rpm found)"


def test_rpcutil_agent_inventory_and_daemon_stats(sim):
    inventory = call(sim, "rpcutil", "agent_inventory").data["agents"]
    service = next(a for a in inventory if a["agent"] == "service")
    assert service["timeout"] == 60 and service["version"] == "1.0.0"
    info = call(sim, "rpcutil", "collective_info").data
    assert info == {"collectives": ["m"], "main_collective": "m"}
    stats = call(sim, "rpcutil", "daemon_stats").data
    for key in ("validated", "unvalidated", "ttl_expired", "duplicates", "filtered", "passed",
                "replies", "total", "errors", "denied", "starttime"):  # fmt: skip
        assert key in stats
