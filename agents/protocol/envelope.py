"""Wire envelopes: Request, Reply and Registration, encoded as canonical JSON.

Decoding is JSON only (never YAML or pickle: MCollective's CVE-2017-2292 was YAML on the
wire) and strict: every field is type-checked, and anything malformed raises ProtocolError
with a message that says what was wrong. Encoding sorts keys and drops whitespace so the
same message always has the same bytes, which a signature can later cover.
"""

from __future__ import annotations

import json
import math
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from agents.protocol.destinations import NAME_RE
from agents.protocol.identity import identity_problem

MAX_MESSAGE_BYTES = 256 * 1024

REQUEST_PROTOCOL = "switchboard:request:1"
REPLY_PROTOCOL = "switchboard:reply:1"
REGISTRATION_PROTOCOL = "switchboard:registration:1"


class ProtocolError(ValueError):
    """A message body that is not a valid envelope of the expected kind and version."""


class IdentityError(ProtocolError):
    """An envelope naming a node identity that is not host-name-safe."""


@dataclass(frozen=True)
class Request:
    """One RPC request, broadcast to an agent's topic or sent to the directed queue."""

    requestid: str
    senderid: str
    callerid: str
    collective: str
    agent: str
    action: str
    data: dict[str, Any] = field(default_factory=dict)
    filter: dict[str, Any] = field(default_factory=dict)
    ttl: int = 60
    msgtime: float = 0.0
    # The caller's roles in the portal; nodes trust them only from a signed request.
    roles: list[str] = field(default_factory=list)
    # False marks a request nobody will read the replies of (a fire-and-forget): only then may
    # it come without a reply-to. Optional on the wire; absent means True.
    reply_wanted: bool = True
    protocol: str = REQUEST_PROTOCOL

    @classmethod
    def new(
        cls,
        *,
        collective: str,
        agent: str,
        action: str,
        callerid: str,
        data: Mapping[str, Any] | None = None,
        filter: Any = None,
        ttl: int = 60,
        senderid: str | None = None,
        requestid: str | None = None,
        msgtime: float | None = None,
        roles: list[str] | None = None,
    ) -> Request:
        """Build a Request with a fresh uuid4 id and the current time.

        ``filter`` may be a ``Filter`` (anything with ``to_dict()``), its dict form, or None
        for "every node".
        """
        if filter is None:
            filter_dict: dict[str, Any] = {}
        elif hasattr(filter, "to_dict"):
            filter_dict = filter.to_dict()
        else:
            filter_dict = dict(filter)
        return cls(
            requestid=requestid or uuid.uuid4().hex,
            senderid=senderid or socket.gethostname(),
            callerid=callerid,
            collective=collective,
            agent=agent,
            action=action,
            data=dict(data or {}),
            filter=filter_dict,
            ttl=ttl,
            msgtime=time.time() if msgtime is None else msgtime,
            roles=list(roles or []),
        )

    def expires_at(self) -> float:
        """Epoch seconds after which nodes drop this request unanswered."""
        return self.msgtime + self.ttl

    def is_expired(self, now: float | None = None) -> bool:
        """True once msgtime + ttl has passed."""
        return (time.time() if now is None else now) > self.expires_at()


@dataclass(frozen=True)
class Reply:
    """One node's answer to a Request, sent to the request's ``reply-to`` queue."""

    requestid: str
    senderid: str
    senderagent: str
    statuscode: int
    statusmsg: str
    data: dict[str, Any] = field(default_factory=dict)
    msgtime: float = 0.0
    protocol: str = REPLY_PROTOCOL

    @classmethod
    def for_request(
        cls,
        request: Request,
        *,
        senderid: str,
        statuscode: int,
        statusmsg: str,
        data: Mapping[str, Any] | None = None,
    ) -> Reply:
        """Build the Reply to ``request`` from node ``senderid``, stamped now."""
        return cls(
            requestid=request.requestid,
            senderid=senderid,
            senderagent=request.agent,
            statuscode=int(statuscode),
            statusmsg=statusmsg,
            data=dict(data or {}),
            msgtime=time.time(),
        )


@dataclass(frozen=True)
class Registration:
    """A node's periodic self-description: identity, facts, classes and agents."""

    identity: str
    collectives: list[str]
    facts: dict[str, Any]
    classes: list[str]
    agents: list[str]
    msgtime: float = 0.0
    # PEM of the node's Ed25519 public key ("" if the node does not sign its replies): the
    # portal checks each reply's signature against the key the node registered.
    public_key: str = ""
    # HMAC-SHA256 of the identity and key id with a shared enrolment token, as lowercase hex
    # (agents.protocol.security.enrolment_proof); "" without a token. Optional on the wire.
    enrolment_proof: str = ""
    protocol: str = REGISTRATION_PROTOCOL


Envelope = Request | Reply | Registration
E = TypeVar("E", Request, Reply, Registration)


def encode(msg: Envelope) -> str:
    """Canonical compact JSON for an envelope (sorted keys, no spaces, ASCII only).

    Raises ProtocolError if the message holds something JSON cannot carry (NaN, objects)
    or if the result would exceed MAX_MESSAGE_BYTES, so oversized replies fail at the sender.
    """
    try:
        text = json.dumps(
            asdict(msg), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"cannot encode {type(msg).__name__}: {exc}") from exc
    if len(text) > MAX_MESSAGE_BYTES:
        raise ProtocolError(
            f"{type(msg).__name__} is {len(text)} bytes, over the {MAX_MESSAGE_BYTES} byte limit"
        )
    return text


# Expected JSON type per field; bool is excluded from numbers explicitly below because
# in Python bool is a subclass of int.
_STR = (str,)
_NUM = (int, float)
_TYPES: dict[type, dict[str, tuple[type, ...]]] = {
    Request: {
        "requestid": _STR,
        "senderid": _STR,
        "callerid": _STR,
        "collective": _STR,
        "agent": _STR,
        "action": _STR,
        "data": (dict,),
        "filter": (dict,),
        "ttl": (int,),
        "msgtime": _NUM,
        "roles": (list,),
        "reply_wanted": (bool,),
        "protocol": _STR,
    },
    Reply: {
        "requestid": _STR,
        "senderid": _STR,
        "senderagent": _STR,
        "statuscode": (int,),
        "statusmsg": _STR,
        "data": (dict,),
        "msgtime": _NUM,
        "protocol": _STR,
    },
    Registration: {
        "identity": _STR,
        "collectives": (list,),
        "facts": (dict,),
        "classes": (list,),
        "agents": (list,),
        "msgtime": _NUM,
        "public_key": _STR,
        "enrolment_proof": _STR,
        "protocol": _STR,
    },
}
_PROTOCOLS: dict[type, str] = {
    Request: REQUEST_PROTOCOL,
    Reply: REPLY_PROTOCOL,
    Registration: REGISTRATION_PROTOCOL,
}
# Fields that become destination components or are used as names must be safe names.
_NAME_FIELDS = {"collective", "agent", "action", "senderagent"}
# Node identities must be host-name-safe (agents.protocol.identity).
_IDENTITY_FIELDS = {(Reply, "senderid"), (Registration, "identity")}
# Fields added after version 1 was first published: a sender may leave them out, and they
# then take their dataclass default. Every other field is required.
_OPTIONAL_FIELDS = {(Request, "reply_wanted"), (Registration, "enrolment_proof")}


def _reject_constant(name: str) -> Any:
    raise ProtocolError(f"non-standard JSON constant {name} is not allowed")


def _load_object(text: str | bytes, kind: str) -> dict[str, Any]:
    size = len(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"{kind} body is {size} bytes, over the {MAX_MESSAGE_BYTES} byte limit")
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except ProtocolError:
        raise
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{kind} body is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ProtocolError(f"{kind} body must be a JSON object, got {type(obj).__name__}")
    check_text(obj, kind)
    return obj


def is_unicode(text: str) -> bool:
    """False for a string holding a lone surrogate: no UTF-8 store, log or JSON answer can
    take it (the node, the portal's validation and the stores all ask here)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_text(value: Any, kind: str) -> None:
    """Refuse a lone surrogate anywhere in the message (JSON's ``"\\ud800"`` decodes to one):
    such a string is not Unicode, cannot be written as UTF-8 to a log or a database, and would
    fail far from here."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not is_unicode(item):
                raise ProtocolError(
                    f"{kind} holds a string that is not valid Unicode (a lone surrogate)"
                )
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _check_protocol(obj: dict[str, Any], expected: str, kind: str) -> None:
    proto = obj.get("protocol")
    if not isinstance(proto, str):
        raise ProtocolError(f"{kind} has no 'protocol' field (expected {expected!r})")
    name, _, version = proto.rpartition(":")
    exp_name, _, exp_version = expected.rpartition(":")
    if name != exp_name:
        raise ProtocolError(f"unknown protocol {proto!r}; expected {expected!r}")
    if version != exp_version:
        raise ProtocolError(
            f"unsupported {name} version {version!r}; this side speaks version {exp_version}"
        )


def _decode(cls: type[E], text: str | bytes) -> E:
    kind = cls.__name__
    obj = _load_object(text, kind)
    _check_protocol(obj, _PROTOCOLS[cls], kind)
    kwargs: dict[str, Any] = {}
    types = _TYPES[cls]
    for f in fields(cls):
        if f.name not in obj:
            if (cls, f.name) in _OPTIONAL_FIELDS:
                continue
            raise ProtocolError(f"{kind} is missing field {f.name!r}")
        value = obj[f.name]
        want = types[f.name]
        if (isinstance(value, bool) and bool not in want) or not isinstance(value, want):
            names = " or ".join(t.__name__ for t in want)
            raise ProtocolError(
                f"{kind} field {f.name!r} must be {names}, got {type(value).__name__}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ProtocolError(f"{kind} field {f.name!r} must be finite")
        if f.name in _NAME_FIELDS and not (isinstance(value, str) and NAME_RE.fullmatch(value)):
            raise ProtocolError(f"{kind} field {f.name!r} has an invalid name {value!r}")
        if (cls, f.name) in _IDENTITY_FIELDS and (problem := identity_problem(value)):
            text = str(value)  # a str already: identity_problem refuses anything else
            shown = text if len(text) <= 80 else text[:80] + "..."
            raise IdentityError(f"{kind} field {f.name!r}: identity {shown!r} {problem}")
        kwargs[f.name] = value
    # Unknown extra fields are ignored on purpose: a later minor addition (a signature
    # wrapper, trace ids) must not make older nodes drop requests.
    return cls(**kwargs)


def decode_request(text: str | bytes) -> Request:
    """Parse and validate a Request body; raises ProtocolError on anything malformed."""
    req = _decode(Request, text)
    if not all(isinstance(role, str) for role in req.roles):
        raise ProtocolError("Request field 'roles' must be a list of strings")
    if req.ttl <= 0:
        raise ProtocolError(f"Request field 'ttl' must be positive, got {req.ttl}")
    if not req.requestid:
        raise ProtocolError("Request field 'requestid' must not be empty")
    return req


def decode_reply(text: str | bytes) -> Reply:
    """Parse and validate a Reply body; raises ProtocolError on anything malformed."""
    return _decode(Reply, text)


def decode_registration(text: str | bytes) -> Registration:
    """Parse and validate a Registration body; raises ProtocolError on anything malformed."""
    reg = _decode(Registration, text)
    for name in ("collectives", "classes", "agents"):
        if not all(isinstance(v, str) for v in getattr(reg, name)):
            raise ProtocolError(f"Registration field {name!r} must be a list of strings")
    return reg
