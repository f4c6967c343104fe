"""docker-compose.yml and the Dockerfile in step with the systemd units and their configs.

No container engine runs where the tests run, so this reads the files instead: the units in
deploy/systemd/ (through ``harness.units``, the reader the scaled-portal test runs them with),
docker-compose.yml, the Dockerfile, deploy/portal.env.example, deploy/nginx/switchboard.conf
and the committed broker renders. Each failure names the file and what is out of step.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.units import (
    PORTAL_ENV_FILE,
    PORTAL_UNITS,
    Unit,
    expand,
    portal_unit,
    read_environment_file,
    specifiers,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / "deploy" / "portal.env.example"
NGINX_CONF = ROOT / "deploy" / "nginx" / "switchboard.conf"
RENDERED = ROOT / "deploy" / "activemq" / "rendered"
SETTINGS = ROOT / "portal" / "settings.py"

# docker-compose.yml names the unit instance each portal service runs in this label.
UNIT_LABEL = "net.switchboard.unit"
# A service running several ExecStart lines (setup) runs them as `/bin/sh -ec "A && B"`.
SHELL_PREFIX = ["/bin/sh", "-ec"]
# Variables settings.py reads that a production host does not set.
NOT_FOR_PRODUCTION = {"SWITCHBOARD_TEST_DB": "the test suite's SQLite file"}
# Values in portal.env.example a site must replace, so compose must replace them too.
PLACEHOLDER = re.compile(r"change-me|example\.net")
ACTIVEMQ_CONF_IN_CONTAINER = "/opt/apache-activemq/conf"


@dataclass(frozen=True)
class PortalService:
    """A compose service that runs one instance of a portal unit."""

    name: str
    unit: Unit
    instance: str
    spec: dict[str, Any]


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return data


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _unit_instance(label: str) -> tuple[str, str]:
    """``switchboard-asgi@8001.service`` -> (``switchboard-asgi@.service``, ``8001``)."""
    stem, _, suffix = label.rpartition(".")
    prefix, at, instance = stem.partition("@")
    return (f"{prefix}@.{suffix}" if at else label), instance


def _portal_services() -> list[PortalService]:
    found = []
    for name, spec in _services().items():
        label = (spec.get("labels") or {}).get(UNIT_LABEL)
        if label is None:
            continue
        unit_name, instance = _unit_instance(label)
        assert unit_name in PORTAL_UNITS, (
            f"docker-compose.yml: service {name!r} is labelled {label!r}, but "
            f"deploy/systemd has no portal unit {unit_name!r} (known: {', '.join(PORTAL_UNITS)})"
        )
        found.append(PortalService(name, portal_unit(unit_name), instance, spec))
    return found


def _unit_setting(unit: Unit, key: str) -> str:
    """One plain ``[Service]`` setting (User=, StateDirectory=, ...); last one wins."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit.path.read_text(encoding="utf-8"))
    return parser.get("Service", key, fallback="")


def _expected_argvs(unit: Unit, instance: str, host: str) -> list[list[str]]:
    values = specifiers(unit, instance, host)
    return [shlex.split(expand(line, values)) for line in unit.exec_start]


def _service_argvs(command: list[str]) -> list[list[str]]:
    if command[:2] == SHELL_PREFIX and len(command) == 3:
        return [shlex.split(part) for part in command[2].split("&&")]
    return [list(command)]


def _defaults(text: str) -> str:
    """Compose interpolation with nothing set: ``${VAR:-default}`` -> default."""
    return re.sub(r"\$\{[A-Z0-9_]+:?-([^}]*)\}", r"\1", text)


def _mounts(spec: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Container path -> (source with defaults filled in, read-only) for a service's volumes."""
    mounts = {}
    for entry in spec.get("volumes", []):
        source, target, *mode = _defaults(entry).split(":")
        mounts[target] = (source, "ro" in mode)
    return mounts


def _repo_path(source: str) -> Path:
    return (ROOT / source).resolve()


def _env_file_entries(spec: dict[str, Any]) -> list[Path]:
    entries = spec.get("env_file", [])
    entries = [entries] if isinstance(entries, str) else entries
    return [_repo_path(e if isinstance(e, str) else e["path"]) for e in entries]


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined."""
    instructions = []
    logical = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        line, logical = logical + line, ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def _dockerfile_env() -> dict[str, str]:
    env = {}
    for keyword, args in _dockerfile():
        if keyword == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def _dockerfile_run_commands() -> list[list[str]]:
    """Every simple command of every RUN, split at ``&&``, leading VAR=value words dropped."""
    commands = []
    for keyword, args in _dockerfile():
        if keyword != "RUN":
            continue
        for part in args.split("&&"):
            words = shlex.split(part)
            while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
                words.pop(0)
            commands.append(words)
    return commands


def _last(keyword: str) -> str:
    values = [args for kw, args in _dockerfile() if kw == keyword]
    assert values, f"Dockerfile: no {keyword} instruction"
    return values[-1]


def _settings_variables() -> set[str]:
    text = SETTINGS.read_text(encoding="utf-8")
    names = re.findall(r"env_(?:str|bool|float|list)\(\s*\"([A-Z0-9_]+)\"", text)
    names += re.findall(r"os\.environ(?:\.get\(|\[)\s*\"([A-Z0-9_]+)\"", text)
    return set(names)


# -- the portal processes ---------------------------------------------------------------------


def test_every_portal_unit_has_a_compose_service() -> None:
    services = _portal_services()
    for unit_name in PORTAL_UNITS:
        assert any(s.unit.name == unit_name for s in services), (
            f"deploy/systemd/{unit_name} has no service in docker-compose.yml: add one "
            f"labelled {UNIT_LABEL}: {unit_name.replace('@.', '@1.')} whose command is its "
            f"ExecStart"
        )


@pytest.mark.parametrize("service", _portal_services(), ids=lambda s: s.name)
def test_each_service_runs_its_units_exec_start(service: PortalService) -> None:
    command = service.spec.get("command")
    assert isinstance(command, list), (
        f"docker-compose.yml: {service.name}: command must be a list (the unit's argv), "
        f"got {command!r}"
    )
    host = service.spec.get("hostname", "<no hostname: set `hostname:` for %H>")
    expected = _expected_argvs(service.unit, service.instance, host)
    assert _service_argvs(command) == expected, (
        f"docker-compose.yml: {service.name} runs {command!r}, but "
        f"{service.unit.name} (instance {service.instance or '-'}) runs "
        + " then ".join(shlex.join(argv) for argv in expected)
        + (f" (several ExecStart lines: {[*SHELL_PREFIX, 'A && B']})" if len(expected) > 1 else "")
    )


@pytest.mark.parametrize("service", _portal_services(), ids=lambda s: s.name)
def test_each_service_runs_as_the_unit_does(service: PortalService) -> None:
    spec = service.spec
    for key in ("user", "working_dir", "entrypoint"):
        assert key not in spec, (
            f"docker-compose.yml: {service.name} sets {key}: the image's (the Dockerfile's "
            f"USER/WORKDIR, as the unit's User=/WorkingDirectory=) must hold"
        )
    assert spec.get("build", {}).get("dockerfile") == "Dockerfile", (
        f"docker-compose.yml: {service.name} is not built from the Dockerfile"
    )
    assert _repo_path(ENV_EXAMPLE.relative_to(ROOT).as_posix()) in _env_file_entries(spec), (
        f"docker-compose.yml: {service.name} does not read deploy/portal.env.example "
        f"(env_file), the stand-in for the unit's EnvironmentFile={PORTAL_ENV_FILE}"
    )
    if service.unit.name != "switchboard-setup.service":
        depends = spec.get("depends_on", {})
        assert depends.get("setup", {}).get("condition") == "service_completed_successfully", (
            f"docker-compose.yml: {service.name} must wait for setup "
            f"(depends_on: setup: condition: service_completed_successfully), as "
            f"{service.unit.name} has Requires=/After=switchboard-setup.service"
        )


def test_the_asgi_servers_are_the_ones_nginx_balances_over() -> None:
    upstream = re.search(r"upstream\s+\w+\s*\{(.*?)\}", NGINX_CONF.read_text(), re.S)
    assert upstream, "deploy/nginx/switchboard.conf has no upstream block"
    ports = sorted(re.findall(r"server\s+127\.0\.0\.1:(\d+)", upstream.group(1)))
    asgi = [s for s in _portal_services() if s.unit.name == "switchboard-asgi@.service"]
    assert sorted(s.instance for s in asgi) == ports, (
        f"docker-compose.yml runs switchboard-asgi@ on ports "
        f"{sorted(s.instance for s in asgi)}, deploy/nginx/switchboard.conf's upstream lists "
        f"{ports}"
    )
    for service in asgi:
        # The unit binds 127.0.0.1: only a process in the same network namespace reaches it.
        assert service.spec.get("network_mode") == "service:nginx", (
            f"docker-compose.yml: {service.name} binds 127.0.0.1 (its unit's --bind), so it "
            f"must share nginx's network namespace (network_mode: service:nginx)"
        )


def test_exactly_one_beat() -> None:
    beats = [s for s in _portal_services() if s.unit.name == "switchboard-beat.service"]
    assert len(beats) == 1, (
        f"docker-compose.yml runs {len(beats)} services for switchboard-beat.service "
        f"({[s.name for s in beats]}): a site has exactly one beat, or every periodic task "
        f"is queued once per beat"
    )
    spec = beats[0].spec
    replicas = spec.get("deploy", {}).get("replicas", 1)
    assert replicas == 1 and spec.get("scale", 1) == 1, (
        f"docker-compose.yml: {beats[0].name} is scaled to {replicas} replicas; beat must be one"
    )


# -- the environment ---------------------------------------------------------------------------


def test_portal_env_example_names_every_production_setting() -> None:
    example = read_environment_file(ENV_EXAMPLE)
    wanted = _settings_variables() - set(NOT_FOR_PRODUCTION)
    missing = sorted(wanted - set(example))
    assert not missing, (
        f"portal/settings.py reads {missing}, which deploy/portal.env.example does not list"
    )
    unknown = sorted(set(example) - _settings_variables())
    assert not unknown, f"deploy/portal.env.example sets {unknown}, which no setting reads"
    with_dollar = sorted(k for k, v in example.items() if "$" in v)
    assert not with_dollar, (
        f"deploy/portal.env.example: {with_dollar} hold '$', which docker compose's env_file "
        f"expands and systemd's EnvironmentFile does not"
    )
    state_dir = "/var/lib/" + _unit_setting(portal_unit(PORTAL_UNITS[0]), "StateDirectory")
    assert example["SWITCHBOARD_VAR_DIR"] == state_dir, (
        f"deploy/portal.env.example: SWITCHBOARD_VAR_DIR={example['SWITCHBOARD_VAR_DIR']}, "
        f"the units' StateDirectory is {state_dir}"
    )


def test_compose_gives_every_portal_process_the_same_environment() -> None:
    example = read_environment_file(ENV_EXAMPLE)
    services = _portal_services()
    environments = {s.name: s.spec.get("environment", {}) for s in services}
    first = next(iter(environments.values()))
    differ = sorted(name for name, env in environments.items() if env != first)
    assert not differ, (
        f"docker-compose.yml: {differ} do not share the x-portal-env environment the others have"
    )
    unknown = sorted(set(first) - set(example))
    assert not unknown, (
        f"docker-compose.yml's portal environment sets {unknown}, which "
        f"deploy/portal.env.example (/etc/switchboard/portal.env) does not name"
    )
    placeholders = sorted(k for k, v in example.items() if PLACEHOLDER.search(v))
    kept = [k for k in placeholders if k not in first]
    assert not kept, (
        f"docker-compose.yml keeps deploy/portal.env.example's placeholders for {kept}: "
        f"give each a value in x-portal-env"
    )


def test_compose_mounts_the_files_the_environment_names() -> None:
    example = read_environment_file(ENV_EXAMPLE)
    for service in _portal_services():
        env = {**example, **service.spec.get("environment", {})}
        mounts = _mounts(service.spec)
        for key in ("STOMP_TLS_CA", "STOMP_TLS_CERT", "STOMP_TLS_KEY"):
            assert env[key] in mounts, (
                f"docker-compose.yml: {service.name} has {key}={env[key]} but mounts nothing there"
            )
        var_dir = env["SWITCHBOARD_VAR_DIR"]
        assert var_dir in mounts and not mounts[var_dir][1], (
            f"docker-compose.yml: {service.name} must mount a writable volume at "
            f"SWITCHBOARD_VAR_DIR={var_dir} (the units' StateDirectory, shared by all)"
        )


# -- nginx --------------------------------------------------------------------------------------


def test_nginx_serves_the_site_file_certificate_and_static_files() -> None:
    services = _services()
    assert "nginx" in services, "docker-compose.yml has no nginx service"
    mounts = _mounts(services["nginx"])
    sources = {_repo_path(source) for source, _ in mounts.values()}
    assert NGINX_CONF.resolve() in sources, (
        "docker-compose.yml: nginx does not mount deploy/nginx/switchboard.conf"
    )
    conf = NGINX_CONF.read_text(encoding="utf-8")
    for directive in ("ssl_certificate", "ssl_certificate_key"):
        path = re.search(rf"^\s*{directive}\s+(\S+);", conf, re.M)
        assert path, f"deploy/nginx/switchboard.conf has no {directive}"
        assert path.group(1) in mounts, (
            f"docker-compose.yml: nginx mounts nothing at {path.group(1)}, the {directive} of "
            f"deploy/nginx/switchboard.conf"
        )
    alias = re.search(r"location /static/ \{\s*alias\s+(\S+?)/?;", conf)
    assert alias, "deploy/nginx/switchboard.conf serves no /static/ alias"
    static = alias.group(1)
    example = read_environment_file(ENV_EXAMPLE)
    assert static == example["SWITCHBOARD_VAR_DIR"] + "/static", (
        f"deploy/nginx/switchboard.conf serves {static}, but STATIC_ROOT is "
        f"SWITCHBOARD_VAR_DIR/static = {example['SWITCHBOARD_VAR_DIR']}/static"
    )
    assert static in mounts, f"docker-compose.yml: nginx mounts nothing at {static}"
    setup = next(s for s in _portal_services() if s.unit.name == "switchboard-setup.service")
    setup_mounts = _mounts(setup.spec)
    assert setup_mounts.get(static, ("", True))[0] == mounts[static][0], (
        f"docker-compose.yml: nginx serves {static} from {mounts[static][0]!r}, which setup "
        f"(collectstatic) does not write: mount the same volume in both"
    )
    assert not setup_mounts[static][1], f"docker-compose.yml: setup mounts {static} read-only"


def test_only_nginx_publishes_ports() -> None:
    published = {name: spec["ports"] for name, spec in _services().items() if spec.get("ports")}
    others = sorted(set(published) - {"nginx"})
    assert not others, (
        f"docker-compose.yml: {others} publish ports; only nginx (80, 443) may: the ASGI "
        f"servers sit behind it, brokers and databases stay on their networks"
    )
    container_ports = sorted(str(p).rsplit(":", 1)[-1] for p in published.get("nginx", []))
    assert container_ports == ["443", "80"], (
        f"docker-compose.yml: nginx publishes {container_ports}; expected 80 and 443"
    )


# -- brokers ------------------------------------------------------------------------------------


def test_brokers_mount_the_committed_renders() -> None:
    manifest = json.loads((RENDERED / "network.json").read_text(encoding="utf-8"))
    services = _services()
    for broker in manifest["brokers"]:
        conf = RENDERED / broker["name"] / "conf"
        assert (conf / "activemq.xml").is_file(), f"{conf} has no activemq.xml"
        name = broker["service"]
        assert name in services, (
            f"deploy/activemq/rendered/network.json names service {name!r} for broker "
            f"{broker['name']!r}; docker-compose.yml has none"
        )
        mounted = _mounts(services[name]).get(ACTIVEMQ_CONF_IN_CONTAINER)
        assert mounted and _repo_path(mounted[0]) == conf.resolve(), (
            f"docker-compose.yml: {name} mounts {mounted and mounted[0]!r} at "
            f"{ACTIVEMQ_CONF_IN_CONTAINER}; the committed render is "
            f"{conf.relative_to(ROOT)}"
        )


# -- the image ----------------------------------------------------------------------------------


def _venv_of(unit: Unit) -> str:
    argv0 = shlex.split(unit.exec_start[0])[0]
    assert argv0.endswith("/bin/" + Path(argv0).name), f"{unit.name}: {argv0} is not in a venv"
    return argv0.rsplit("/bin/", 1)[0]


def test_dockerfile_installs_where_the_units_look() -> None:
    units = [portal_unit(name) for name in PORTAL_UNITS]
    workdir = _last("WORKDIR")
    for unit in units:
        assert unit.working_directory == workdir, (
            f"Dockerfile: WORKDIR {workdir}, but {unit.name} has "
            f"WorkingDirectory={unit.working_directory}"
        )
    venvs = {_venv_of(unit) for unit in units}
    assert len(venvs) == 1, f"deploy/systemd: the portal units run from several venvs: {venvs}"
    venv = venvs.pop()
    runs = _dockerfile_run_commands()
    assert any(
        c[:3] in (["python", "-m", "venv"], ["python3", "-m", "venv"]) and venv in c for c in runs
    ), f"Dockerfile: no RUN makes the units' virtualenv {venv}"
    pip = f"{venv}/bin/pip"
    assert [pip, "install", "-r", "requirements.txt"] in runs, (
        f"Dockerfile: no `{pip} install -r requirements.txt`: the units' venv would lack the "
        f"pinned dependencies"
    )
    assert any(c[:3] == [pip, "install", "--no-deps"] for c in runs), (
        f"Dockerfile: no `{pip} install --no-deps ...` of the project into the units' venv"
    )
    assert any(
        c[:1] == [f"{venv}/bin/python"] and c[1:3] == ["manage.py", "collectstatic"] for c in runs
    ), "Dockerfile: collectstatic does not run at build time"
    for unit in units:
        for argv in _expected_argvs(unit, "1" if unit.template else "", "host"):
            assert argv[0].startswith(venv + "/bin/"), f"{unit.name}: {argv[0]} outside {venv}"


def test_dockerfile_runs_as_the_units_user_with_their_state_directory() -> None:
    units = [portal_unit(name) for name in PORTAL_UNITS]
    user = _last("USER")
    for unit in units:
        assert _unit_setting(unit, "User") == user, (
            f"Dockerfile: USER {user}, but {unit.name} has User={_unit_setting(unit, 'User')}"
        )
    assert any(c[:1] == ["useradd"] and c[-1] == user for c in _dockerfile_run_commands()), (
        f"Dockerfile: no `useradd ... {user}`"
    )
    var_dir = _dockerfile_env().get("SWITCHBOARD_VAR_DIR")
    for unit in units:
        state = "/var/lib/" + _unit_setting(unit, "StateDirectory")
        assert var_dir == state, (
            f"Dockerfile: ENV SWITCHBOARD_VAR_DIR={var_dir}, but {unit.name} has "
            f"StateDirectory= {state}"
        )
