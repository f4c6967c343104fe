"""Agent descriptions (DDL): what each action takes and returns, loaded from JSON.

One DDL file per agent, ``agents/plugins/<agent>/ddl.json``, read by both the portal (to build
forms and result tables) and the node (to validate inputs before an action runs), so a
request is checked by the same rules on both sides.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.protocol.destinations import NAME_RE
from agents.protocol.status import Status

PLUGINS_DIR = Path(__file__).resolve().parent / "plugins"
INPUT_TYPES = ("string", "integer", "float", "number", "boolean", "list", "any")
DISPLAY_POLICIES = ("ok", "failed", "always")
AGGREGATE_FUNCTIONS = ("summary", "average", "sum", "boolean_summary")
_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}
_SHELL_UNSAFE = re.compile(r"[`;&|<>$\n\r\x00]")


class DDLError(ValueError):
    """A DDL file that is missing or malformed (a packaging bug, not a user error)."""


class UnknownAgent(LookupError):
    """No DDL is shipped for this agent name."""


class UnknownAction(LookupError):
    """The agent's DDL has no such action."""


class InputValidationError(ValueError):
    """Inputs that fail the DDL; ``errors`` maps input name to a message for that field."""

    def __init__(self, errors: dict[str, str], status: Status) -> None:
        self.errors = dict(errors)
        self.status = status
        super().__init__("; ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())))


@dataclass(frozen=True)
class InputDDL:
    """One action input: its type and the checks applied before the action runs."""

    name: str
    prompt: str
    description: str
    type: str = "string"
    validation: str | None = None
    maxlength: int = 0
    optional: bool = False
    default: Any = None
    list: list[Any] = field(default_factory=list)
    # A fact whose values across the targeted nodes the portal offers as choices for this
    # input (e.g. "services" for a service name). A suggestion only: validation still applies.
    choices_from_fact: str | None = None

    def clean(self, value: Any) -> Any:
        """The value coerced to this input's type, or ValueError with a field message."""
        value = self._coerce(value)
        if self.type == "list" and value not in self.list:
            raise ValueError(f"must be one of {', '.join(map(str, self.list))}")
        if isinstance(value, str):
            if self.maxlength and len(value) > self.maxlength:
                raise ValueError(f"must be at most {self.maxlength} characters")
            if self.validation:
                _validate(self.validation, value)
        return value

    def _coerce(self, value: Any) -> Any:
        kind = self.type
        if kind in ("string", "list"):
            if not isinstance(value, str) and not (kind == "list" and value in self.list):
                raise ValueError("must be a string")
            return value
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            raise ValueError("must be true or false")
        if kind == "integer":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,18}\s*", value):
                return int(value)
            raise ValueError("must be a whole number")
        if kind in ("float", "number"):
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value) if kind == "float" else value
            if isinstance(value, str):
                try:
                    number = float(value)
                except ValueError:
                    pass
                else:
                    if number == number and abs(number) != float("inf"):
                        return number
            raise ValueError("must be a number")
        return value  # "any"


def _validate(validation: str, value: str) -> None:
    """Apply a named validator or a regex (the DDL is trusted code, shipped with the node)."""
    if validation == "shellsafe":
        if _SHELL_UNSAFE.search(value):
            raise ValueError("must not contain shell metacharacters ` ; & | < > $ or newlines")
    elif validation == "ipv4address":
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            raise ValueError("must be an IPv4 address") from None
    elif validation == "ipv6address":
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            raise ValueError("must be an IPv6 address") from None
    elif validation == "boolean":
        if value.lower() not in _TRUE | _FALSE:
            raise ValueError("must be true or false")
    elif not re.search(validation, value):
        raise ValueError(f"must match {validation}")


@dataclass(frozen=True)
class OutputDDL:
    """One value an action returns, with the label the portal shows."""

    name: str
    description: str
    display_as: str
    default: Any = None


@dataclass(frozen=True)
class AggregateDDL:
    """A summary the portal computes across all replies (e.g. count per value)."""

    function: str
    args: list[str]


@dataclass(frozen=True)
class ActionDDL:
    """One action: description, display, whether it changes the node, inputs, outputs."""

    name: str
    description: str
    display: str = "failed"
    # True for an action that changes the node (restarts, installs, writes...): the portal
    # then asks for more before sending it (docs/access.md, "Actions that change nodes").
    changes_node: bool = False
    input: dict[str, InputDDL] = field(default_factory=dict)
    output: dict[str, OutputDDL] = field(default_factory=dict)
    aggregate: list[AggregateDDL] = field(default_factory=list)

    def validate_inputs(self, data: Any) -> dict[str, Any]:
        """Cleaned inputs with defaults applied; raises InputValidationError per field.

        Unknown inputs are errors. The status is MISSING_DATA when the only problems are
        missing required inputs, INVALID_DATA otherwise.
        """
        if not isinstance(data, dict):
            raise InputValidationError({"__all__": "inputs must be an object"}, Status.INVALID_DATA)
        errors: dict[str, str] = {}
        missing = False
        cleaned: dict[str, Any] = {}
        for key in data:
            if key not in self.input:
                errors[str(key)] = f"unknown input for action {self.name}"
        for name, spec in self.input.items():
            if name not in data or data[name] is None or data[name] == "":
                if spec.default is not None:
                    cleaned[name] = spec.default
                elif not spec.optional:
                    errors[name] = "is required"
                    missing = True
                continue
            try:
                cleaned[name] = spec.clean(data[name])
            except ValueError as exc:
                errors[name] = str(exc)
        if errors:
            only_missing = missing and all(m == "is required" for m in errors.values())
            status = Status.MISSING_DATA if only_missing else Status.INVALID_DATA
            raise InputValidationError(errors, status)
        return cleaned

    def output_defaults(self) -> dict[str, Any]:
        """Every declared output with its default, to fill gaps in an action's result."""
        return {name: spec.default for name, spec in self.output.items()}


@dataclass(frozen=True)
class AgentDDL:
    """An agent's metadata and actions."""

    name: str
    description: str
    author: str
    version: str
    license: str
    timeout: int
    url: str = ""
    actions: dict[str, ActionDDL] = field(default_factory=dict)

    def action(self, name: str) -> ActionDDL:
        """The named action; raises UnknownAction (with the known names) otherwise."""
        try:
            return self.actions[name]
        except (KeyError, TypeError):
            known = ", ".join(sorted(self.actions))
            raise UnknownAction(
                f"agent {self.name} has no action {name!r}; known: {known}"
            ) from None


def _req(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise DDLError(f"{where}: missing {key!r}")
    if not isinstance(obj[key], kind):
        raise DDLError(f"{where}: {key!r} has the wrong type")
    return obj[key]


def parse_ddl(doc: Any, where: str = "ddl") -> AgentDDL:
    """Build an AgentDDL from its JSON document; raises DDLError on a malformed one."""
    if not isinstance(doc, dict):
        raise DDLError(f"{where}: must be an object")
    meta = _req(doc, "metadata", dict, where)
    actions: dict[str, ActionDDL] = {}
    for aname, adoc in _req(doc, "actions", dict, where).items():
        at = f"{where}: action {aname}"
        if not NAME_RE.fullmatch(aname) or not isinstance(adoc, dict):
            raise DDLError(f"{at}: bad name or body")
        display = adoc.get("display", "failed")
        if display not in DISPLAY_POLICIES:
            raise DDLError(f"{at}: display must be one of {DISPLAY_POLICIES}")
        # A JSON boolean only: a string "false" would be truthy and 0/1 read as a guess.
        changes_node = adoc.get("changes_node", False)
        if not isinstance(changes_node, bool):
            raise DDLError(f"{at}: 'changes_node' must be true or false")
        inputs = {}
        for iname, idoc in adoc.get("input", {}).items():
            if idoc.get("type", "string") not in INPUT_TYPES:
                raise DDLError(f"{at}: input {iname} has unknown type {idoc.get('type')!r}")
            inputs[iname] = InputDDL(
                name=iname,
                prompt=idoc.get("prompt", iname),
                description=idoc.get("description", ""),
                type=idoc.get("type", "string"),
                validation=idoc.get("validation"),
                maxlength=int(idoc.get("maxlength", 0)),
                optional=bool(idoc.get("optional", False)),
                default=idoc.get("default"),
                list=list(idoc.get("list", [])),
                choices_from_fact=idoc.get("choices_from_fact"),
            )
        outputs = {
            oname: OutputDDL(
                name=oname,
                description=odoc.get("description", ""),
                display_as=odoc.get("display_as", oname),
                default=odoc.get("default"),
            )
            for oname, odoc in adoc.get("output", {}).items()
        }
        aggregates = []
        for agg in adoc.get("aggregate", []):
            if agg.get("function") not in AGGREGATE_FUNCTIONS:
                raise DDLError(f"{at}: unknown aggregate {agg.get('function')!r}")
            if not set(agg.get("args", [])) <= set(outputs):
                raise DDLError(f"{at}: aggregate refers to an undeclared output")
            aggregates.append(AggregateDDL(agg["function"], list(agg.get("args", []))))
        actions[aname] = ActionDDL(
            name=aname,
            description=_req(adoc, "description", str, at),
            display=display,
            changes_node=changes_node,
            input=inputs,
            output=outputs,
            aggregate=aggregates,
        )
    return AgentDDL(
        name=_req(meta, "name", str, where),
        description=_req(meta, "description", str, where),
        author=_req(meta, "author", str, where),
        version=str(_req(meta, "version", (str, int, float), where)),
        license=_req(meta, "license", str, where),
        timeout=int(_req(meta, "timeout", (int, float), where)),
        url=meta.get("url", ""),
        actions=actions,
    )


def ddl_path(agent_name: object) -> Path:
    """Where the shipped DDL for ``agent_name`` lives (the name is checked first)."""
    if not isinstance(agent_name, str) or not NAME_RE.fullmatch(agent_name):
        raise UnknownAgent(f"invalid agent name {agent_name!r}")
    return PLUGINS_DIR / agent_name / "ddl.json"


def load_ddl(agent_name: str) -> AgentDDL:
    """The shipped DDL of one agent; raises UnknownAgent if there is none."""
    path = ddl_path(agent_name)
    if not path.is_file():
        raise UnknownAgent(f"no DDL for agent {agent_name!r} (looked for {path})")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DDLError(f"{path}: not valid JSON: {exc}") from exc
    ddl = parse_ddl(doc, str(path))
    if ddl.name != agent_name:
        raise DDLError(f"{path}: metadata name {ddl.name!r} does not match {agent_name!r}")
    return ddl


def load_all() -> dict[str, AgentDDL]:
    """Every shipped DDL, keyed by agent name (sorted)."""
    names = sorted(p.parent.name for p in PLUGINS_DIR.glob("*/ddl.json"))
    return {name: load_ddl(name) for name in names}
