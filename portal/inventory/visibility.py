"""Which inventory nodes a person may see: the one place that decides.

The inventory pages, the node pages and the inventory API (preview, fact names, values seen,
fact choices) all ask ``inventory_scope`` or ``visible_nodes`` here.

Rules:
* Inactive and anonymous users see no node.
* A user sees every node when ``policy.standing(user).sees_all_nodes`` (admins, managers and
  members of a role given "sees all nodes"), or when any grant of any of their roles has no
  scope: an unscoped grant already lets them act on every node.
* Otherwise they see the nodes matching the OR of the scopes of all their roles' grants (the
  union: whatever any grant lets them act on), whichever agent each grant is for. A user with
  no grant sees no node.

A scope is applied as a SQL WHERE on the node table (``Node.objects.matching``), never by
reading nodes into Python; the scopes are canonicalised and ORed as ``policy.authorize`` does
for a job, so a node is visible exactly when some grant's scope selects it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agents.filters import Filter
from portal.rbac.grants import read_grants
from portal.rbac.policy import (
    User,
    apply_scopes,
    canonical_scope,
    is_active,
    scopes_expression,
    standing,
)

if TYPE_CHECKING:
    from portal.inventory.querysets import NodeQuerySet


@dataclass(frozen=True)
class InventoryScope:
    """The nodes a user may see: every node (``everything``), or those matching any of
    ``scopes`` (canonical filter expressions, sorted); no scopes and not everything: none."""

    everything: bool
    scopes: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The scopes ORed, as one filter expression for display ("" for everything or none)."""
        return "" if self.everything else scopes_expression(self.scopes)

    @property
    def sees_nothing(self) -> bool:
        return not self.everything and not self.scopes

    @property
    def scoped(self) -> bool:
        """True when the user sees the nodes of some scopes, not every node."""
        return not self.everything and bool(self.scopes)

    @property
    def filter(self) -> Filter | None:
        """The scopes as one Filter; None when the user sees every node.

        A user who sees nothing has no such filter (ValueError): check ``sees_nothing`` first,
        so that forgetting to never widens what they see.
        """
        if self.everything:
            return None
        if not self.scopes:
            raise ValueError("this user sees no node: there is no filter for that")
        return apply_scopes(Filter(), self.scopes)

    def restrict(self, nodes: NodeQuerySet) -> NodeQuerySet:
        """``nodes`` narrowed to the visible ones (a WHERE on the node table).

        Raises ``UnsupportedFilter`` if the database cannot evaluate a scope as the nodes do.
        """
        if self.everything:
            return nodes
        if not self.scopes:
            return nodes.none()
        return nodes.matching(apply_scopes(Filter(), self.scopes))


EVERYTHING = InventoryScope(everything=True)
NOTHING = InventoryScope(everything=False)


def inventory_scope(user: User) -> InventoryScope:
    """Which nodes ``user`` may see (see the module's rules).

    One query for the grants of the user's roles, and, unless one of them is unscoped, one
    for ``policy.standing``.
    """
    if not is_active(user):
        return NOTHING
    grants = read_grants(role_ids=user.groups.values_list("id"), with_actions=False)
    scopes = {grant.scope for grant in grants}
    if any(not scope.strip() for scope in scopes) or standing(user).sees_all_nodes:
        return EVERYTHING
    return InventoryScope(
        everything=False, scopes=tuple(sorted({canonical_scope(s) for s in scopes}))
    )


def visible_nodes(user: User, nodes: NodeQuerySet) -> NodeQuerySet:
    """The nodes of ``nodes`` that ``user`` may see."""
    return inventory_scope(user).restrict(nodes)
