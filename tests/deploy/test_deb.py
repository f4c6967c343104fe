"""The node's Debian package: ``make deb`` builds ``switchboard-node_<version>_all.deb`` with
Debian's tooling (packaging/node/build-deb: debhelper, dh-python's pybuild), and the package
installs, upgrades and purges with apt on this machine.

Root and dpkg-buildpackage (scripts/install-deb-tools) are needed; without them the tests skip,
saying so, and fail under ``SWITCHBOARD_REQUIRE_SERVICES=1`` (CI). The install test changes the
machine (apt-get install, then purge) and cleans up after itself, even when it fails; it runs
only where no switchboard-node package and no /etc/switchboard exist yet.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import agents
from harness.services import require_service

pytestmark = pytest.mark.deb

ROOT = Path(__file__).resolve().parents[2]
VERSION = agents.__version__
NEXT_VERSION = f"{VERSION}.post1"  # sorts after VERSION for dpkg as for PEP 440
# Debian's python3 and tools, not the virtualenv's python3 that runs the tests.
SYSTEM_ENV = {
    **{k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")},
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "DEBIAN_FRONTEND": "noninteractive",
}
ETC = Path("/etc/switchboard")
KEY = ETC / "keys" / "node.pem"
TIMINGS: dict[str, float] = {}


def require_build_tools() -> None:
    require_service(
        "dpkg-buildpackage (as root)",
        shutil.which("dpkg-buildpackage") is not None
        and shutil.which("dh") is not None
        and os.geteuid() == 0,
        "run the tests as root after scripts/install-deb-tools (debhelper, dh-python, ...)",
    )


def run(
    argv: list[str], step: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one step with Debian's tools (stdin closed: a dpkg prompt fails, not hangs), timed."""
    started = time.monotonic()
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, check=False,
        stdin=subprocess.DEVNULL, env=env or SYSTEM_ENV,
    )  # fmt: skip
    TIMINGS[step] = round(time.monotonic() - started, 1)
    return done


def build(out: Path, version: str | None = None) -> Path:
    """``make deb`` (the script for another version), the .deb written to ``out``."""
    env = {"SWITCHBOARD_DEB_DIST": str(out)}
    if version is None:
        argv, version = ["make", "--no-print-directory", "-C", str(ROOT), "deb"], VERSION
    else:
        argv, env["SWITCHBOARD_DEB_VERSION"] = [str(ROOT / "packaging/node/build-deb")], version
    done = run(argv, f"build {version}", timeout=300, env={**SYSTEM_ENV, **env})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    deb = out / f"switchboard-node_{version}_all.deb"
    assert deb.is_file(), sorted(p.name for p in out.iterdir())
    return deb


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_build_tools()
    return build(tmp_path_factory.mktemp("deb"))


def test_make_deb_builds_the_node_package(deb: Path) -> None:
    fields = run(["dpkg-deb", "-f", str(deb)], "dpkg-deb -f").stdout
    info = dict(re.findall(r"^(\S+): (.*)$", fields, re.M))
    assert info["Package"] == "switchboard-node"
    assert info["Version"] == VERSION
    assert info["Architecture"] == "all"
    depends = [d.strip() for d in info["Depends"].split(",")]
    # Written out in debian/control, not dh_python3's guess from the wheel (stomp.py>=8.0.1).
    assert "python3-stomp (>= 8.0.0)" in depends
    assert any(d.startswith("python3-cryptography") for d in depends)
    assert any(d.startswith("python3-yaml") for d in depends)
    assert not any(d.startswith("python3-stomp (>= 8.0.1") for d in depends)

    listing = run(["dpkg-deb", "-c", str(deb)], "dpkg-deb -c").stdout
    files = {line.split()[-1].removeprefix(".") for line in listing.splitlines()}
    for path in [
        "/usr/bin/switchboard-node",
        "/usr/lib/python3/dist-packages/agents/__init__.py",
        "/usr/lib/python3/dist-packages/agents/daemon.py",
        "/usr/lib/python3/dist-packages/agents/plugins/rpcutil/ddl.json",
        "/lib/systemd/system/switchboard-node.service",
        "/etc/logrotate.d/switchboard-node",
        "/etc/switchboard/node.yaml",
        "/etc/switchboard/facts.yaml",
    ]:
        assert path in files, f"{path} not in the package"
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)
    site = "/usr/lib/python3/dist-packages/"
    assert not any(f.startswith((site + "portal", site + "tests", site + "harness")) for f in files)

    conffiles = run(["dpkg-deb", "-I", str(deb), "conffiles"], "conffiles").stdout.split()
    assert "/etc/switchboard/node.yaml" in conffiles
    assert "/etc/logrotate.d/switchboard-node" in conffiles


def test_packaged_unit_is_the_deploy_unit() -> None:
    """debian/'s unit is deploy/systemd's but for ExecStart, Documentation and comments."""

    def settings(path: Path) -> list[str]:
        lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
        return [ln for ln in lines if not ln.startswith(("ExecStart=", "Documentation="))]

    packaged = ROOT / "packaging/node/debian/switchboard-node.service"
    assert settings(packaged) == settings(ROOT / "deploy/systemd/switchboard-node.service")
    text = packaged.read_text()
    assert "ExecStart=/usr/bin/switchboard-node --config /etc/switchboard/node.yaml\n" in text
    assert "RestartPreventExitStatus=2\n" in text


def installed_version() -> str | None:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status} ${Version}", "switchboard-node"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    status = done.stdout.strip()
    return status.split()[-1] if done.returncode == 0 and "ok installed" in status else None


def require_clean_machine() -> None:
    """Skip (fail in CI) where switchboard-node or /etc/switchboard is already present."""
    require_service(
        "a machine without the switchboard-node package",
        installed_version() is None and not ETC.exists(),
        "this test installs and purges switchboard-node and /etc/switchboard; run it where "
        "neither is present",
    )


def purge_node_package() -> None:
    """Purge switchboard-node if installed, and remove what it or its daemon left."""
    known = subprocess.run(["dpkg-query", "-W", "switchboard-node"], capture_output=True)
    if known.returncode == 0:
        subprocess.run(["apt-get", "purge", "-y", "switchboard-node"], env=SYSTEM_ENV,
                       capture_output=True, timeout=120, check=False)  # fmt: skip
    for leftover in (ETC, Path("/var/log/switchboard"), Path("/var/lib/switchboard-node")):
        shutil.rmtree(leftover, ignore_errors=True)


@pytest.fixture
def clean_machine() -> Iterator[None]:
    require_build_tools()
    require_clean_machine()
    try:
        yield
    finally:
        purge_node_package()


def test_install_upgrade_purge(deb: Path, clean_machine: None, tmp_path: Path) -> None:
    # Install the version built from the tree.
    done = run(["apt-get", "install", "-y", str(deb)], "apt-get install")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert installed_version() == VERSION
    done = run(["/usr/bin/switchboard-node", "--version"], "--version")
    assert done.stdout.strip() == f"switchboard-node {VERSION}", done.stdout + done.stderr
    assert Path("/usr/bin/switchboard-node").read_text().startswith("#!/usr/bin/python3\n")
    # postinst made the node key (0600, public half beside it); the unit is enabled.
    assert KEY.is_file() and (KEY.stat().st_mode & 0o777) == 0o600
    assert Path(f"{KEY}.pub").is_file()
    key_bytes = KEY.read_bytes()
    assert b"PRIVATE KEY" in key_bytes
    assert Path("/etc/systemd/system/multi-user.target.wants/switchboard-node.service").is_symlink()
    # The example config cannot run (placeholder brokers, no portal key): one line, exit 2.
    done = run(["/usr/bin/switchboard-node", "--config", str(ETC / "node.yaml")], "daemon", 30)
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [ln for ln in done.stderr.splitlines() if " ERROR " in ln]
    assert len(errors) == 1, done.stderr
    assert "configuration error: /etc/switchboard/node.yaml" in errors[0], done.stderr
    assert "Traceback" not in done.stderr

    # Upgrade to the next version: the operator's node.yaml and the key stay as they are.
    config = ETC / "node.yaml"
    edited = config.read_text().replace("identity: web01.dc1.example", "identity: node-under-test")
    assert edited != config.read_text()
    config.write_text(edited)
    newer = build(tmp_path, NEXT_VERSION)
    done = run(["apt-get", "install", "-y", str(newer)], "apt-get install (upgrade)")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"keeping the node key {KEY}" in done.stdout, done.stdout[-3000:]
    assert installed_version() == NEXT_VERSION
    done = run(["/usr/bin/switchboard-node", "--version"], "--version (upgraded)")
    assert done.stdout.strip() == f"switchboard-node {NEXT_VERSION}"
    assert KEY.read_bytes() == key_bytes
    assert config.read_text() == edited

    # Purge: the package, its conffiles, the key it made, the log and /etc/switchboard go.
    done = run(["apt-get", "purge", "-y", "switchboard-node"], "apt-get purge")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert installed_version() is None
    assert not Path("/usr/bin/switchboard-node").exists()
    assert not Path("/usr/lib/python3/dist-packages/agents").exists()
    assert not ETC.exists(), sorted(str(p) for p in ETC.rglob("*"))
    assert not Path("/var/log/switchboard").exists()
    assert not Path("/etc/systemd/system/multi-user.target.wants/switchboard-node.service").exists()
    print("timings (s):", TIMINGS)
