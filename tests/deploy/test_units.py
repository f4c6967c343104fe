"""deploy/systemd's portal units, read by harness.units: each parses, runs a program this
checkout's virtualenv has, and starts what portal/core/stack.py starts (the demo's and the
integration tests' processes), differing only where production must."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from harness.units import (
    BASE_DIR,
    LOCAL_VENV_BIN,
    PORTAL_UNITS,
    UNIT_DIR,
    Command,
    UnitError,
    command,
    commands,
    portal_unit,
    read_environment_file,
    read_unit,
)
from portal.core import stack
from portal.core.supervisor import Child, Supervisor

HOST = "portal1.example.net"
# Short and long spellings of the options both sides use.
ALIASES = {"-A": "--app", "-b": "--bind", "-p": "--port", "-l": "--loglevel", "-c": "--concurrency"}
FLAGS = {"--without-gossip", "--without-mingle", "--proxy-headers"}


class RecordingSupervisor(Supervisor):
    """Records what portal.core.stack would start, starting nothing."""

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Child:
        child = Child(name, list(argv), self.log_dir / f"{name}.log", env)
        self.children.append(child)
        return child

    def wait_for_log(self, child: Child, text: str, timeout: float = 60.0) -> None:
        return

    def wait_for_port(self, child: Child, host: str, port: int, timeout: float = 30.0) -> None:
        return


def _options(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """(positional words, option -> value) with short options in their long spelling."""
    words: list[str] = []
    options: dict[str, str] = {}
    args = iter(argv)
    for arg in args:
        if arg.startswith("-"):
            name = ALIASES.get(arg, arg)
            options[name] = "" if name in FLAGS else next(args)
        else:
            words.append(arg)
    return words, options


def _program(argv: Sequence[str]) -> tuple[str, list[str]]:
    """The program a command line runs and its arguments: ``python -m X ...`` is X."""
    name = Path(argv[0]).name
    if name.startswith("python") and argv[1] == "-m":
        return argv[2], list(argv[3:])
    return name, list(argv[1:])


def _stack_argv(start: str, tmp_path: Path) -> list[str]:
    sup = RecordingSupervisor(tmp_path / "logs")
    if start == "asgi":
        stack.start_asgi(sup, "127.0.0.1", 8001)
    else:
        getattr(stack, f"start_{start}")(sup)
    return list(sup.children[0].argv)


def _env_file(tmp_path: Path) -> Path:
    """A stand-in for /etc/switchboard/portal.env."""
    path = tmp_path / "portal.env"
    path.write_text('# as docs/install.md writes it\nSWITCHBOARD_PROFILE="production"\n')
    return path


def _unit_command(name: str, tmp_path: Path, instance: str = "") -> Command:
    return command(
        portal_unit(name),
        instance=instance,
        var_dir=tmp_path,
        env_file=_env_file(tmp_path),
        host=HOST,
    )


@pytest.mark.parametrize("name", PORTAL_UNITS)
def test_every_portal_unit_parses_and_runs_a_program_of_the_venv(name: str, tmp_path: Path) -> None:
    unit = portal_unit(name)
    assert unit.working_directory == "/opt/switchboard-portal"
    assert unit.environment_files == ("/etc/switchboard/portal.env",)
    env_file = _env_file(tmp_path)
    instance = "8001" if name.startswith("switchboard-asgi@") else "1" if unit.template else ""
    lines = commands(unit, instance=instance, var_dir=tmp_path, env_file=env_file, host=HOST)
    assert lines
    for line in lines:
        assert line.cwd == BASE_DIR
        assert line.env == {"SWITCHBOARD_PROFILE": "production"}
        program = Path(line.argv[0])
        assert program.parent == LOCAL_VENV_BIN, line.argv
        assert program.exists(), f"{name}: {program} is not in the virtualenv"
        if program.name == "python":  # python manage.py ...: the script is in the tree
            assert (line.cwd / line.argv[1]).exists()
        assert not any("%" in arg or "/opt/" in arg for arg in line.argv), line.argv


def test_the_worker_is_the_stacks_worker_with_a_name_per_instance(tmp_path: Path) -> None:
    unit_program, unit_args = _program(
        _unit_command("switchboard-worker@.service", tmp_path, "2").argv
    )
    stack_program, stack_args = _program(_stack_argv("worker", tmp_path))
    assert unit_program == stack_program == "celery"
    unit_words, unit_options = _options(unit_args)
    stack_words, stack_options = _options(stack_args)
    assert unit_words == stack_words == ["worker"]
    # Same app, pool, concurrency, log level and no gossip/mingle. Added: a node name per
    # instance, since two workers on one host must not share Celery's default celery@<host>.
    assert unit_options.pop("--hostname") == f"worker-2@{HOST}"
    assert unit_options == stack_options
    assert unit_options["--pool"] == "threads"


def test_the_asgi_server_is_the_stacks_behind_a_proxy(tmp_path: Path) -> None:
    unit_program, unit_args = _program(
        _unit_command("switchboard-asgi@.service", tmp_path, "8001").argv
    )
    stack_program, stack_args = _program(_stack_argv("asgi", tmp_path))
    assert unit_program == stack_program == "daphne"
    unit_words, unit_options = _options(unit_args)
    stack_words, stack_options = _options(stack_args)
    assert unit_words == stack_words == ["portal.asgi:application"]
    # Added: the client address from nginx's X-Forwarded-For (audit, login throttling).
    assert unit_options.pop("--proxy-headers") == ""
    assert unit_options == stack_options == {"--bind": "127.0.0.1", "--port": "8001"}


def test_the_registration_consumer_is_the_stacks(tmp_path: Path) -> None:
    line = _unit_command("switchboard-registrations@.service", tmp_path, "1")
    stack_argv = _stack_argv("registration_consumer", tmp_path)
    # The unit runs manage.py relative to its WorkingDirectory; the stack names it in full.
    assert [line.argv[0], str(line.cwd / line.argv[1]), *line.argv[2:]] == [
        str(LOCAL_VENV_BIN / "python"),
        *stack_argv[1:],
    ]


def test_setup_migrates_then_collects_the_static_files(tmp_path: Path) -> None:
    # The stack runs from the source tree (migrate in harness.stacks, static files from the
    # finders); production serves collected, hashed files from STATIC_ROOT through nginx.
    lines = commands(
        portal_unit("switchboard-setup.service"),
        var_dir=tmp_path,
        env_file=_env_file(tmp_path),
        host=HOST,
    )
    assert [line.argv[1:] for line in lines] == [
        ("manage.py", "migrate", "--noinput"),
        ("manage.py", "collectstatic", "--noinput"),
    ]


def test_beat_keeps_its_schedule_in_the_state_directory(tmp_path: Path) -> None:
    # No stack counterpart: the demo and the tests start no beat (nothing they check is
    # periodic); the schedule file lands in the state directory, mapped to var_dir here.
    line = _unit_command("switchboard-beat.service", tmp_path)
    program, args = _program(line.argv)
    words, options = _options(args)
    assert (program, words) == ("celery", ["beat"])
    assert options == {
        "--app": "portal",
        "--loglevel": "INFO",
        "--schedule": str(tmp_path / "celerybeat-schedule"),
    }


def test_specifiers_and_instances(tmp_path: Path) -> None:
    worker = portal_unit("switchboard-worker@.service")
    with pytest.raises(UnitError, match="is a template"):
        commands(worker, var_dir=tmp_path, env_file=_env_file(tmp_path))
    with pytest.raises(UnitError, match="is not a template"):
        commands(
            portal_unit("switchboard-beat.service"),
            instance="1",
            var_dir=tmp_path,
            env_file=_env_file(tmp_path),
        )
    with pytest.raises(UnitError, match="has no stand-in"):
        # Every unit reads portal.env: without it the process would run unconfigured.
        commands(worker, instance="1", var_dir=tmp_path, env_file=None, host=HOST)


def test_unit_syntax_edges(tmp_path: Path) -> None:
    unit_file = tmp_path / "x@.service"
    unit_file.write_text(
        "[Unit]\nDescription=ExecStart=not this\n\n[Service]\n"
        'Environment=A=1 "B=two words"\nEnvironmentFile=-/etc/optional.env\n'
        "ExecStart=/bin/first\nExecStart=\n"
        "ExecStart=-/opt/switchboard-portal/venv/bin/tool --n %n --p %% \\\n"
        "    --state /var/lib/switchboard/x\n"
    )
    unit = read_unit(unit_file)
    (line,) = commands(unit, instance="7", var_dir=tmp_path / "var", host=HOST)
    assert line.argv == (
        str(LOCAL_VENV_BIN / "tool"),
        "--n",
        "x@7.service",
        "--p",
        "%",
        "--state",
        str(tmp_path / "var" / "x"),
    )
    assert line.ignore_failure
    assert line.env == {"A": "1", "B": "two words"}
    unit_file = tmp_path / "y.service"
    unit_file.write_text("[Service]\nExecStart=/bin/echo $HOME\n")
    with pytest.raises(UnitError, match="systemd's own expansion"):
        commands(read_unit(unit_file), var_dir=tmp_path)
    unit_file.write_text("[Service]\nExecStart=/bin/echo %Z\n")
    with pytest.raises(UnitError, match="unsupported specifier %Z"):
        commands(read_unit(unit_file), var_dir=tmp_path)
    env_file = tmp_path / "e.env"
    env_file.write_text("; comment\nA='x y'\nB=\"q\"\nC=plain=with=equals\n")
    assert read_environment_file(env_file) == {"A": "x y", "B": "q", "C": "plain=with=equals"}


def test_every_portal_unit_file_is_listed() -> None:
    found = {path.name for path in UNIT_DIR.glob("switchboard-*.service")}
    assert found - set(PORTAL_UNITS) == {"switchboard-node.service"}
