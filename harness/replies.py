"""Reading a job's outcome: who replied (API, WebSocket), who should have, a test's own fleet."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from harness.portal import PortalStack


def reply_identities(job: dict[str, Any]) -> set[str]:
    """Who replied, from a job as the API returns it."""
    return {reply["identity"] for reply in job["replies"]}


@dataclass
class PrefixedFleet:
    """A running portal and the identity prefix of one test's simulated nodes: on the shared
    ActiveMQ network other tests' nodes may register into this portal's inventory too."""

    portal: PortalStack
    prefix: str

    @property
    def filter(self) -> str:
        return f"identity:/^{self.prefix}/"

    def nodes(self, datacenter: str | None = None) -> set[str]:
        """This fleet's nodes in the inventory: of one datacenter (fact), or all."""
        return {
            identity
            for identity, facts in self.portal.stored_nodes().items()
            if identity.startswith(self.prefix) and datacenter in (None, facts.get("datacenter"))
        }


def expected_by_fact(inventory: dict[str, dict[str, Any]], fact: str, value: str) -> set[str]:
    """The identities whose inventory facts have ``fact == value``."""
    return {identity for identity, facts in inventory.items() if str(facts.get(fact)) == value}


def replies_from_messages(messages: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(origin, reply) for every reply the WebSocket carried: snapshot or live frame."""
    for message in messages:
        if message["type"] == "job.snapshot":
            for reply in message["job"]["replies"]:
                yield "snapshot", reply
        else:
            for reply in message["replies"]:
                yield "frame", reply
