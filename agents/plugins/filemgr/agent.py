"""filemgr: touch, remove and inspect one file given by its absolute path."""

from __future__ import annotations

import os
from typing import Any

from agents.plugins.base import ActionContext, ActionError, Agent, AgentSettings, Handler
from agents.plugins.filemgr.backends import FileBackend, LocalFileBackend, SimulatedFileBackend
from agents.protocol.status import Status


def checked_path(inputs: dict[str, Any]) -> str:
    """The ``file`` input, re-checked here too: absolute and without NUL bytes.

    The DDL already enforces this; checking again keeps the agent safe if it is ever
    called without the DDL in front of it.
    """
    path = str(inputs["file"])
    if not os.path.isabs(path) or "\x00" in path:
        raise ActionError("file must be an absolute path without NUL bytes", Status.INVALID_DATA)
    return path


class FilemgrAgent(Agent):
    """Manages files on the node's filesystem, or an in-memory one on virtual nodes."""

    name = "filemgr"

    def __init__(
        self, settings: AgentSettings | None = None, backend: FileBackend | None = None
    ) -> None:
        super().__init__(settings)
        if backend is None:
            backend = SimulatedFileBackend() if self.settings.simulated else LocalFileBackend()
        self.backend = backend

    def actions(self) -> dict[str, Handler]:
        return {"touch": self.touch, "remove": self.remove, "status": self.status}

    def touch(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """Creates the file or updates its mtime; returns its status afterwards."""
        path = checked_path(inputs)
        self.backend.touch(path)
        return self.backend.status(path)

    def remove(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """Removes the file (not a directory); ``removed`` says whether it existed."""
        path = checked_path(inputs)
        removed = self.backend.remove(path)
        return {**self.backend.status(path), "removed": removed}

    def status(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """present, type, size, mtime, md5, owner, group and mode; changes nothing.

        A missing file is OK with ``present`` false: "does it exist?" is the question this
        action answers, so absence is the answer, not a failure (touch in a missing
        directory, or a path that cannot be read, is ABORTED).
        """
        return self.backend.status(checked_path(inputs))
