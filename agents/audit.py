"""Node audit log: one JSON line per request the node answered (MCollective's rpcaudit).

Guarantees: each answered request (after the filter) gives exactly one line, written before
the reply is sent, with the caller, the inputs, the outcome and the policy decision; the file
rotates by size (``audit_max_bytes``, ``audit_backups`` kept). Without a path nothing is
written. A failing disk is logged, never turned into a failed request.
"""

from __future__ import annotations

import datetime
import json
import logging
import logging.handlers
import os
import threading
from typing import Any

from agents.policy import PolicyDecision
from agents.protocol.envelope import Reply, Request

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5


def audit_record(
    identity: str, request: Request, reply: Reply, decision: PolicyDecision | None
) -> dict[str, Any]:
    """The audit entry for one answered request (``policy`` is null when not evaluated)."""
    now = datetime.datetime.now(datetime.UTC)
    return {
        "time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "identity": identity,
        "requestid": request.requestid,
        "callerid": request.callerid,
        "senderid": request.senderid,
        "collective": request.collective,
        "agent": request.agent,
        "action": request.action,
        "inputs": request.data,
        "statuscode": reply.statuscode,
        "statusmsg": reply.statusmsg,
        "policy": decision.to_dict() if decision is not None else None,
    }


class _PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Creates every file (the first and each one after a rollover) with mode 0600."""

    def _open(self) -> Any:
        # The audit trail holds callers and inputs: readable by root only, whatever the umask.
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)


class AuditLog:
    """Appends audit records to a size-rotated file; thread-safe (one lock per log)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
    ) -> None:
        self.path = os.fspath(path)
        self._handler = _PrivateRotatingFileHandler(
            self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        """Append one JSON line (sorted keys, non-JSON values shown as strings)."""
        line = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
        entry = logging.LogRecord("switchboard.audit", logging.INFO, "", 0, line, None, None)
        with self._lock:
            try:
                self._handler.emit(entry)
            except Exception as exc:  # a full disk must not fail the request itself
                log.error("audit log %s: cannot write: %s", self.path, exc)

    def record(
        self, identity: str, request: Request, reply: Reply, decision: PolicyDecision | None
    ) -> None:
        """Write the audit entry for one answered request."""
        self.write(audit_record(identity, request, reply, decision))

    def close(self) -> None:
        """Flush and close the file."""
        with self._lock:
            self._handler.close()
