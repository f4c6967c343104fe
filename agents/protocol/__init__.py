"""The Switchboard wire protocol: destinations, envelopes, status codes, STOMP transport.

This is the contract between the portal and the nodes; both import it from here.
"""

from agents.protocol.destinations import (
    broadcast_topic,
    directed_queue,
    registration_topic,
    reply_queue,
    validate_name,
)
from agents.protocol.envelope import (
    MAX_MESSAGE_BYTES,
    REGISTRATION_PROTOCOL,
    REPLY_PROTOCOL,
    REQUEST_PROTOCOL,
    ProtocolError,
    Registration,
    Reply,
    Request,
    decode_registration,
    decode_reply,
    decode_request,
    encode,
)
from agents.protocol.status import Status
from agents.protocol.transport import (
    CONTENT_TYPE_JSON,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_HEARTBEATS,
    HEADER_CONTENT_TYPE,
    HEADER_EXPIRES,
    HEADER_IDENTITY,
    HEADER_REPLY_TO,
    BrokerUnavailable,
    SubscriptionConfirmer,
    connect,
    expires_header,
    format_brokers,
    parse_brokers,
    request_headers,
)

__all__ = [
    "CONTENT_TYPE_JSON",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HEARTBEATS",
    "HEADER_CONTENT_TYPE",
    "HEADER_EXPIRES",
    "HEADER_IDENTITY",
    "HEADER_REPLY_TO",
    "MAX_MESSAGE_BYTES",
    "REGISTRATION_PROTOCOL",
    "REPLY_PROTOCOL",
    "REQUEST_PROTOCOL",
    "BrokerUnavailable",
    "ProtocolError",
    "Registration",
    "Reply",
    "Request",
    "Status",
    "SubscriptionConfirmer",
    "broadcast_topic",
    "connect",
    "decode_registration",
    "decode_reply",
    "decode_request",
    "directed_queue",
    "encode",
    "expires_header",
    "format_brokers",
    "parse_brokers",
    "registration_topic",
    "reply_queue",
    "request_headers",
    "validate_name",
]
