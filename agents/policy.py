"""Node policy: may this caller run this action here? MCollective's actionpolicy, stricter.

One file per agent, ``<policy_dir>/<agent>.policy``::

    # comments and blank lines are ignored
    policy default deny
    allow<TAB>user=alice role=operator<TAB>status restart<TAB>customer=acme<TAB>*

Columns are separated by tabs (the facts column is a compound filter and may hold spaces):
``allow|deny``, callers (``user=NAME``, ``role=NAME``, any ``key=value`` caller id, or
``*``), actions (space-separated, or ``*``), facts (a compound filter expression, or ``*``),
classes (space-separated names or ``/regex/``, all required, or ``*``). The first rule whose
four columns all match decides; otherwise the file's ``policy default``, which is ``deny``
when the line is absent. Callers match exactly, never by substring.

Guarantees: a file that does not parse denies every request for its agent (fail closed) and
logs why once per version of the file; a missing file gives the node's ``policy_default``.
Files are re-read when their mtime or size changes, so edits need no restart.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.filters import Expr, FilterSyntaxError, NodeView, compile_safe, name_matches
from agents.filters import parse_compound as parse_filter

log = logging.getLogger(__name__)

ALLOW = "allow"
DENY = "deny"
_CALLER_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*=[^\s=]+")
_ACTION_RE = re.compile(r"[A-Za-z0-9_-]+")


class PolicySyntaxError(ValueError):
    """A policy file line that cannot be understood; names the file and line."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path} line {line}: {message}")
        self.path = path
        self.line = line


@dataclass(frozen=True)
class PolicyDecision:
    """The answer to "may this caller do this?", with the reason and where it came from.

    Reusable wherever an allow/deny must be explained (the node, the audit log, a portal
    check). ``source`` is the policy file (or None), ``line`` the deciding line (or None).
    """

    allowed: bool
    reason: str
    source: str | None = None
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to the audit log."""
        return {
            "decision": ALLOW if self.allowed else DENY,
            "reason": self.reason,
            "source": self.source,
            "line": self.line,
        }


@dataclass(frozen=True)
class PolicyRule:
    """One ``allow|deny`` line; ``None`` in a column means ``*``."""

    allow: bool
    callers: tuple[str, ...] | None
    actions: frozenset[str] | None
    facts: Expr | None
    classes: tuple[str, ...] | None
    line: int

    def matches(self, callerid: str, roles: Collection[str], action: str, node: NodeView) -> bool:
        """True when all four columns match this request on this node."""
        if self.callers is not None and not any(
            _caller_matches(c, callerid, roles) for c in self.callers
        ):
            return False
        if self.actions is not None and action not in self.actions:
            return False
        if self.facts is not None and not self.facts.evaluate(node):
            return False
        return self.classes is None or all(name_matches(c, node.classes) for c in self.classes)


def _caller_matches(pattern: str, callerid: str, roles: Collection[str]) -> bool:
    kind, _, value = pattern.partition("=")
    if kind == "role":
        return value in roles
    return pattern == callerid  # exact: MCollective's substring match let "bob" match "bobby"


@dataclass(frozen=True)
class Policy:
    """A parsed policy file: its default and rules in order."""

    path: str
    default_allow: bool
    rules: tuple[PolicyRule, ...]

    def decide(
        self, callerid: str, action: str, node: NodeView, roles: Collection[str] = ()
    ) -> PolicyDecision:
        """First matching rule wins; otherwise the file's default."""
        for rule in self.rules:
            if rule.matches(callerid, roles, action, node):
                verb = "allowed" if rule.allow else "denied"
                return PolicyDecision(
                    rule.allow,
                    f"{verb} by policy {self.path} line {rule.line}",
                    self.path,
                    rule.line,
                )
        verb = "allowed" if self.default_allow else "denied"
        return PolicyDecision(
            self.default_allow, f"{verb} by policy {self.path} default", self.path, None
        )


def _column(text: str) -> list[str] | None:
    words = text.split()
    return None if words == ["*"] else words


def parse_policy(text: str, path: str = "<policy>", actions: Iterable[str] | None = None) -> Policy:
    """Parse a policy file; raises PolicySyntaxError naming the first bad line.

    ``actions`` (the agent's DDL actions) makes an unknown action name an error, so a typo
    cannot silently leave an action unprotected.
    """
    known = set(actions) if actions is not None else None
    default: bool | None = None
    rules: list[PolicyRule] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue

        def fail(message: str, n: int = number) -> PolicySyntaxError:
            return PolicySyntaxError(path, n, message)

        if line.split()[0] == "policy":
            words = line.split()
            if len(words) != 3 or words[1] != "default" or words[2] not in (ALLOW, DENY):
                raise fail(
                    f"expected 'policy default allow' or 'policy default deny', got {line!r}"
                )
            if default is not None or rules:
                raise fail("'policy default' must come once, before any rule")
            default = words[2] == ALLOW
            continue
        if line.split()[0] not in (ALLOW, DENY):
            raise fail(f"a rule starts with 'allow' or 'deny', got {line.split()[0]!r}")
        columns = [c.strip() for c in line.split("\t") if c.strip()]
        if len(columns) != 5:
            raise fail(
                f"expected 5 tab-separated columns (allow|deny, callers, actions, facts, "
                f"classes), found {len(columns)}; use tabs, not spaces, between columns"
            )
        verb, callers_text, actions_text, facts_text, classes_text = columns
        callers = _column(callers_text)
        for caller in callers or ():
            if not _CALLER_RE.fullmatch(caller):
                raise fail(f"caller {caller!r} must be '*' or key=value such as user=alice")
        action_names = _column(actions_text)
        for action in action_names or ():
            if not _ACTION_RE.fullmatch(action):
                raise fail(f"action {action!r} is not a valid action name")
            if known is not None and action not in known:
                raise fail(f"unknown action {action!r}; known: {', '.join(sorted(known))}")
        facts: Expr | None = None
        if facts_text != "*":
            try:
                facts = parse_filter(facts_text)
            except FilterSyntaxError as exc:
                raise fail(f"facts: {exc}") from None
        classes = _column(classes_text)
        for cls in classes or ():
            if len(cls) >= 2 and cls.startswith("/") and cls.endswith("/"):
                try:
                    compile_safe(cls[1:-1])
                except FilterSyntaxError as exc:
                    raise fail(f"classes: {exc}") from None
        rules.append(
            PolicyRule(
                allow=verb == ALLOW,
                callers=tuple(callers) if callers is not None else None,
                actions=frozenset(action_names) if action_names is not None else None,
                facts=facts,
                classes=tuple(classes) if classes is not None else None,
                line=number,
            )
        )
    # No "policy default" line: deny, so a half-written file never opens anything up.
    return Policy(path, bool(default), tuple(rules))


class NodePolicy:
    """The node's policy directory; one ``<agent>.policy`` file per agent, cached by stat.

    ``policy_dir=None`` means no policy at all: every request is allowed.
    """

    def __init__(self, policy_dir: str | os.PathLike[str] | None, default_allow: bool = True):
        self.policy_dir = Path(policy_dir) if policy_dir is not None else None
        self.default_allow = default_allow
        self._cache: dict[str, tuple[tuple[int, int], Policy | PolicySyntaxError]] = {}
        self._lock = threading.Lock()

    def decide(
        self,
        agent: str,
        action: str,
        callerid: str,
        node: NodeView,
        roles: Collection[str] = (),
        actions: Iterable[str] | None = None,
    ) -> PolicyDecision:
        """The decision for one request (``agent`` must be a validated agent name)."""
        if self.policy_dir is None:
            return PolicyDecision(True, "no policy_dir configured")
        path = self.policy_dir / f"{agent}.policy"
        loaded = self._load(path, actions)
        if loaded is None:
            verb = "allowed" if self.default_allow else "denied"
            return PolicyDecision(
                self.default_allow, f"{verb} by policy_default (no {path})", None, None
            )
        if isinstance(loaded, PolicySyntaxError):
            return PolicyDecision(
                False, f"denied: policy file is invalid ({loaded})", str(path), loaded.line
            )
        return loaded.decide(callerid, action, node, roles)

    def _load(self, path: Path, actions: Iterable[str] | None) -> Policy | PolicySyntaxError | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return PolicySyntaxError(str(path), 0, f"cannot read: {exc.strerror}")
        key = (st.st_mtime_ns, st.st_size)
        with self._lock:
            cached = self._cache.get(str(path))
            if cached is not None and cached[0] == key:
                return cached[1]
        result: Policy | PolicySyntaxError
        try:
            result = parse_policy(path.read_text(encoding="utf-8"), str(path), actions)
        except PolicySyntaxError as exc:
            log.error("policy %s is invalid, denying every request for its agent: %s", path, exc)
            result = exc
        except (OSError, UnicodeDecodeError) as exc:
            log.error("policy %s unreadable, denying every request for its agent: %s", path, exc)
            result = PolicySyntaxError(str(path), 0, f"cannot read: {exc}")
        with self._lock:
            self._cache[str(path)] = (key, result)
        return result
