import json

import pytest

from agents.protocol import (
    MAX_MESSAGE_BYTES,
    ProtocolError,
    Registration,
    Reply,
    Request,
    Status,
    broadcast_topic,
    decode_registration,
    decode_reply,
    decode_request,
    directed_queue,
    encode,
    expires_header,
    parse_brokers,
    registration_headers,
    registration_queue,
    registration_ttl,
    reply_queue,
)


def make_request(**overrides):
    fields = dict(collective="mcollective", agent="rpcutil", action="ping", callerid="user=alice")
    fields.update(overrides)
    return Request.new(**fields)


def test_destinations():
    assert broadcast_topic("mcollective", "rpcutil") == "/topic/mcollective.rpcutil.agent"
    assert directed_queue("dc_a") == "/queue/dc_a.nodes"
    assert reply_queue("dc_a", "portal-1") == "/queue/dc_a.reply.portal-1"
    assert registration_queue("dc_b") == "/queue/dc_b.registration"


def test_registration_headers_group_by_identity_and_expire_after_two_intervals():
    headers = registration_headers("web01.dc1.example", 1795760744.25, 300)
    assert headers == {"JMSXGroupID": "web01.dc1.example", "expires": "1795761344250"}


def test_registration_ttl():
    assert registration_ttl(300) == 600
    assert registration_ttl(60.5) == 121
    # A node that registers only at start and reconnect: a day, not for ever.
    assert registration_ttl(0) == 86400
    assert registration_ttl(-1) == 86400


@pytest.mark.parametrize("bad", ["", "a.b", "a/b", "*", ">", "a b", "é"])
def test_destinations_reject_bad_names(bad):
    with pytest.raises(ValueError, match="invalid"):
        broadcast_topic(bad, "rpcutil")
    with pytest.raises(ValueError, match="invalid"):
        reply_queue("mcollective", bad)


def test_status_codes_match_mcollective():
    assert [(s.name, int(s)) for s in Status] == [
        ("OK", 0),
        ("ABORTED", 1),
        ("UNKNOWN_ACTION", 2),
        ("MISSING_DATA", 3),
        ("INVALID_DATA", 4),
        ("UNKNOWN_ERROR", 5),
    ]


def test_request_round_trip_and_canonical_encoding():
    req = make_request(data={"b": 1, "a": [1, 2]}, filter={"identity": ["web1"]}, ttl=30)
    text = encode(req)
    assert " " not in text
    assert list(json.loads(text)) == sorted(json.loads(text))
    assert decode_request(text) == req
    assert decode_request(text.encode()) == req
    assert len(req.requestid) == 32
    assert req.protocol == "switchboard:request:1"
    assert req.ttl == 30


def test_reply_and_registration_round_trip():
    req = make_request()
    reply = Reply.for_request(
        req, senderid="web1", statuscode=Status.OK, statusmsg="OK", data={"pong": 1.5}
    )
    assert decode_reply(encode(reply)) == reply
    assert reply.requestid == req.requestid and reply.senderagent == "rpcutil"
    reg = Registration("web1", ["mcollective"], {"os": "debian"}, ["base"], ["rpcutil"], 1.0)
    assert decode_registration(encode(reg)) == reg


def test_expiry():
    req = make_request(msgtime=1000.0, ttl=60)
    assert req.is_expired(now=1061.0)
    assert not req.is_expired(now=1059.0)
    assert expires_header(1000.0, 60) == "1060000"


def _body(**changes):
    obj = json.loads(encode(make_request()))
    for key, value in changes.items():
        if value is KeyError:
            del obj[key]
        else:
            obj[key] = value
    return json.dumps(obj)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"protocol": NaN}', "non-standard JSON constant"),
        (_body(protocol=KeyError), "no 'protocol' field"),
        (_body(protocol="mcollective:request:1"), "unknown protocol"),
        (_body(protocol="switchboard:reply:1"), "unknown protocol"),
        (_body(protocol="switchboard:request:2"), "unsupported switchboard:request version '2'"),
        (_body(agent=KeyError), "missing field 'agent'"),
        (_body(ttl="60"), "field 'ttl' must be int, got str"),
        (_body(ttl=True), "field 'ttl' must be int, got bool"),
        (_body(ttl=0), "'ttl' must be positive"),
        (_body(data=[]), "field 'data' must be dict"),
        (_body(msgtime="now"), "field 'msgtime' must be int or float"),
        (_body(agent="../etc"), "invalid name"),
        ("x" * (MAX_MESSAGE_BYTES + 1), "over the 262144 byte limit"),
    ],
)
def test_decode_request_errors(body, message):
    with pytest.raises(ProtocolError, match=message.replace("(", r"\(")):
        decode_request(body)


def test_decode_reply_refuses_request():
    with pytest.raises(ProtocolError, match="unknown protocol"):
        decode_reply(encode(make_request()))


def test_encode_refuses_nan_and_oversize():
    with pytest.raises(ProtocolError, match="cannot encode"):
        encode(make_request(data={"x": float("nan")}))
    with pytest.raises(ProtocolError, match="byte limit"):
        encode(make_request(data={"x": "y" * MAX_MESSAGE_BYTES}))


def test_parse_brokers():
    assert parse_brokers("h1:61613, h2:61614") == [("h1", 61613), ("h2", 61614)]
    assert parse_brokers("[::1]:61613") == [("::1", 61613)]
    for bad in ["", "h1", "h1:x", "h1:0", ":61613"]:
        with pytest.raises(ValueError):
            parse_brokers(bad)
