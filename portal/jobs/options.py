"""How a job runs: discovery method, batches, a limit on how many nodes, request TTL.

One dataclass for the web form, the API and the CLI, validated in one place.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings

DISCOVERY_METHODS = ("broadcast", "inventory")
LIMIT_RE = re.compile(r"^\s*(\d+)\s*(%?)\s*$")
LIMIT_HELP = "must be a node count like 25 or a percentage like 10%"
MAX_BATCH_SIZE = 1_000_000
MAX_BATCH_SLEEP = 3600.0
# A limit above any inventory is a typo, and its digits are bounded before int() reads them.
MAX_LIMIT_NODES = 1_000_000
# The longest text a numeric option may have (the widest, limit_seed up to 2**31, has 10
# digits; decimals of batch_sleep a few more).
MAX_NUMBER_TEXT = 32
# The nodes' own default max_ttl (agents/config.py): a longer TTL would be refused by every
# node (ttl_too_long), so the portal refuses it first, with the reason.
MAX_TTL = 3600


class OptionsError(ValueError):
    """Options that cannot be used; ``errors`` maps ``options.<name>`` to what is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def _show(bound: float) -> str:
    """A range bound as people write it: 1000000 and 0.5, not 1e+06."""
    return str(int(bound)) if bound == int(bound) else f"{bound:g}"


def _label(name: object) -> str:
    """An option name fit to echo in an error key: as typed if printable, else escaped.

    A lone surrogate or NUL in a key would otherwise break the JSON answer itself.
    """
    text = str(name)
    return text if text.isprintable() and len(text) <= 64 else ascii(text[:64])


def _limit_errors(match: re.Match[str] | None) -> dict[str, str]:
    """What is wrong with a limit's text (``{}`` when nothing is), its digits bounded first."""
    if match is None:
        return {"options.limit": LIMIT_HELP}
    digits, percent = match.groups()
    digits = digits.lstrip("0") or "0"
    if percent:
        if len(digits) > 3 or int(digits) > 100:
            return {"options.limit": "a percentage must be at most 100%"}
    elif len(digits) > len(str(MAX_LIMIT_NODES)) or int(digits) > MAX_LIMIT_NODES:
        return {"options.limit": f"must be at most {MAX_LIMIT_NODES} nodes"}
    if digits == "0":
        return {"options.limit": LIMIT_HELP}
    return {}


def collectives() -> list[str]:
    """The main collective first, then the sub-collectives a job may be sent in."""
    return [settings.SWITCHBOARD_COLLECTIVE, *settings.SWITCHBOARD_SUB_COLLECTIVES]


@dataclass(frozen=True)
class ExecutionOptions:
    """Validated execution options; the defaults run on every matching node at once."""

    discovery: str = "inventory"
    batch_size: int = 0  # 0: every node at once
    batch_sleep: float = 0.0  # seconds between batches
    limit: str = ""  # "" (no limit), "25" nodes or "10%" of the discovered ones
    limit_seed: int | None = None  # makes the limited choice reproducible
    ttl: int = 60  # seconds a request stays valid on its way to the nodes
    collective: str = ""  # "" for the main collective, else one of the sub-collectives

    @classmethod
    def default(cls) -> ExecutionOptions:
        return cls(
            discovery=settings.SWITCHBOARD_DISCOVERY_METHOD, ttl=settings.SWITCHBOARD_REQUEST_TTL
        )

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> ExecutionOptions:
        """Options from form, API or CLI values (strings or numbers); raises OptionsError.

        Whatever the values (infinities, NaN, 5,000-digit strings, lists), the answer is an
        ``OptionsError`` naming the option, never another exception.
        """
        raw = dict(raw or {})
        base = cls.default()
        errors: dict[str, str] = {}
        unknown = sorted(set(raw) - set(asdict(base)), key=str)
        for name in unknown:
            errors[f"options.{_label(name)}"] = "unknown option"

        def number(name: str, kind: type[int] | type[float], low: float, high: float) -> Any:
            value = raw.get(name)
            if value is None or value == "":
                return getattr(base, name)
            kind_name = "an integer" if kind is int else "a number"
            out_of_range = f"must be between {_show(low)} and {_show(high)}"
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                wrong_type = isinstance(value, bool) and out_of_range
                errors[f"options.{name}"] = wrong_type or f"must be {kind_name}"
                return getattr(base, name)
            if isinstance(value, str) and len(value.strip()) > MAX_NUMBER_TEXT:
                # Every option's range fits in a few digits: a longer text is out of it, and
                # int() would refuse past 4,300 digits anyway (sys.get_int_max_str_digits).
                errors[f"options.{name}"] = out_of_range
                return getattr(base, name)
            try:
                parsed = kind(value)
            except (ValueError, OverflowError):  # int(inf) overflows; int("1e3") does not parse
                if isinstance(value, float):
                    errors[f"options.{name}"] = out_of_range  # infinity or NaN: no integer
                else:
                    errors[f"options.{name}"] = f"must be {kind_name}"
                return getattr(base, name)
            # NaN compares false with everything, so it lands here too.
            if not low <= parsed <= high:
                errors[f"options.{name}"] = out_of_range
                return getattr(base, name)
            return parsed

        def text(name: str, message: str) -> str:
            """A string option; a number is taken as its text (``"limit": 25``)."""
            value = raw.get(name)
            if value is None:
                return ""
            if isinstance(value, str):
                return value.strip()
            # str() of an int past 4,300 digits raises: such a number is no option anyway.
            if type(value) is int and abs(value) < 10**MAX_NUMBER_TEXT:
                return str(value)
            # Huge integers, lists, objects, booleans, floats (1e999, 2.5): not an option's form.
            errors[f"options.{name}"] = message
            return ""

        discovery = text("discovery", f"must be one of {', '.join(DISCOVERY_METHODS)}")
        discovery = discovery or base.discovery
        if discovery not in DISCOVERY_METHODS:
            errors["options.discovery"] = f"must be one of {', '.join(DISCOVERY_METHODS)}"
        limit = text("limit", LIMIT_HELP)
        match = LIMIT_RE.match(limit) if limit else None
        if limit and "options.limit" not in errors:
            errors.update(_limit_errors(match))
        seed = raw.get("limit_seed")
        collective = text("collective", "must be one of " + ", ".join(collectives()))
        if collective == settings.SWITCHBOARD_COLLECTIVE:
            collective = ""
        elif collective and collective not in settings.SWITCHBOARD_SUB_COLLECTIVES:
            errors["options.collective"] = "must be one of " + ", ".join(collectives())
        options = cls(
            discovery=discovery,
            batch_size=number("batch_size", int, 0, MAX_BATCH_SIZE),
            batch_sleep=number("batch_sleep", float, 0, MAX_BATCH_SLEEP),
            limit=limit.replace(" ", ""),
            limit_seed=None if seed is None or seed == "" else number("limit_seed", int, 0, 2**31),
            ttl=number("ttl", int, 1, MAX_TTL),
            collective=collective,
        )
        if errors:
            raise OptionsError(errors)
        return options

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def target_collective(self) -> str:
        """The collective the job's requests are sent in."""
        return self.collective or settings.SWITCHBOARD_COLLECTIVE

    def choose(self, discovered: Sequence[str]) -> list[str]:
        """The nodes to act on: all discovered, or the limited, seeded-random choice.

        The same seed and the same discovered set always give the same nodes.
        """
        nodes = sorted(discovered)
        if not self.limit:
            return nodes
        number, percent = LIMIT_RE.match(self.limit).groups()  # type: ignore[union-attr]
        count = int(number)
        if percent:
            count = max(1, round(len(nodes) * count / 100))
        if count >= len(nodes):
            return nodes
        return sorted(random.Random(self.limit_seed).sample(nodes, count))  # noqa: S311

    def batches(self, nodes: Sequence[str]) -> list[list[str]]:
        """The nodes in the order they are sent, one list per batch."""
        if not self.batch_size or self.batch_size >= len(nodes):
            return [list(nodes)]
        return [list(nodes[i : i + self.batch_size]) for i in range(0, len(nodes), self.batch_size)]
