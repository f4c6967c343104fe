"""``switchboard-node`` on the command line: --version, and a config it cannot use.

A node package installed without a config, or with one naming no broker, must say why in one
log line (naming the file and the setting) and exit non-zero, with no traceback, so systemd's
status and the journal show the reason.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from agents import __version__
from agents.config import load_config
from agents.daemon import main

ROOT = Path(__file__).resolve().parents[2]


def run_node(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agents", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_flag_prints_name_and_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"switchboard-node {__version__}\n"


def test_version_from_the_command_line():
    done = run_node("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"switchboard-node {__version__}"


# (file name, content or None for no file, what the one ERROR line must say)
BAD_CONFIGS = [
    ("absent.yaml", None, "cannot read it: No such file or directory"),
    ("empty.yaml", "", "the file is empty; it must name at least brokers"),
    ("comments.yaml", "# only a comment\n", "the file is empty; it must name at least brokers"),
    ("no-brokers.yaml", "identity: n1.example\n", "brokers: no broker named"),
    ("null-brokers.yaml", "brokers:\n", "brokers: no broker named"),
    ("empty-list.yaml", "brokers: []\n", "brokers: no broker named"),
    ("empty-string.yaml", "brokers: ''\n", "brokers: no broker named"),
    ("no-port.yaml", "brokers: stomp1.dc1.example\n", "brokers: broker 'stomp1.dc1.example'"),
    ("bad-port.yaml", "brokers: 'h:99999'\n", "brokers: broker 'h:99999' has port 99999"),
    ("word-port.yaml", "brokers: [h1:61613, 'h2:x']\n", "brokers: broker 'h2:x' has a non-numeric"),
    ("numbers.yaml", "brokers: [1, 2]\n", "brokers must be host:port"),
    ("mapping.yaml", "brokers: {h1: 61613}\n", "brokers must be host:port"),
    ("invalid.yaml", "brokers: 'h:1'\nfacts: [\n", "not valid YAML: line 3, column 1"),
    ("tabs.yaml", "brokers: 'h:1'\n\tidentity: x\n", "not valid YAML: line 2"),
    ("list.yaml", "- brokers\n", "must hold a mapping of settings, not list"),
    ("binary.yaml", b"\xff\xfe\x00", "not UTF-8 text"),
    ("typo.yaml", "brokers: 'h:1'\nbroker: 'h:2'\n", "unknown setting(s) broker"),
    ("heartbeats.yaml", "brokers: 'h:1'\nheartbeats: [a, b]\n", "heartbeats must be"),
    ("collectives.yaml", "brokers: 'h:1'\ncollectives: dc1\n", "collectives must be a non-empty"),
    ("audit.yaml", "brokers: 'h:1'\naudit_log: 5\n", "audit_log must be a path, not 5"),
    ("facts.yaml", "brokers: 'h:1'\nfacts: f.json\n", "facts file"),
    (
        "agents.yaml",
        "brokers: 'h:1'\nrequire_signatures: false\nagents: [nosuch]\n",
        "unknown agent 'nosuch'",
    ),
]


def write_config(tmp_path: Path, name: str, content: str | bytes | None) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    (tmp_path / "f.json").write_text("{not json")
    return path


@pytest.mark.parametrize(
    ("name", "content", "reason"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS]
)
def test_unusable_config_is_one_error_line_and_exit_2(tmp_path, caplog, name, content, reason):
    path = write_config(tmp_path, name, content)
    with caplog.at_level(logging.INFO, logger="agents"):
        assert main(["--config", str(path)]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    [line] = errors
    assert line.startswith(f"configuration error: {path}: "), line
    assert reason in line
    assert "\n" not in line


@pytest.mark.parametrize("name", ["absent.yaml", "no-brokers.yaml", "invalid.yaml", "numbers.yaml"])
def test_the_process_says_why_without_a_traceback(tmp_path, name):
    content = {c[0]: c[1] for c in BAD_CONFIGS}[name]
    path = write_config(tmp_path, name, content)
    done = run_node("--config", str(path))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    [line] = [ln for ln in done.stderr.splitlines() if " ERROR " in ln]
    assert f"configuration error: {path}: " in line
    assert done.stdout == ""


def test_the_example_config_names_its_brokers():
    """The shipped example passes the file checks (a package may install it as the conffile)."""
    example = ROOT / "agents" / "examples" / "node.yaml"
    assert load_config(example).brokers
