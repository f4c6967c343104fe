"""Service backends: systemd, SysV ``service(8)``, and a simulated one for virtual nodes."""

from __future__ import annotations

import os
import threading
from typing import Literal

from agents.plugins.base import ActionError
from agents.plugins.command import run_command, which

ServiceStatus = Literal["running", "stopped", "unknown"]
COMMAND_TIMEOUT = 60.0


class ServiceBackend:
    """Starts, stops and inspects services; every method returns the status afterwards.

    A service that does not exist is an ActionError (ABORTED) from every method, never a
    status: an operator must not read "no such service" as a successful answer.
    """

    name = "abstract"

    def status(self, service: str) -> ServiceStatus:
        """running, stopped, or unknown (it exists but the manager cannot tell)."""
        raise NotImplementedError

    def change(self, service: str, verb: Literal["start", "stop", "restart"]) -> ServiceStatus:
        """Apply ``verb``; raises ActionError with the manager's message if it fails."""
        raise NotImplementedError


def systemd_running() -> bool:
    """sd_booted(3): systemd is PID 1 only if this directory exists."""
    return os.path.isdir("/run/systemd/system")


class SystemdBackend(ServiceBackend):
    """``systemctl``; used when systemd is the running init."""

    name = "systemd"

    def __init__(self) -> None:
        self.systemctl = which("systemctl") or "systemctl"

    def _require_unit(self, service: str) -> None:
        """ActionError unless systemd has a unit of that name (a masked one counts)."""
        load = run_command(
            [self.systemctl, "show", "--property=LoadState", "--value", "--", service],
            timeout=COMMAND_TIMEOUT,
        )
        state = load.stdout.strip()
        if state == "not-found":
            raise ActionError(f"no such service {service!r} (systemd has no unit of that name)")
        if state not in ("loaded", "masked"):
            # "error", "bad-setting", or systemctl itself failed: say what systemd said.
            detail = state or load.stderr.strip() or f"systemctl exit {load.exitcode}"
            raise ActionError(f"systemd cannot load service {service!r}: {detail}")

    def status(self, service: str) -> ServiceStatus:
        self._require_unit(service)
        active = run_command(
            [self.systemctl, "is-active", "--", service], timeout=COMMAND_TIMEOUT
        ).stdout.strip()
        if active in ("active", "reloading", "activating"):
            return "running"
        if active in ("inactive", "failed", "deactivating"):
            return "stopped"
        return "unknown"

    def change(self, service: str, verb: Literal["start", "stop", "restart"]) -> ServiceStatus:
        self._require_unit(service)  # "no such service" rather than systemctl's exit 5
        result = run_command([self.systemctl, verb, "--", service], timeout=COMMAND_TIMEOUT)
        if result.exitcode != 0:
            raise ActionError(f"systemctl {verb} {service} failed: {result.stderr.strip()}")
        return self.status(service)


class SysVBackend(ServiceBackend):
    """``service NAME status|start|stop|restart`` with LSB exit codes (no systemd running)."""

    name = "sysv"

    def __init__(self, init_dir: str = "/etc/init.d") -> None:
        self.service = which("service") or "service"
        self.init_dir = init_dir

    def _require_script(self, service: str) -> None:
        if not os.path.isfile(os.path.join(self.init_dir, service)):
            raise ActionError(f"no such service {service!r} in {self.init_dir}")

    def status(self, service: str) -> ServiceStatus:
        self._require_script(service)
        code = run_command([self.service, service, "status"], timeout=COMMAND_TIMEOUT).exitcode
        # LSB init scripts: 0 running; 1-3 not running (stale pid/lock file or clean); 4 unknown.
        if code == 0:
            return "running"
        if code in (1, 2, 3):
            return "stopped"
        return "unknown"

    def change(self, service: str, verb: Literal["start", "stop", "restart"]) -> ServiceStatus:
        self._require_script(service)
        result = run_command([self.service, service, verb], timeout=COMMAND_TIMEOUT)
        if result.exitcode != 0:
            detail = (result.stderr or result.stdout).strip()
            raise ActionError(f"service {service} {verb} failed: {detail}")
        return self.status(service)


SIMULATED_SERVICES = ("cron", "sshd", "rsyslog", "ntp", "puppet", "nrpe", "apache2", "nginx")


class SimulatedServiceBackend(ServiceBackend):
    """In-memory services for simulator nodes: never touches the host.

    Deterministic: the services in ``services`` start out running, any other name does not
    exist (ABORTED, as on a real host), and a stopped service stays stopped until started.
    """

    name = "simulated"

    def __init__(self, services: tuple[str, ...] = SIMULATED_SERVICES) -> None:
        self._state: dict[str, ServiceStatus] = dict.fromkeys(services, "running")
        self._lock = threading.Lock()

    def _require(self, service: str) -> None:
        if service not in self._state:
            raise ActionError(f"no such service {service!r} (simulated node)")

    def status(self, service: str) -> ServiceStatus:
        with self._lock:
            self._require(service)
            return self._state[service]

    def change(self, service: str, verb: Literal["start", "stop", "restart"]) -> ServiceStatus:
        with self._lock:
            self._require(service)
            self._state[service] = "stopped" if verb == "stop" else "running"
            return self._state[service]


def detect_service_backend() -> ServiceBackend | None:
    """The host's service manager: systemd if it is PID 1, else SysV ``service``, else None."""
    if systemd_running() and which("systemctl"):
        return SystemdBackend()
    if which("service") and os.path.isdir("/etc/init.d"):
        return SysVBackend()
    return None
