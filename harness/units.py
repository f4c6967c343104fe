"""The portal's systemd units (deploy/systemd) as commands this checkout can run.

A test that runs "what production runs" must not keep its own copy of the command lines: it
reads each unit's ``[Service]`` section here (``ExecStart=``, ``Environment=``,
``EnvironmentFile=``, ``WorkingDirectory=``), fills in the specifiers systemd would (``%i``,
``%H``, ...), and moves the installed paths onto this checkout:

* ``/opt/switchboard-portal/venv/bin/X`` -> ``<repo>/.venv/bin/X``
* ``/opt/switchboard-portal`` -> ``<repo>``
* ``/var/lib/switchboard`` (the unit's state) -> the caller's ``var_dir``
* ``/etc/switchboard/portal.env`` -> the caller's environment file

Command lines are split with ``shlex``, which agrees with systemd's own splitting for the
quoting these units use (none, or plain double quotes); a unit using anything ``shlex`` reads
differently (``$VAR`` expansion, ``\\;``) is refused rather than run wrong.
"""

from __future__ import annotations

import shlex
import socket
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
UNIT_DIR = BASE_DIR / "deploy" / "systemd"
INSTALL_DIR = "/opt/switchboard-portal"
INSTALLED_VENV_BIN = f"{INSTALL_DIR}/venv/bin/"
STATE_DIR = "/var/lib/switchboard"
PORTAL_ENV_FILE = "/etc/switchboard/portal.env"
LOCAL_VENV_BIN = BASE_DIR / ".venv" / "bin"

# The portal's units (switchboard-node.service is the node's, installed by its package).
PORTAL_UNITS = (
    "switchboard-setup.service",
    "switchboard-asgi@.service",
    "switchboard-worker@.service",
    "switchboard-beat.service",
    "switchboard-registrations@.service",
)


class UnitError(ValueError):
    """A unit this module cannot turn into a command faithfully; the message says which line."""


@dataclass(frozen=True)
class Unit:
    """A unit's ``[Service]`` settings as written (specifiers and installed paths unresolved)."""

    path: Path
    exec_start: tuple[str, ...]
    environment: tuple[str, ...] = ()
    environment_files: tuple[str, ...] = ()
    working_directory: str = ""

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def template(self) -> bool:
        """A template unit (``name@.service``): it needs an instance."""
        return self.name.split(".")[0].endswith("@")


@dataclass(frozen=True)
class Command:
    """One ExecStart line of one unit instance, ready to run here."""

    argv: tuple[str, ...]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    ignore_failure: bool = False  # the line had systemd's "-" prefix


def read_unit(path: Path) -> Unit:
    """Parse the ``[Service]`` section of ``path``; an empty ``ExecStart=`` resets the list,
    as in systemd."""
    values: dict[str, list[str]] = {}
    section = ""
    logical = ""
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not logical and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):  # a continued line: systemd joins it with a space
            logical += line[:-1] + " "
            continue
        line, logical = logical + line, ""
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section != "Service":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise UnitError(f"{path.name}:{number}: not a key=value line: {raw!r}")
        key, value = key.strip(), value.strip()
        if value == "":
            values[key] = []
        else:
            values.setdefault(key, []).append(value)
    if not values.get("ExecStart"):
        raise UnitError(f"{path.name}: no ExecStart= in [Service]")
    working = values.get("WorkingDirectory", [""])
    return Unit(
        path=path,
        exec_start=tuple(values["ExecStart"]),
        environment=tuple(values.get("Environment", [])),
        environment_files=tuple(values.get("EnvironmentFile", [])),
        working_directory=working[-1],
    )


def portal_unit(name: str) -> Unit:
    """One of deploy/systemd's portal units by file name."""
    return read_unit(UNIT_DIR / name)


def specifiers(unit: Unit, instance: str = "", host: str | None = None) -> dict[str, str]:
    """What systemd puts for each specifier these units may use."""
    if unit.template and not instance:
        raise UnitError(f"{unit.name} is a template: give an instance")
    if instance and not unit.template:
        raise UnitError(f"{unit.name} is not a template: it takes no instance")
    prefix = unit.name.split("@")[0] if unit.template else unit.name.rsplit(".", 1)[0]
    full = f"{prefix}@{instance}.service" if unit.template else unit.name
    return {
        "i": instance,
        "I": instance,
        "H": host if host is not None else socket.gethostname(),
        "n": full,
        "N": full.rsplit(".", 1)[0],
        "p": prefix,
        "%": "%",
    }


def expand(text: str, values: dict[str, str]) -> str:
    """Replace ``%x`` specifiers; an unknown one is an error, never passed on literally."""
    out: list[str] = []
    chars = iter(text)
    for char in chars:
        if char != "%":
            out.append(char)
            continue
        spec = next(chars, "")
        if spec not in values:
            raise UnitError(f"unsupported specifier %{spec} in {text!r}")
        out.append(values[spec])
    return "".join(out)


def localise(arg: str, var_dir: Path) -> str:
    """An installed path (venv, portal tree, state directory) as its place in this checkout."""
    if arg.startswith(INSTALLED_VENV_BIN):
        return str(LOCAL_VENV_BIN / arg[len(INSTALLED_VENV_BIN) :])
    if arg == INSTALL_DIR or arg.startswith(INSTALL_DIR + "/"):
        return str(BASE_DIR) + arg[len(INSTALL_DIR) :]
    if arg == STATE_DIR or arg.startswith(STATE_DIR + "/"):
        return str(var_dir) + arg[len(STATE_DIR) :]
    return arg


def read_environment_file(path: Path) -> dict[str, str]:
    """systemd's EnvironmentFile format: ``KEY=value`` lines, ``#``/``;`` comments, values
    optionally in single or double quotes."""
    env: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise UnitError(f"{path}: not a KEY=value line: {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def commands(
    unit: Unit,
    *,
    instance: str = "",
    var_dir: Path,
    env_file: Path | None = None,
    host: str | None = None,
) -> list[Command]:
    """Every ExecStart line of ``unit`` (instance ``instance``) as a command for this checkout.

    The environment is what the unit gives its process: ``env_file`` in place of
    ``/etc/switchboard/portal.env`` (required when the unit names it), then ``Environment=``.
    """
    values = specifiers(unit, instance, host)
    env: dict[str, str] = {}
    for spec in unit.environment_files:
        optional = spec.startswith("-")
        name = expand(spec.lstrip("-"), values)
        if name == PORTAL_ENV_FILE and env_file is not None:
            env.update(read_environment_file(env_file))
        elif not optional:
            raise UnitError(f"{unit.name}: EnvironmentFile={name} has no stand-in here")
    for assignments in unit.environment:
        for item in shlex.split(expand(assignments, values)):
            key, _, value = item.partition("=")
            env[key] = value
    cwd = Path(localise(expand(unit.working_directory, values), var_dir) or BASE_DIR)
    result = []
    for line in unit.exec_start:
        prefix = ""
        while line and line[0] in "-@+!:":
            prefix, line = prefix + line[0], line[1:]
        if set(prefix) - {"-"}:
            raise UnitError(f"{unit.name}: ExecStart prefix {prefix!r} is not supported here")
        if "$" in line or "\\" in line:
            raise UnitError(f"{unit.name}: ExecStart={line!r} needs systemd's own expansion")
        argv = tuple(localise(arg, var_dir) for arg in shlex.split(expand(line, values)))
        result.append(Command(argv, cwd, env, ignore_failure="-" in prefix))
    return result


def command(
    unit: Unit,
    *,
    instance: str = "",
    var_dir: Path,
    env_file: Path | None = None,
    host: str | None = None,
) -> Command:
    """The single ExecStart of a long-running unit (asgi, worker, beat, registrations)."""
    found = commands(unit, instance=instance, var_dir=var_dir, env_file=env_file, host=host)
    if len(found) != 1:
        raise UnitError(f"{unit.name} has {len(found)} ExecStart lines; expected one")
    return found[0]
