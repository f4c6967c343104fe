"""Signed requests and replies: what a node accepts and refuses."""

from __future__ import annotations

import json
import stat
import time

import pytest

from agents.config import NodeConfig
from agents.daemon import NodeDaemon
from agents.protocol import HEADER_REPLY_TO, ProtocolError, Reply, Request, encode, reply_queue
from agents.protocol.security import (
    SignatureError,
    SigningKey,
    TrustedKeys,
    open_reply,
    open_request,
    public_path,
    seal_reply,
    seal_request,
)

# The headers a frame arrives with: without a reply-to the node refuses a request unrun.
HEADERS = {HEADER_REPLY_TO: reply_queue("mcollective", "test")}


@pytest.fixture(scope="module")
def portal_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def trusted(portal_key: SigningKey) -> TrustedKeys:
    return TrustedKeys([portal_key.public_key])


def make_request(**overrides: object) -> Request:
    fields = {
        "collective": "mcollective",
        "agent": "rpcutil",
        "action": "ping",
        "callerid": "user=a",
    }
    fields.update(overrides)
    return Request.new(**fields)  # type: ignore[arg-type]


def test_a_sealed_request_opens_with_its_signer(portal_key, trusted) -> None:
    request = make_request(data={"x": 1})
    opened, signer = open_request(seal_request(request, portal_key), trusted)
    assert opened == request
    assert signer == portal_key.key_id


def test_unsigned_requests_are_refused_when_signatures_are_required(trusted) -> None:
    with pytest.raises(SignatureError, match="unsigned request refused"):
        open_request(encode(make_request()), trusted)
    opened, signer = open_request(encode(make_request()), trusted, require_signature=False)
    assert signer is None and opened.action == "ping"


@pytest.mark.parametrize(
    "field", ["ttl", "msgtime", "action", "data", "filter", "roles", "callerid"]
)
def test_any_change_to_the_signed_request_breaks_the_signature(portal_key, trusted, field) -> None:
    # roles and callerid included: a forged or widened role list cannot pass a node's
    # policy files, which decide on the roles the portal signed.
    sealed = json.loads(seal_request(make_request(roles=["acme-noc"]), portal_key))
    inner = json.loads(sealed["message"])
    inner[field] = {
        "ttl": 99999,
        "msgtime": 1.0,
        "action": "inventory",
        "data": {"a": 1},
        "filter": {"identity": ["x"]},
        "roles": ["acme-noc", "admin"],
        "callerid": "user=admin",
    }[field]
    sealed["message"] = json.dumps(inner, sort_keys=True, separators=(",", ":"))
    with pytest.raises(SignatureError, match="bad signature"):
        open_request(json.dumps(sealed), trusted)


def test_a_request_signed_by_another_key_is_refused(trusted) -> None:
    stranger = SigningKey.generate()
    with pytest.raises(SignatureError, match="unknown key"):
        open_request(seal_request(make_request(), stranger), trusted)


@pytest.mark.parametrize(
    "body",
    [
        '{"protocol":"switchboard:secure_request:1","signer":"a","message":"{}"}',
        '{"protocol":"switchboard:secure_request:1","signer":"a","message":"{}","signature":"*"}',
        '{"protocol":"switchboard:secure_request:9","signer":"a","message":"{}","signature":""}',
        "not json",
        '{"protocol":"switchboard:request:1"}',
    ],
)
def test_malformed_sealed_requests_are_protocol_errors(trusted, body) -> None:
    with pytest.raises(ProtocolError):
        open_request(body, trusted)


def test_replies_unwrap_with_what_the_portal_needs_to_verify(portal_key) -> None:
    node_key = SigningKey.generate()
    reply = Reply.for_request(make_request(), senderid="n1", statuscode=0, statusmsg="OK")
    opened, signer, signed, signature = open_reply(seal_reply(reply, node_key))
    assert opened == reply
    assert signer == node_key.key_id
    TrustedKeys([node_key.public_key]).verify(signer, signed, signature)
    assert open_reply(encode(reply))[1:] == (None, None, None)


def test_keys_are_saved_private_and_reloaded(tmp_path) -> None:
    path = tmp_path / "keys" / "portal.pem"
    key = SigningKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SigningKey.load_or_create(path).key_id == key.key_id
    assert public_path(path).read_text() == key.public_pem()
    trusted = TrustedKeys.from_files([tmp_path / "keys"])
    assert key.key_id in trusted and len(trusted) == 1


def test_the_daemon_refuses_replays_future_dates_and_strangers(portal_key, trusted) -> None:
    daemon = NodeDaemon(
        NodeConfig(identity="n1", backend="simulated"), trusted_keys=trusted, signing_key=None
    )
    try:
        request = make_request()
        sealed = seal_request(request, portal_key)
        assert daemon.handle_frame(HEADERS, sealed).statuscode == 0
        assert daemon.handle_frame(HEADERS, sealed) is None  # replayed within its ttl
        ahead = make_request(msgtime=time.time() + 120)  # beyond the 30 s clock skew
        assert daemon.handle_frame(HEADERS, seal_request(ahead, portal_key)) is None
        slightly_ahead = make_request(msgtime=time.time() + 5)
        assert daemon.handle_frame(HEADERS, seal_request(slightly_ahead, portal_key)) is not None
        stranger = seal_request(make_request(), SigningKey.generate())
        assert daemon.handle_frame(HEADERS, stranger) is None
        stats = daemon.stats()
        assert stats["duplicates"] == 1
        assert stats["ttl_expired"] == 1
        assert stats["signature_refused"] == 1
        assert stats["validated"] == 4
    finally:
        daemon.stop()
