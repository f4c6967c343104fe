"""Process backends: /proc on Linux, and a fixed simulated process table."""

from __future__ import annotations

import os
import pwd
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ProcessInfo:
    """One process as the process agent reports it (rss in KiB)."""

    pid: int
    user: str
    command: str
    rss: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON form sent in a reply."""
        return asdict(self)


class ProcessBackend:
    """Lists the processes of the node."""

    name = "abstract"

    def processes(self) -> list[ProcessInfo]:
        """Every visible process, sorted by pid."""
        raise NotImplementedError


class ProcBackend(ProcessBackend):
    """Reads ``/proc/<pid>/{status,cmdline}`` directly: no subprocess, no ps output parsing."""

    name = "proc"

    def __init__(self, root: str = "/proc") -> None:
        self.root = root

    def processes(self) -> list[ProcessInfo]:
        found = []
        for entry in os.listdir(self.root):
            if entry.isdigit():
                info = self._read(int(entry))
                if info is not None:
                    found.append(info)
        return sorted(found, key=lambda p: p.pid)

    def _read(self, pid: int) -> ProcessInfo | None:
        base = os.path.join(self.root, str(pid))
        try:
            with open(os.path.join(base, "status"), encoding="utf-8", errors="replace") as fh:
                status = dict(line.split(":", 1) for line in fh if ":" in line)
            with open(os.path.join(base, "cmdline"), "rb") as fh:
                cmdline = fh.read()
        except OSError:
            return None  # the process exited while we looked; that is normal
        uid = int(status.get("Uid", "0").split()[0])
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        rss_field = status.get("VmRSS", "0 kB").split()
        args = [a.decode("utf-8", "replace") for a in cmdline.split(b"\0") if a]
        # Kernel threads have no command line; ps shows their name in brackets too.
        command = " ".join(args) if args else f"[{status.get('Name', '?').strip()}]"
        return ProcessInfo(pid=pid, user=user, command=command, rss=int(rss_field[0]))


SIMULATED_PROCESSES = (
    (1, "root", "/sbin/init", 11264),
    (412, "root", "/usr/sbin/cron -f", 2816),
    (433, "root", "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups", 9472),
    (501, "syslog", "/usr/sbin/rsyslogd -n -iNONE", 5120),
    (
        777,
        "root",
        "/opt/switchboard/bin/python -m agents --config /etc/switchboard/node.yaml",
        41984,
    ),
    (1024, "www-data", "nginx: worker process", 7936),
)


class SimulatedProcessBackend(ProcessBackend):
    """A fixed, deterministic process table for simulator nodes: never reads the host."""

    name = "simulated"

    def processes(self) -> list[ProcessInfo]:
        return [ProcessInfo(*row) for row in SIMULATED_PROCESSES]


def detect_process_backend() -> ProcessBackend | None:
    """/proc where it is mounted, else None."""
    return ProcBackend() if os.path.isdir("/proc/self") else None
