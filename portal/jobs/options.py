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
MAX_BATCH_SLEEP = 3600.0
# The nodes' own default max_ttl (agents/config.py): a longer TTL would be refused by every
# node (ttl_too_long), so the portal refuses it first, with the reason.
MAX_TTL = 3600


class OptionsError(ValueError):
    """Options that cannot be used; ``errors`` maps ``options.<name>`` to what is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


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
        """Options from form, API or CLI values (strings or numbers); raises OptionsError."""
        raw = dict(raw or {})
        base = cls.default()
        errors: dict[str, str] = {}
        unknown = sorted(set(raw) - set(asdict(base)))
        for name in unknown:
            errors[f"options.{name}"] = "unknown option"

        def number(name: str, kind: type, low: float, high: float) -> Any:
            value = raw.get(name)
            if value in (None, ""):
                return getattr(base, name)
            try:
                parsed = kind(value)
            except (TypeError, ValueError):
                errors[f"options.{name}"] = f"must be a{'n integer' if kind is int else ' number'}"
                return getattr(base, name)
            if isinstance(value, bool) or not low <= parsed <= high:
                errors[f"options.{name}"] = f"must be between {low:g} and {high:g}"
            return parsed

        discovery = str(raw.get("discovery") or base.discovery)
        if discovery not in DISCOVERY_METHODS:
            errors["options.discovery"] = f"must be one of {', '.join(DISCOVERY_METHODS)}"
        limit = str(raw.get("limit") or "").strip()
        match = LIMIT_RE.match(limit) if limit else None
        if limit and (match is None or int(match.group(1)) == 0):
            errors["options.limit"] = "must be a node count like 25 or a percentage like 10%"
        elif match and match.group(2) and int(match.group(1)) > 100:
            errors["options.limit"] = "a percentage must be at most 100%"
        seed = raw.get("limit_seed")
        collective = str(raw.get("collective") or "").strip()
        if collective == settings.SWITCHBOARD_COLLECTIVE:
            collective = ""
        elif collective and collective not in settings.SWITCHBOARD_SUB_COLLECTIVES:
            errors["options.collective"] = "must be one of " + ", ".join(collectives())
        options = cls(
            discovery=discovery,
            batch_size=number("batch_size", int, 0, 1_000_000),
            batch_sleep=number("batch_sleep", float, 0, MAX_BATCH_SLEEP),
            limit=limit.replace(" ", ""),
            limit_seed=None if seed in (None, "") else number("limit_seed", int, 0, 2**31),
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
