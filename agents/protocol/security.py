"""Signed envelopes: Ed25519 over the exact bytes of a canonical Request, Reply or Registration.

A sealed message is a small JSON wrapper around the inner envelope's text::

    {"protocol": "switchboard:secure_request:1", "signer": "<key id>",
     "message": "<canonical JSON of the Request>", "signature": "<base64 Ed25519>"}

The signature covers the inner text byte for byte (ttl and msgtime included), so nothing in
a request can be changed, and an old request cannot be made young again, without the portal's
private key. Nodes hold the portal's public key(s) by key id; a request sealed by any other
key, not sealed at all, or altered in transit is refused with a reason.

A registration is sealed by the node's own key, whose public half it carries: the seal proves
that the sender holds that key, not who the node is. The portal decides whether to trust the
key for the identity (enrolment: a pending key is accepted by an admin or an auto-accept rule,
then pinned, and a registration under another key is refused as a key conflict).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agents.protocol.envelope import (
    MAX_MESSAGE_BYTES,
    ProtocolError,
    Registration,
    Reply,
    Request,
    check_text,
    decode_registration,
    decode_reply,
    decode_request,
    encode,
)

SECURE_REQUEST_PROTOCOL = "switchboard:secure_request:1"
SECURE_REPLY_PROTOCOL = "switchboard:secure_reply:1"
SECURE_REGISTRATION_PROTOCOL = "switchboard:secure_registration:1"


class SignatureError(ProtocolError):
    """A message that is unsigned, signed by an unknown key, or whose signature is wrong."""


class UnsignedMessage(SignatureError):
    """A message that should be sealed and is not."""


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short, stable name for a public key: the first 16 hex digits of its SHA-256."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key with its key id; the portal signs requests, nodes replies."""

    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def derive(cls, secret: bytes) -> SigningKey:
        """A key made from ``secret`` (any bytes): the same secret always gives the same key.

        For simulated nodes only, whose keys follow from the fleet's seed so that a restarted
        simulator keeps the keys the portal pinned; such a key is no secret.
        """
        return cls(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(secret).digest()))

    @classmethod
    def load(cls, path: str | Path) -> SigningKey:
        """Read a PEM (PKCS#8, unencrypted) private key; raises ValueError if it is not one."""
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
        return cls(key)

    @classmethod
    def load_or_create(cls, path: str | Path) -> SigningKey:
        """The key at ``path``, made (mode 0600, public half beside it) if there is none yet."""
        path = Path(path)
        if path.exists():
            return cls.load(path)
        key = cls.generate()
        key.save(path)
        return key

    def save(self, path: str | Path) -> None:
        """Write the private key (mode 0600) and ``<path>.pub`` with the public key."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        public_path(path).write_text(self.public_pem())

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def public_pem(self) -> str:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)


def public_path(private_path: str | Path) -> Path:
    """Where the public half of a private key file is kept: ``<path>.pub``."""
    return Path(f"{private_path}.pub")


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    """A public key from PEM text; raises ValueError for anything but Ed25519."""
    data = pem.encode() if isinstance(pem, str) else pem
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"not an Ed25519 public key: {type(key).__name__}")
    return key


class TrustedKeys:
    """The public keys a node accepts requests from, by key id."""

    def __init__(self, keys: Iterable[Ed25519PublicKey] = ()) -> None:
        self._keys = {key_id(k): k for k in keys}

    @classmethod
    def from_files(cls, paths: Iterable[str | Path]) -> TrustedKeys:
        """Keys from PEM files; a directory contributes every ``*.pub`` file in it.

        Only ``*.pub`` from a directory: private keys often live beside their public halves.
        """
        keys: list[Ed25519PublicKey] = []
        for entry in paths:
            path = Path(entry)
            files = sorted(path.glob("*.pub")) if path.is_dir() else [path]
            keys.extend(load_public_key(f.read_bytes()) for f in files)
        return cls(keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def verify(self, kid: str, data: bytes, signature: bytes) -> None:
        """Raise SignatureError unless ``signature`` is ``kid``'s signature of ``data``."""
        key = self._keys.get(kid)
        if key is None:
            raise SignatureError(f"signed by unknown key {kid!r}")
        try:
            key.verify(signature, data)
        except InvalidSignature:
            raise SignatureError(f"bad signature (key {kid})") from None


def _seal(protocol: str, message: str, key: SigningKey) -> str:
    signature = base64.b64encode(key.sign(message.encode())).decode()
    wrapper = {
        "protocol": protocol,
        "signer": key.key_id,
        "message": message,
        "signature": signature,
    }
    text = json.dumps(wrapper, sort_keys=True, separators=(",", ":"))
    if len(text) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"sealed message is {len(text)} bytes, over {MAX_MESSAGE_BYTES}")
    return text


def _unwrap(text: str | bytes, protocol: str) -> tuple[str, str, bytes] | None:
    """(signer, message, signature) of a sealed message, or None if the body is not sealed."""
    size = len(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message is {size} bytes, over {MAX_MESSAGE_BYTES}")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("protocol") != protocol:
        name = protocol.rpartition(":")[0]
        got = obj.get("protocol") if isinstance(obj, dict) else None
        if isinstance(got, str) and got.rpartition(":")[0] == name:
            raise ProtocolError(f"unsupported {name} version in {got!r}; expected {protocol!r}")
        return None
    signer, message, signature = obj.get("signer"), obj.get("message"), obj.get("signature")
    if not (isinstance(signer, str) and isinstance(message, str) and isinstance(signature, str)):
        raise SignatureError("sealed message needs string 'signer', 'message' and 'signature'")
    # The signed bytes are the message's UTF-8: a lone surrogate has none (and is no text).
    check_text(obj, "sealed message")
    try:
        raw_signature = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("signature is not valid base64") from None
    return signer, message, raw_signature


def seal_request(request: Request, key: SigningKey) -> str:
    """The wire text of ``request`` signed with the portal's key."""
    return _seal(SECURE_REQUEST_PROTOCOL, encode(request), key)


def open_request(
    text: str | bytes, trusted: TrustedKeys, *, require_signature: bool = True
) -> tuple[Request, str | None]:
    """Verify and decode a request; returns it with the signer's key id (None if unsigned).

    Raises SignatureError for an unsigned request when signatures are required, an unknown
    signer or a bad signature; ProtocolError for anything malformed.
    """
    sealed = _unwrap(text, SECURE_REQUEST_PROTOCOL)
    if sealed is None:
        if require_signature:
            decode_request(text)  # a malformed body says so before "unsigned" does
            raise UnsignedMessage("unsigned request refused: this node requires signatures")
        return decode_request(text), None
    signer, message, signature = sealed
    trusted.verify(signer, message.encode(), signature)
    return decode_request(message), signer


def seal_reply(reply: Reply, key: SigningKey) -> str:
    """The wire text of ``reply`` signed with the node's key."""
    return _seal(SECURE_REPLY_PROTOCOL, encode(reply), key)


def open_reply(text: str | bytes) -> tuple[Reply, str | None, bytes | None, bytes | None]:
    """Decode a reply, sealed or not: (reply, signer key id, signed bytes, signature).

    The portal checks the signature against the key the node registered, which only it
    knows; this function only unwraps.
    """
    sealed = _unwrap(text, SECURE_REPLY_PROTOCOL)
    if sealed is None:
        return decode_reply(text), None, None, None
    signer, message, signature = sealed
    return decode_reply(message), signer, message.encode(), signature


def seal_registration(registration: Registration, key: SigningKey) -> str:
    """The wire text of ``registration`` signed with the node's key.

    Raises ProtocolError if the registration does not carry that key's public half: the
    portal checks the seal against the key the registration names.
    """
    if not registration.public_key:
        raise ProtocolError("a sealed registration must carry the node's public key")
    try:
        carried = key_id(load_public_key(registration.public_key))
    except ValueError as exc:
        raise ProtocolError(f"registration public_key: {exc}") from exc
    if carried != key.key_id:
        raise ProtocolError(
            f"registration carries key {carried} but would be signed by key {key.key_id}"
        )
    return _seal(SECURE_REGISTRATION_PROTOCOL, encode(registration), key)


def open_registration(text: str | bytes) -> tuple[Registration, str]:
    """Verify and decode a registration sealed by the key it carries: (registration, key id).

    Raises SignatureError for an unsigned registration, one whose ``signer`` is not the key id
    of its own ``public_key``, or a bad signature; ProtocolError for anything malformed.
    Whether that key may speak for the identity is the portal's decision (enrolment).
    """
    sealed = _unwrap(text, SECURE_REGISTRATION_PROTOCOL)
    if sealed is None:
        decode_registration(text)  # a malformed body says so before "unsigned" does
        raise UnsignedMessage("unsigned registration refused: registrations must be sealed")
    signer, message, signature = sealed
    registration = decode_registration(message)
    if not registration.public_key:
        raise SignatureError("sealed registration carries no public_key to check it with")
    try:
        public_key = load_public_key(registration.public_key)
    except ValueError as exc:
        raise SignatureError(f"registration public_key is unreadable: {exc}") from None
    kid = key_id(public_key)
    if signer != kid:
        raise SignatureError(f"signed by key {signer!r}, but the registration carries key {kid}")
    TrustedKeys([public_key]).verify(signer, message.encode(), signature)
    return registration, kid


def enrolment_proof(token: str, identity: str, kid: str) -> str:
    """HMAC-SHA256 over ``identity`` and the key id with a shared enrolment token (hex).

    Proves that whoever made the registration knew the token, without the token crossing the
    broker; bound to the identity and the key, so it cannot enrol another key or name.
    """
    message = f"switchboard-enrolment\n{identity}\n{kid}".encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def check_enrolment_proof(token: str, registration: Registration, kid: str) -> bool:
    """True if ``registration``'s proof was made with ``token`` for its identity and key."""
    if not token or not registration.enrolment_proof:
        return False
    expected = enrolment_proof(token, registration.identity, kid)
    return hmac.compare_digest(expected, registration.enrolment_proof)
