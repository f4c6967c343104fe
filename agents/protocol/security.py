"""Signed envelopes: Ed25519 over the exact bytes of a canonical Request or Reply.

A sealed message is a small JSON wrapper around the inner envelope's text::

    {"protocol": "switchboard:secure_request:1", "signer": "<key id>",
     "message": "<canonical JSON of the Request>", "signature": "<base64 Ed25519>"}

The signature covers the inner text byte for byte (ttl and msgtime included), so nothing in
a request can be changed, and an old request cannot be made young again, without the portal's
private key. Nodes hold the portal's public key(s) by key id; a request sealed by any other
key, not sealed at all, or altered in transit is refused with a reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
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
    Reply,
    Request,
    decode_reply,
    decode_request,
    encode,
)

SECURE_REQUEST_PROTOCOL = "switchboard:secure_request:1"
SECURE_REPLY_PROTOCOL = "switchboard:secure_reply:1"


class SignatureError(ProtocolError):
    """A message that is unsigned, signed by an unknown key, or whose signature is wrong."""


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
        keys = []
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
    if len(text) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message is {len(text)} bytes, over {MAX_MESSAGE_BYTES}")
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
    if not all(isinstance(v, str) for v in (signer, message, signature)):
        raise SignatureError("sealed message needs string 'signer', 'message' and 'signature'")
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
            raise SignatureError("unsigned request refused: this node requires signatures")
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
