"""Node configuration: one YAML file, facts and classes inline or in their own files.

YAML is fine here because these are local files written by the operator; nothing from the
wire is ever parsed with YAML.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agents.plugins.base import BACKEND_CHOICES
from agents.protocol.destinations import validate_name
from agents.protocol.identity import identity_problem
from agents.protocol.transport import DEFAULT_HEARTBEATS, TLSConfig, parse_brokers

NRPE_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


class ConfigError(ValueError):
    """A node configuration that cannot be used; the message names the setting."""


@dataclass
class NodeConfig:
    """Everything one node daemon needs; defaults make a node for the embedded broker."""

    identity: str = field(default_factory=socket.getfqdn)
    facts: dict[str, Any] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    collectives: list[str] = field(default_factory=lambda: ["mcollective"])
    main_collective: str = "mcollective"
    brokers: list[tuple[str, int]] = field(default_factory=lambda: [("127.0.0.1", 61613)])
    login: str | None = None
    passcode: str | None = None
    agents: list[str] | None = None  # None: every available agent
    heartbeats: tuple[int, int] = DEFAULT_HEARTBEATS
    register_interval: float = 300.0
    workers: int = 4
    connect_timeout: float = 5.0
    directed: bool = False
    # "auto": agents act on this host; "simulated": in-memory backends (simulator nodes).
    backend: str = "auto"
    nrpe_commands: dict[str, list[str]] = field(default_factory=dict)
    policy_dir: str | None = None  # None: no policy, every request allowed
    policy_default: str = "allow"  # for an agent without a policy file in policy_dir
    audit_log: str | None = None  # None: no audit log
    audit_max_bytes: int = 10 * 1024 * 1024
    audit_backups: int = 5
    # Public keys (PEM files, or directories of *.pub) whose signed requests this node obeys.
    trusted_keys: list[str] = field(default_factory=list)
    # Refuse unsigned requests; only a lab node with no portal key should turn this off.
    require_signatures: bool = True
    # This node's own Ed25519 key (PEM), created on first start; replies are signed with it.
    signing_key: str | None = None
    # How far in the future a request's msgtime may be (portal and node clocks differ a little).
    clock_skew: float = 30.0
    # The longest ttl (seconds) a request may carry. A longer one is refused: a request that
    # stays valid for days could be replayed for days, and the node remembers each request id
    # (to refuse replays) until its ttl has passed.
    max_ttl: int = 3600
    # The oldest msgtime (seconds ago) accepted, whatever the ttl says: an ancient request is a
    # replay or a clock gone wrong, and is refused as such, not merely as expired.
    max_age: float = 3600.0
    # A shared secret the portal may auto-accept new nodes by (docs/node.md, Enrolment); it
    # never crosses the wire, only an HMAC made with it. Better kept in the environment
    # (SWITCHBOARD_ENROLMENT_TOKEN) than in this file.
    enrolment_token: str | None = None
    # TLS to the brokers (their STOMP over TLS ports): the CA that signed the brokers'
    # certificates, and this node's certificate and key (PEM). No tls_ca: plain STOMP.
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    def __post_init__(self) -> None:
        for collective in self.collectives:
            validate_name("collective", collective)
        if self.main_collective not in self.collectives:
            raise ConfigError(
                f"main_collective {self.main_collective!r} is not in collectives {self.collectives}"
            )
        problem = identity_problem(self.identity)
        if problem is not None:
            raise ConfigError(f"identity {self.identity!r} {problem}")
        if self.backend not in BACKEND_CHOICES:
            raise ConfigError(
                f"backend must be one of {', '.join(BACKEND_CHOICES)}, not {self.backend!r}"
            )
        if self.policy_default not in ("allow", "deny"):
            raise ConfigError(f"policy_default must be allow or deny, not {self.policy_default!r}")
        if self.audit_max_bytes < 1024 or self.audit_backups < 1:
            raise ConfigError("audit_max_bytes must be >= 1024 and audit_backups >= 1")
        _check_nrpe_commands(self.nrpe_commands)
        if self.clock_skew < 0:
            raise ConfigError("clock_skew must not be negative")
        for name in ("max_ttl", "max_age"):
            _check_positive_seconds(name, getattr(self, name))
        if (self.tls_cert or self.tls_key) and not self.tls_ca:
            raise ConfigError("tls_cert and tls_key need tls_ca (the CA of the brokers)")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("give tls_cert and tls_key together")

    @property
    def tls(self) -> TLSConfig | None:
        """The TLS settings for the broker connection; None for plain STOMP."""
        return TLSConfig.from_files(self.tls_ca, self.tls_cert, self.tls_key)


def _check_positive_seconds(name: str, value: Any) -> None:
    # bool is an int in Python, and YAML turns "yes" into True: refuse it explicitly.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number of seconds, not {value!r}")
    if not (0 < value < math.inf):
        raise ConfigError(f"{name} must be a positive number of seconds, not {value!r}")


def _check_nrpe_commands(commands: Any) -> None:
    if not isinstance(commands, dict):
        raise ConfigError("nrpe_commands must map a check name to an argument list")
    for name, argv in commands.items():
        if not isinstance(name, str) or not NRPE_NAME_RE.fullmatch(name):
            raise ConfigError(f"nrpe_commands: bad check name {name!r}")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ConfigError(f"nrpe_commands.{name} must be a non-empty list of strings")
        # Absolute, so the daemon (root) never runs whatever a PATH lookup finds.
        if not os.path.isabs(argv[0]):
            raise ConfigError(f"nrpe_commands.{name}: {argv[0]!r} must be an absolute path")


def _read_facts(value: Any, base: Path) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        path = (base / value).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"facts file {path}: {exc.strerror}") from exc
        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise ConfigError(
                f"facts file {path} is not valid {_syntax_name(path)}: {_one_line(exc)}"
            ) from exc
        if not isinstance(data, dict):
            raise ConfigError(f"facts file {path} must hold a mapping")
        return data
    raise ConfigError("facts must be a mapping or a path to a YAML/JSON file")


def _read_classes(value: Any, base: Path) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):
        path = (base / value).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"classes file {path}: {exc.strerror}") from exc
        return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    raise ConfigError("classes must be a list or a path to a file with one class per line")


def config_from_dict(raw: dict[str, Any], base: Path | None = None) -> NodeConfig:
    """Build a NodeConfig from a parsed YAML mapping; relative file paths resolve from ``base``."""
    base = base or Path.cwd()
    known = set(NodeConfig.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")
    kwargs: dict[str, Any] = dict(raw)
    kwargs["facts"] = _read_facts(raw.get("facts"), base)
    kwargs["classes"] = _read_classes(raw.get("classes"), base)
    if "trusted_keys" in raw:
        keys = raw["trusted_keys"]
        if isinstance(keys, str):
            keys = [keys]
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ConfigError("trusted_keys must be a path or a list of paths")
        kwargs["trusted_keys"] = [str((base / k).expanduser()) for k in keys]
    for key in ("signing_key", "policy_dir", "audit_log", "tls_ca", "tls_cert", "tls_key"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise ConfigError(f"{key} must be a path, not {raw[key]!r}")
    if raw.get("signing_key"):
        kwargs["signing_key"] = str((base / raw["signing_key"]).expanduser())
    if "brokers" in raw:
        kwargs["brokers"] = _read_brokers(raw["brokers"])
    if "collectives" in raw:
        collectives = raw["collectives"]
        if not isinstance(collectives, list) or not collectives:
            raise ConfigError("collectives must be a non-empty list of collective names")
        if "main_collective" not in raw:
            kwargs["main_collective"] = collectives[0]
    for key in ("policy_dir", "audit_log"):
        if raw.get(key):
            kwargs[key] = str((base / str(raw[key])).expanduser())
    for key in ("tls_ca", "tls_cert", "tls_key"):
        if raw.get(key):
            path = (base / str(raw[key])).expanduser()
            if not (path.is_file() and os.access(path, os.R_OK)):
                raise ConfigError(f"{key}: {path} is not a readable file")
            kwargs[key] = str(path)
    if "heartbeats" in raw:
        beats = raw["heartbeats"]
        if not (
            isinstance(beats, list)
            and len(beats) == 2
            and all(isinstance(b, int) and not isinstance(b, bool) and b >= 0 for b in beats)
        ):
            raise ConfigError(f"heartbeats must be [send_ms, receive_ms], not {beats!r}")
        kwargs["heartbeats"] = (beats[0], beats[1])
    # Secrets may come from the environment so they stay out of the config file.
    kwargs.setdefault("login", os.environ.get("SWITCHBOARD_NODE_LOGIN"))
    kwargs.setdefault("passcode", os.environ.get("SWITCHBOARD_NODE_PASSCODE"))
    kwargs.setdefault("enrolment_token", os.environ.get("SWITCHBOARD_ENROLMENT_TOKEN") or None)
    try:
        return NodeConfig(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc


def _read_brokers(value: Any) -> list[tuple[str, int]]:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        value = ",".join(value)
    if not isinstance(value, str):
        raise ConfigError(
            f"brokers must be host:port[,host:port...] or a list of host:port, not {value!r}"
        )
    try:
        return parse_brokers(value)
    except ValueError as exc:
        raise ConfigError(f"brokers: {exc}") from exc


def _syntax_name(path: Path) -> str:
    return "JSON" if path.suffix == ".json" else "YAML"


def _one_line(exc: Exception) -> str:
    """A parser's complaint on one line, with its line and column (PyYAML's spans several)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        return where + " ".join(str(exc.problem or exc.context or "syntax error").split())
    return " ".join(str(exc).split())


def load_config(path: str | Path) -> NodeConfig:
    """Read a node's YAML config file (see agents/examples/node.yaml).

    Unlike ``config_from_dict`` (and NodeConfig's defaults, for the simulator and tests), the
    file must name its brokers: a node installed with an empty or missing config must say so
    and stop, not quietly dial 127.0.0.1. Every ConfigError names the file, on one line.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_one_line(exc)}") from exc
    if raw is None:
        raise ConfigError(f"{path}: the file is empty; it must name at least brokers")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must hold a mapping of settings, not {type(raw).__name__}")
    if raw.get("brokers") in (None, "", []):
        raise ConfigError(
            f"{path}: brokers: no broker named; set brokers: host:port[,host:port...]"
        )
    try:
        return config_from_dict(raw, path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
