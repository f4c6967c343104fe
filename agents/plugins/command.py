"""Running host commands for agents: argument lists only, a fixed PATH, always a timeout."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agents.plugins.base import ActionError

# A fixed PATH: the daemon runs as root, so a PATH inherited from whoever started it must
# not decide which binary runs.
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_OUTPUT_CHARS = 8192


@dataclass(frozen=True)
class CommandResult:
    """What a finished command printed and how it exited (output already truncated)."""

    argv: tuple[str, ...]
    exitcode: int
    stdout: str
    stderr: str


def which(program: str) -> str | None:
    """The absolute path of ``program`` on SAFE_PATH, or None."""
    return shutil.which(program, path=SAFE_PATH)


def run_command(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """Run ``argv`` (never through a shell) and wait at most ``timeout`` seconds.

    Guarantees: the process gets a C locale (parseable output), stdin is /dev/null, and a
    missing binary or a timeout raises ActionError (ABORTED) with a message naming the
    command; a non-zero exit is returned, not raised, so callers decide what it means.
    """
    if not argv:
        raise ValueError("empty command")
    full_env = {"PATH": SAFE_PATH, "LC_ALL": "C", "LANG": "C"}
    full_env.update(env or {})
    try:
        proc = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=full_env,
            check=False,
            cwd="/",
        )
    except FileNotFoundError:
        raise ActionError(f"{argv[0]} is not installed on this node") from None
    except subprocess.TimeoutExpired:
        raise ActionError(
            f"{os.path.basename(argv[0])} did not finish within {timeout:g} s"
        ) from None
    except OSError as exc:
        raise ActionError(f"cannot run {argv[0]}: {exc.strerror}") from None
    return CommandResult(
        argv=tuple(argv),
        exitcode=proc.returncode,
        stdout=proc.stdout[-MAX_OUTPUT_CHARS:],
        stderr=proc.stderr[-MAX_OUTPUT_CHARS:],
    )
