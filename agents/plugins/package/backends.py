"""Package backends: apt/dpkg, dnf/rpm, and a simulated one for virtual nodes."""

from __future__ import annotations

import threading

from agents.plugins.base import ActionError
from agents.plugins.command import CommandResult, run_command, which

ABSENT = "absent"
QUERY_TIMEOUT = 60.0
CHANGE_TIMEOUT = 600.0  # downloads and maintainer scripts can be slow


class PackageBackend:
    """Installs, updates, removes and inspects packages; methods return the version after.

    A version is the package manager's full version string, or ``"absent"`` for a package
    the manager knows but has not installed. A name neither installed nor in any configured
    repository is an ActionError (ABORTED) from every method, never "absent": a typo must not
    read as a successful answer.
    """

    name = "abstract"

    def status(self, package: str) -> str:
        """The installed version, or "absent"; ActionError for a package nobody knows."""
        raise NotImplementedError

    def install(self, package: str) -> str:
        """Install if absent (an installed package is left as is)."""
        raise NotImplementedError

    def update(self, package: str) -> str:
        """Upgrade to the newest available version (installs if absent)."""
        raise NotImplementedError

    def uninstall(self, package: str) -> str:
        """Remove the package (absent already is fine)."""
        raise NotImplementedError


def unknown_package(package: str, where: str) -> ActionError:
    """The failure for a name that is neither installed nor available from ``where``."""
    return ActionError(f"unable to locate package {package}: not installed and not in {where}")


def _check(result: CommandResult, what: str) -> None:
    if result.exitcode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise ActionError(f"{what} failed (exit {result.exitcode}): {' '.join(detail[-3:])}")


class AptBackend(PackageBackend):
    """Debian/Ubuntu: ``dpkg-query`` to inspect, ``apt-get`` to change."""

    name = "apt"
    _ENV = {"DEBIAN_FRONTEND": "noninteractive"}

    def status(self, package: str) -> str:
        result = run_command(
            ["dpkg-query", "-W", "-f=${db:Status-Abbrev}\t${Version}", "--", package],
            timeout=QUERY_TIMEOUT,
        )
        if result.exitcode != 0:
            # dpkg has never heard of it: absent if a repository has it, else unknown.
            # apt-cache reads the local package lists only (no network); exit 100 = none.
            available = run_command(
                ["apt-cache", "show", "--no-all-versions", "--", package], timeout=QUERY_TIMEOUT
            )
            if available.exitcode != 0:
                raise unknown_package(package, "the apt package lists")
            return ABSENT
        flags, _, version = result.stdout.partition("\t")
        # "ii" means installed; "rc" (config files left) and others count as absent.
        return version.strip() if flags.startswith("ii") else ABSENT

    def _apt(self, *args: str, what: str) -> None:
        argv = ["apt-get", "-y", "-q", "-o", "Dpkg::Options::=--force-confold", *args]
        _check(run_command(argv, timeout=CHANGE_TIMEOUT, env=self._ENV), what)

    def install(self, package: str) -> str:
        if self.status(package) == ABSENT:
            self._apt("install", "--", package, what=f"apt-get install {package}")
        return self.status(package)

    def update(self, package: str) -> str:
        self.status(package)  # an unknown name fails here, with the same message as status
        self._apt("install", "--", package, what=f"apt-get install {package}")
        return self.status(package)

    def uninstall(self, package: str) -> str:
        if self.status(package) != ABSENT:
            self._apt("remove", "--", package, what=f"apt-get remove {package}")
        return self.status(package)


class DnfBackend(PackageBackend):
    """RHEL/Fedora: ``rpm -q`` to inspect, ``dnf`` to change."""

    name = "dnf"

    def status(self, package: str) -> str:
        result = run_command(
            ["rpm", "-q", "--qf", "%{EPOCH}:%{VERSION}-%{RELEASE}\n", "--", package],
            timeout=QUERY_TIMEOUT,
        )
        if result.exitcode != 0:
            # Not installed: absent if a repository has it, else unknown (dnf exits 1).
            available = run_command(["dnf", "-q", "info", "--", package], timeout=QUERY_TIMEOUT)
            if available.exitcode != 0:
                raise unknown_package(package, "any enabled dnf repository")
            return ABSENT
        version = result.stdout.strip().splitlines()[-1]
        return version.removeprefix("(none):")

    def _dnf(self, *args: str, what: str) -> None:
        _check(run_command(["dnf", "-y", "-q", *args], timeout=CHANGE_TIMEOUT), what)

    def install(self, package: str) -> str:
        if self.status(package) == ABSENT:
            self._dnf("install", "--", package, what=f"dnf install {package}")
        return self.status(package)

    def update(self, package: str) -> str:
        verb = "install" if self.status(package) == ABSENT else "upgrade"
        self._dnf(verb, "--", package, what=f"dnf {verb} {package}")
        return self.status(package)

    def uninstall(self, package: str) -> str:
        if self.status(package) != ABSENT:
            self._dnf("remove", "--", package, what=f"dnf remove {package}")
        return self.status(package)


# name -> (version installed at start or None, newest version in the simulated repository)
SIMULATED_REPOSITORY: dict[str, tuple[str | None, str]] = {
    "bash": ("5.2.15-2", "5.2.15-2"),
    "openssl": ("3.0.11-1", "3.0.13-1"),
    "openssh-server": ("9.2p1-2", "9.2p1-2+deb12u3"),
    "curl": ("7.88.1-10", "7.88.1-10+deb12u5"),
    "nginx": (None, "1.22.1-9"),
    "apache2": (None, "2.4.62-1"),
    "htop": (None, "3.2.2-2"),
    "puppet-agent": ("7.28.0-1", "7.30.0-1"),
}


class SimulatedPackageBackend(PackageBackend):
    """An in-memory package database for simulator nodes: never touches the host.

    Deterministic: every node starts from SIMULATED_REPOSITORY; install puts the newest
    version, update moves to it, uninstall removes; unknown names fail in every action, like
    the real backends.
    """

    name = "simulated"

    def __init__(self) -> None:
        self._installed = {n: v for n, (v, _) in SIMULATED_REPOSITORY.items() if v is not None}
        self._lock = threading.Lock()

    def _newest(self, package: str) -> str:
        if package not in SIMULATED_REPOSITORY:
            raise ActionError(f"unable to locate package {package} (simulated repository)")
        return SIMULATED_REPOSITORY[package][1]

    def status(self, package: str) -> str:
        with self._lock:
            if package not in self._installed:
                self._newest(package)  # raises for a name the repository does not have
            return self._installed.get(package, ABSENT)

    def install(self, package: str) -> str:
        with self._lock:
            self._installed.setdefault(package, self._newest(package))
            return self._installed[package]

    def update(self, package: str) -> str:
        with self._lock:
            self._installed[package] = self._newest(package)
            return self._installed[package]

    def uninstall(self, package: str) -> str:
        with self._lock:
            if self._installed.pop(package, None) is None:
                self._newest(package)  # absent is fine, unknown is not
            return ABSENT


def detect_package_backend() -> PackageBackend | None:
    """apt where dpkg-query and apt-get exist, else dnf where rpm and dnf exist, else None."""
    if which("dpkg-query") and which("apt-get"):
        return AptBackend()
    if which("rpm") and which("dnf"):
        return DnfBackend()
    return None
