"""echo: a harmless agent that exercises inputs of every kind, errors and slow actions."""

from __future__ import annotations

import time
from typing import Any

from agents.plugins.base import ActionContext, ActionError, Agent, Handler

MAX_SLEEP = 10.0


class EchoAgent(Agent):
    """echo (typed inputs), sleep (a slow action), fail (both failure paths)."""

    name = "echo"

    def actions(self) -> dict[str, Handler]:
        return {"echo": self.echo, "sleep": self.sleep, "fail": self.fail}

    def echo(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """The message repeated ``times`` times; never touches the host."""
        text = inputs["separator"].join([inputs["message"]] * inputs["times"])
        if inputs["shout"]:
            text = text.upper()
        return {"message": text, "length": len(text)}

    def sleep(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """Sleeps up to MAX_SLEEP seconds; larger values are refused, not clamped."""
        seconds = inputs["seconds"]
        if not 0 <= seconds <= MAX_SLEEP:
            raise ActionError(f"seconds must be between 0 and {MAX_SLEEP:g}")
        time.sleep(seconds)
        return {"slept": seconds}

    def fail(self, ctx: ActionContext, inputs: dict[str, Any]) -> dict[str, Any]:
        """Raises ActionError (ABORTED) or a plain exception (UNKNOWN_ERROR)."""
        if inputs["kind"] == "aborted":
            raise ActionError("failed on request")
        raise RuntimeError("crashed on request")
