"""A third-party client, written from docs/protocol.md alone, against a real node.

Only the node itself is the project's code (a ``NodeDaemon`` on an embedded coilmq broker).
Everything on the wire is made here by hand, as someone who has read only ``docs/`` would:
STOMP frames written to a raw TCP socket, request JSON built with ``json.dumps``, Ed25519
signatures made and checked with ``cryptography`` directly, key ids computed from SHA-256.
No ``agents.protocol`` encoder, sealer, Request class or stomp.py client is used.

The documented examples are checked too: every ```json block of docs/protocol.md marked
``<!-- example: NAME -->`` is canonical JSON, and the sealed examples verify with the
documented example keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import socket
import time
import uuid
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agents.config import NodeConfig
from agents.daemon import NodeDaemon
from portal.core.embedded_broker import EmbeddedBroker

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[2] / "docs"
IDENTITY = "conformance-01.example.net"
TOKEN = "conformance-enrolment-token"
REGISTRATION_FIELDS = {
    "agents", "classes", "collectives", "enrolment_proof", "facts", "identity", "msgtime",
    "protocol", "public_key",
}  # fmt: skip
REQUEST_FIELDS = {
    "action", "agent", "callerid", "collective", "data", "filter", "msgtime", "protocol",
    "reply_wanted", "requestid", "roles", "senderid", "ttl",
}  # fmt: skip
REPLY_FIELDS = {
    "data", "msgtime", "protocol", "requestid", "senderagent", "senderid", "statuscode",
    "statusmsg",
}  # fmt: skip


# -- what docs/protocol.md says, by hand ---------------------------------------------------


def canonical(obj: object) -> str:
    """Canonical JSON: sorted keys, no whitespace, ASCII only (non-ASCII as \\uXXXX)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the SHA-256 of the 32 raw public-key bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def seal(protocol: str, message: str, key: Ed25519PrivateKey) -> str:
    signature = base64.b64encode(key.sign(message.encode("utf-8"))).decode("ascii")
    return canonical(
        {
            "message": message,
            "protocol": protocol,
            "signature": signature,
            "signer": key_id(key.public_key()),
        }
    )


def open_sealed(body: str, protocol: str, public_key: Ed25519PublicKey) -> dict:
    """Check a sealed envelope against ``public_key``; the inner message, parsed."""
    wrapper = json.loads(body)
    assert set(wrapper) == {"message", "protocol", "signature", "signer"}
    assert wrapper["protocol"] == protocol
    assert body == canonical(wrapper), "the wrapper itself is canonical JSON"
    assert wrapper["signer"] == key_id(public_key)
    signature = base64.b64decode(wrapper["signature"], validate=True)
    assert len(signature) == 64
    public_key.verify(signature, wrapper["message"].encode("utf-8"))  # raises if bad
    inner = json.loads(wrapper["message"])
    assert wrapper["message"] == canonical(inner), "the signed message is canonical JSON"
    return inner


def request(action: str, *, agent: str = "rpcutil", **fields: object) -> dict:
    body = {
        "action": action,
        "agent": agent,
        "callerid": "user=conformance",
        "collective": "mcollective",
        "data": {},
        "filter": {"identity": [IDENTITY]},
        "msgtime": round(time.time(), 3),
        "protocol": "switchboard:request:1",
        "requestid": uuid.uuid4().hex,
        "roles": [],
        "senderid": "conformance-client",
        "ttl": 60,
    }
    body.update(fields)
    return body


# -- a STOMP 1.1 client on a bare socket -----------------------------------------------------


class RawStomp:
    """Frames as the STOMP 1.1 spec and docs/protocol.md (Transport) describe them."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.buffer = b""
        self.host = host

    def send_frame(self, command: str, headers: dict[str, str], body: bytes = b"") -> None:
        lines = [command] + [f"{name}:{value}" for name, value in headers.items()]
        self.sock.sendall(("\n".join(lines) + "\n\n").encode("utf-8") + body + b"\x00")

    def read_frame(self, timeout: float = 5.0) -> tuple[str, dict[str, str], bytes]:
        """The next frame; heart-beats (bare EOLs between frames) are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            self.buffer = self.buffer.lstrip(b"\r\n")
            head_end = self.buffer.find(b"\n\n")
            if head_end >= 0:
                head = self.buffer[:head_end].decode("utf-8").split("\n")
                command = head[0].rstrip("\r")
                headers: dict[str, str] = {}
                for line in head[1:]:
                    name, _, value = line.rstrip("\r").partition(":")
                    headers.setdefault(name, value)  # STOMP: the first occurrence wins
                rest = self.buffer[head_end + 2 :]
                if "content-length" in headers:
                    length = int(headers["content-length"])
                    if len(rest) > length:
                        assert rest[length : length + 1] == b"\x00"
                        self.buffer = rest[length + 1 :]
                        return command, headers, rest[:length]
                elif b"\x00" in rest:
                    body, _, self.buffer = rest.partition(b"\x00")
                    return command, headers, body
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no complete frame")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            self.buffer += chunk

    def connect(self) -> dict[str, str]:
        self.send_frame(
            "CONNECT",
            {"accept-version": "1.1", "host": self.host, "heart-beat": "10000,10000"},
        )
        command, headers, body = self.read_frame()
        assert command == "CONNECTED", (command, headers, body)
        return headers

    def subscribe(self, destination: str, sub_id: str) -> None:
        receipt = f"sub-{sub_id}"
        self.send_frame(
            "SUBSCRIBE",
            {"id": sub_id, "destination": destination, "ack": "auto", "receipt": receipt},
        )
        command, headers, _ = self.read_frame()
        assert (command, headers.get("receipt-id")) == ("RECEIPT", receipt)

    def publish(self, destination: str, body: str, headers: dict[str, str]) -> None:
        data = body.encode("utf-8")
        self.send_frame(
            "SEND",
            {
                "destination": destination,
                "content-type": "application/json",
                "content-length": str(len(data)),
                **headers,
            },
            data,
        )

    def message(self, timeout: float = 5.0) -> tuple[dict[str, str], str]:
        command, headers, body = self.read_frame(timeout)
        assert command == "MESSAGE", (command, headers, body)
        return headers, body.decode("utf-8")

    def close(self) -> None:
        try:
            self.send_frame("DISCONNECT", {})
        finally:
            self.sock.close()


# -- the node and the client -----------------------------------------------------------------

REPLY_QUEUE = "/queue/mcollective.reply.conformance_client"
REGISTRATION_QUEUE = "/queue/mcollective.registration"
PING_TOPIC = "/topic/mcollective.rpcutil.agent"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A broker, a raw client subscribed to its reply queue and the registration queue, and a
    node that trusts the client's key; yields (client, node, portal key, registration body)."""
    tmp = tmp_path_factory.mktemp("conformance")
    portal_key = Ed25519PrivateKey.generate()
    (tmp / "portal.pub").write_bytes(
        portal_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with EmbeddedBroker() as broker:
        client = RawStomp("127.0.0.1", broker.port)
        connected = client.connect()
        assert connected["version"] == "1.1"
        client.subscribe(REGISTRATION_QUEUE, "registrations")
        client.subscribe(REPLY_QUEUE, "replies")
        node = NodeDaemon(
            NodeConfig(
                identity=IDENTITY,
                facts={"customer": "acme", "cpus": 8},
                classes=["base", "apache"],
                brokers=[("127.0.0.1", broker.port)],
                agents=["echo", "rpcutil"],
                max_age=600,  # so that "too old" and "expired" can be told apart below
                backend="simulated",
                register_interval=0,
                workers=1,  # one request at a time: "no reply" is then provable by order
                trusted_keys=[str(tmp / "portal.pub")],
                signing_key=str(tmp / "node.pem"),
                enrolment_token=TOKEN,
            )
        )
        node.start()
        try:
            headers, registration = client.message()
            assert headers["destination"] == REGISTRATION_QUEUE
            # protocol.md: the node's identity as the message group, and an expiry of a day
            # after msgtime for a node that registers only at start (register_interval 0).
            msgtime = json.loads(json.loads(registration)["message"])["msgtime"]
            assert headers["JMSXGroupID"] == IDENTITY
            assert headers["expires"] == str(int((msgtime + 86400) * 1000))
            yield client, node, portal_key, registration
        finally:
            node.stop()
            client.close()


def node_key_from(registration_body: str) -> Ed25519PublicKey:
    """The node's public key, trusted only once the registration's seal checks out with it."""
    inner = json.loads(json.loads(registration_body)["message"])
    key = serialization.load_pem_public_key(inner["public_key"].encode("ascii"))
    assert isinstance(key, Ed25519PublicKey)
    open_sealed(registration_body, "switchboard:secure_registration:1", key)
    return key


def ask(client: RawStomp, portal_key: Ed25519PrivateKey, req: dict, **headers: str) -> None:
    message = canonical(req)
    hdrs = {
        "reply-to": REPLY_QUEUE,
        "expires": str(int((req["msgtime"] + req["ttl"]) * 1000)),
        **headers,
    }
    client.publish(
        f"/topic/{req['collective']}.{req['agent']}.agent",
        seal("switchboard:secure_request:1", message, portal_key),
        hdrs,
    )


def reply_to(client: RawStomp, node_key: Ed25519PublicKey) -> tuple[dict[str, str], dict]:
    headers, body = client.message()
    return headers, open_sealed(body, "switchboard:secure_reply:1", node_key)


def stats(client, node_key, portal_key) -> dict:
    req = request("daemon_stats")
    ask(client, portal_key, req)
    _, reply = reply_to(client, node_key)
    assert (reply["requestid"], reply["statuscode"]) == (req["requestid"], 0)
    return reply["data"]


# -- the tests -----------------------------------------------------------------------------


def test_registration_is_sealed_by_the_key_it_carries(world):
    _, _, _, body = world
    wrapper = json.loads(body)
    node_key = node_key_from(body)
    registration = json.loads(wrapper["message"])
    assert set(registration) == REGISTRATION_FIELDS
    assert registration["protocol"] == "switchboard:registration:1"
    assert registration["identity"] == IDENTITY
    assert registration["collectives"] == ["mcollective"]
    assert registration["facts"] == {"customer": "acme", "cpus": 8}
    assert registration["classes"] == ["base", "apache"]
    assert registration["agents"] == ["echo", "rpcutil"]
    assert isinstance(registration["msgtime"], float)
    assert abs(registration["msgtime"] - time.time()) < 60
    # The key id is the signer, and the enrolment proof binds identity and key id to the token.
    kid = key_id(node_key)
    assert wrapper["signer"] == kid
    expected = hmac.new(
        TOKEN.encode("utf-8"),
        f"switchboard-enrolment\n{IDENTITY}\n{kid}".encode(),
        hashlib.sha256,
    ).hexdigest()
    assert registration["enrolment_proof"] == expected
    # One changed byte in the message and the seal no longer holds.
    forged = dict(wrapper, message=wrapper["message"].replace(IDENTITY, "impostor.example.net"))
    with pytest.raises(InvalidSignature):
        node_key.verify(base64.b64decode(forged["signature"]), forged["message"].encode())


def test_ping_answers_with_the_request_msgtime(world):
    client, _, portal_key, registration = world
    node_key = node_key_from(registration)
    req = request("ping")
    ask(client, portal_key, req)
    headers, reply = reply_to(client, node_key)
    assert headers["destination"] == REPLY_QUEUE
    assert set(reply) == REPLY_FIELDS
    assert reply["protocol"] == "switchboard:reply:1"
    assert reply["requestid"] == req["requestid"]
    assert reply["senderid"] == IDENTITY
    assert reply["senderagent"] == "rpcutil"
    assert (reply["statuscode"], reply["statusmsg"]) == (0, "OK")
    assert reply["data"] == {"pong": req["msgtime"]}
    assert req["msgtime"] <= reply["msgtime"] <= time.time() + 1


def test_a_bad_signature_gets_no_reply_and_is_counted(world):
    client, _, portal_key, registration = world
    node_key = node_key_from(registration)
    before = stats(client, node_key, portal_key)
    bad = request("ping")
    wrapper = json.loads(seal("switchboard:secure_request:1", canonical(bad), portal_key))
    signature = bytearray(base64.b64decode(wrapper["signature"]))
    signature[0] ^= 0x01
    wrapper["signature"] = base64.b64encode(bytes(signature)).decode()
    client.publish(PING_TOPIC, canonical(wrapper), {"reply-to": REPLY_QUEUE})
    # Sealed by a key the node does not trust: refused the same way.
    stranger = request("ping")
    ask(client, Ed25519PrivateKey.generate(), stranger)
    # The node takes one request at a time, so the next reply, if any, would be to those.
    good = request("ping")
    ask(client, portal_key, good)
    _, reply = reply_to(client, node_key)
    assert reply["requestid"] == good["requestid"]
    after = stats(client, node_key, portal_key)
    assert after["signature_refused"] - before["signature_refused"] == 2
    assert after["unvalidated"] - before["unvalidated"] == 2
    assert after["replies"] - before["replies"] == 2  # the good ping and the first stats


def test_a_refused_request_gets_no_reply_and_moves_its_counter(world):
    """The node rules of docs/protocol.md, one request each, in the documented order."""
    client, _, portal_key, registration = world
    node_key = node_key_from(registration)
    now = time.time()
    before = stats(client, node_key, portal_key)
    # Each is sealed correctly by the trusted key, and each breaks one rule.
    elsewhere = request("ping", collective="dc_z")
    client.publish(  # invalid: a collective the node does not serve (on a topic it reads)
        PING_TOPIC,
        seal("switchboard:secure_request:1", canonical(elsewhere), portal_key),
        {"reply-to": REPLY_QUEUE},
    )
    ask(
        client,
        portal_key,
        request("ping", filter={"fact": [{"fact": "cpus", "operator": ">=", "value": 4}]}),
    )  # invalid: value not a string
    # invalid: a lone surrogate, in a signed message and in the wrapper around one.
    ask(client, portal_key, request("ping", callerid="user=\ud800"))
    sealed = json.loads(
        seal("switchboard:secure_request:1", canonical(request("ping")), portal_key)
    )
    sealed["message"] = sealed["message"].replace('{"action"', '{"x":"\ud800","action"', 1)
    body = canonical(sealed)  # the wrapper's JSON now holds the escape \ud800 itself
    assert '{\\"x\\":\\"\\ud800\\"' in body
    client.publish(PING_TOPIC, body, {"reply-to": REPLY_QUEUE})
    ping = request("ping")
    client.publish(  # wrong_destination: a ping for rpcutil on echo's topic
        "/topic/mcollective.echo.agent",
        seal("switchboard:secure_request:1", canonical(ping), portal_key),
        {"reply-to": REPLY_QUEUE},
    )
    ask(client, portal_key, request("ping", ttl=3601))  # ttl_too_long (max_ttl 3600)
    ask(client, portal_key, request("ping", msgtime=now - 700, ttl=3600))  # too_old (max_age 600)
    ask(client, portal_key, request("ping", msgtime=now - 120, ttl=60))  # ttl_expired
    ask(client, portal_key, request("ping", msgtime=now + 45))  # ttl_expired: beyond clock_skew
    unanswerable = request("ping")
    client.publish(  # no_reply_to
        PING_TOPIC, seal("switchboard:secure_request:1", canonical(unanswerable), portal_key), {}
    )
    replayed = request("ping")
    ask(client, portal_key, replayed)
    ask(client, portal_key, replayed)  # duplicates
    # Filter values are strings; both sides numeric: compared as numbers (as text, "8" >= "10").
    more_cpus = {"fact": [{"fact": "cpus", "operator": ">=", "value": "10"}]}
    ask(client, portal_key, request("ping", filter=more_cpus))  # filtered
    fire_and_forget = request("ping", reply_wanted=False)
    ask(client, portal_key, fire_and_forget)  # runs, never answered
    skewed = request("ping", msgtime=round(now + 20, 3), filter={"compound": "cpus>=4.0e0"})
    ask(client, portal_key, skewed)  # within clock_skew, and 8 >= 4.0e0: answered
    answered = []
    for _ in range(2):
        _, reply = reply_to(client, node_key)
        answered.append(reply["requestid"])
    assert answered == [replayed["requestid"], skewed["requestid"]]
    after = stats(client, node_key, portal_key)
    moved = {name: after[name] - before[name] for name in before if isinstance(before[name], int)}
    assert {name: n for name, n in moved.items() if n} == {
        "total": 16,
        "unvalidated": 5,
        "invalid": 4,
        "wrong_destination": 1,
        "validated": 11,
        "ttl_too_long": 1,
        "too_old": 1,
        "ttl_expired": 2,
        "no_reply_to": 1,
        "duplicates": 1,
        "filtered": 1,
        "passed": 4,  # the replayed ping, the fire-and-forget, the skewed ping, the stats
        "replies": 3,  # the first stats, the replayed ping, the skewed ping
    }


def test_coilmq_refuses_stomp_12_unless_host_is_its_fqdn(world):
    client, *_ = world
    probe = RawStomp(*client.sock.getpeername()[:2])
    try:
        probe.send_frame("CONNECT", {"accept-version": "1.1,1.2", "host": "127.0.0.1"})
        command, headers, _ = probe.read_frame()
        assert command == "ERROR"
        assert headers["message"] == "Virtual hosting is not supported or host is unknown"
    finally:
        probe.sock.close()


# -- the documented examples ------------------------------------------------------------------


def documented_examples() -> dict[str, str]:
    text = (DOCS / "protocol.md").read_text(encoding="utf-8")
    found = re.findall(r"<!-- example: ([\w-]+) -->\n```\w+\n(.*?)\n```", text, re.DOTALL)
    examples = dict(found)
    assert len(examples) == len(found), "example names are unique"
    return examples


def example_key(phrase: str) -> Ed25519PrivateKey:
    """The documented example keys: the Ed25519 key whose seed is SHA-256 of the phrase."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(phrase.encode("ascii")).digest())


def test_documented_examples_are_canonical_and_their_seals_verify():
    examples = documented_examples()
    assert set(examples) == {
        "portal-public-key", "node-public-key", "request", "sealed-request", "reply",
        "sealed-reply", "registration", "sealed-registration",
    }  # fmt: skip
    for name, text in examples.items():
        if name.endswith("-key"):
            continue
        assert canonical(json.loads(text)) == text, f"example {name} is not canonical JSON"
    portal = example_key("switchboard example portal key")
    node = example_key("switchboard example node key")
    pem = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    assert portal.public_key().public_bytes(*pem).decode() == examples["portal-public-key"] + "\n"
    assert node.public_key().public_bytes(*pem).decode() == examples["node-public-key"] + "\n"
    assert key_id(portal.public_key()) == "4714e1cac67781da"
    assert key_id(node.public_key()) == "b4dbc3c847c6e2b9"
    cases = [
        ("request", "switchboard:secure_request:1", portal, REQUEST_FIELDS),
        ("reply", "switchboard:secure_reply:1", node, REPLY_FIELDS),
        ("registration", "switchboard:secure_registration:1", node, REGISTRATION_FIELDS),
    ]
    for name, protocol, key, fields in cases:
        sealed = examples[f"sealed-{name}"]
        inner = open_sealed(sealed, protocol, key.public_key())
        assert json.loads(sealed)["message"] == examples[name]
        assert set(inner) == fields, f"example {name} has the fields a node sends"
        # Ed25519 is deterministic: sealing the example again gives the documented bytes.
        assert seal(protocol, examples[name], key) == sealed
    registration = json.loads(examples["registration"])
    assert registration["public_key"] == examples["node-public-key"] + "\n"
    proof = hmac.new(
        b"example-enrolment-token",
        f"switchboard-enrolment\n{registration['identity']}\nb4dbc3c847c6e2b9".encode(),
        hashlib.sha256,
    ).hexdigest()
    assert registration["enrolment_proof"] == proof
    request_example = json.loads(examples["request"])
    assert int((request_example["msgtime"] + request_example["ttl"]) * 1000) == 1795760804230
    reply = json.loads(examples["reply"])
    assert reply["data"] == {"pong": request_example["msgtime"]}
