"""An in-process STOMP broker (coilmq) for the one-machine demo and for tests.

Not the production path: coilmq has no selectors, no network of brokers and no
per-destination ACLs. Production runs ActiveMQ (see deploy/ and docs/node.md).
"""

from __future__ import annotations

import argparse
import io
import logging
import signal
import threading
from typing import Any

from coilmq.auth.simple import SimpleAuthenticator
from coilmq.queue import QueueManager
from coilmq.scheduler import FavorReliableSubscriberScheduler, RandomQueueScheduler
from coilmq.server.socket_server import StompRequestHandler, ThreadedStompServer
from coilmq.store.memory import MemoryQueue
from coilmq.topic import TopicManager
from coilmq.util.frames import Frame, FrameBuffer

from agents.protocol import HEADER_GROUP

log = logging.getLogger(__name__)


class MessageGroupScheduler(FavorReliableSubscriberScheduler):
    """coilmq's scheduler (a random subscriber, reliable ones first), plus ActiveMQ's message
    groups: a message with a ``JMSXGroupID`` goes to the subscriber that took its group's
    first message, while that subscriber is still there, else to a new one that keeps it.

    The portal's correctness does not hang on this (a registration consumer refuses one
    older than the registration recorded, whoever recorded it); it keeps one node's
    registrations in one consumer's batch, as on ActiveMQ. Messages queued while nobody
    subscribed go to the first subscriber with the backlog, groups or not (coilmq's rule).
    """

    def __init__(self) -> None:
        # group -> subscription; one entry per group (a node identity) ever seen, replaced
        # when its subscriber goes, so it grows with the fleet, not with the traffic.
        self._owners: dict[str, Any] = {}

    def choice(self, subscribers: list[Any], message: Frame) -> Any:
        """The group's subscriber if it is among ``subscribers``, else coilmq's choice."""
        group = message.headers.get(HEADER_GROUP)
        if not group:
            return super().choice(subscribers, message)
        owner = self._owners.get(group)
        if owner is not None and owner in subscribers:
            return owner
        chosen = super().choice(subscribers, message)
        if chosen is not None:
            self._owners[group] = chosen
        return chosen


class HeartbeatTolerantFrameBuffer(FrameBuffer):
    """coilmq's frame buffer, fixed for STOMP 1.1 heart-beats and ``:`` in header values.

    coilmq 1.1 reads a heart-beat (a lone EOL) as an empty frame and never moves past it, so
    every frame a client sends after its first heart-beat is silently lost; and it splits
    headers on every ``:``. Here EOLs between frames are skipped and headers split once.
    """

    # Set by coilmq's FrameBuffer (untyped), declared here for the type checker.
    _buffer: io.BytesIO
    _pointer: int

    def extract_frame(self) -> Frame | None:
        data = self._buffer.getbuffer()
        start = self._pointer
        while start < len(data) and data[start] in (0x0A, 0x0D):
            start += 1
        self._pointer = start
        if start == len(data):
            # Everything read so far is consumed: start afresh so the buffer does not grow
            # for the life of the connection.
            data.release()
            self._buffer = io.BytesIO()
            self._pointer = 0
            return None
        end_of_headers = bytes(data[start:]).find(b"\n\n")
        if end_of_headers < 0:
            data.release()
            self._buffer.seek(0, 2)
            return None
        preamble = bytes(data[start : start + end_of_headers]).decode()
        data.release()
        lines = [line.rstrip("\r") for line in preamble.split("\n")]
        headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        self._buffer.seek(start + end_of_headers + 2)
        try:
            length = int(headers.get("content-length", -1))
        except ValueError:
            length = -1
        rest = self._buffer.read()
        if length >= 0:
            if len(rest) < length + 1:
                self._buffer.seek(0, 2)
                return None
            body = rest[:length]
            consumed = length + 1  # the NUL after the body
        else:
            body, nul, _ = rest.partition(b"\x00")
            if not nul:
                self._buffer.seek(0, 2)
                return None
            consumed = len(body) + 1
        self._pointer = start + end_of_headers + 2 + consumed
        self._buffer.seek(0, 2)
        return Frame(lines[0], headers=headers, body=body)


class _RequestHandler(StompRequestHandler):
    def setup(self) -> None:
        super().setup()
        self.buffer = HeartbeatTolerantFrameBuffer()


class _Server(ThreadedStompServer):
    # Handler threads must not keep the process alive or make stop() wait for each
    # connection's socket timeout.
    daemon_threads = True
    block_on_close = False


class EmbeddedBroker:
    """coilmq in a background thread; ``port=0`` picks a free port, read it from ``.port``.

    Guarantees: start() returns once the socket is listening; stop() closes the listener
    and every client connection. With ``login`` set, clients must present it and ``passcode``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        login: str | None = None,
        passcode: str | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._auth = SimpleAuthenticator({login: passcode or ""}) if login else None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually listened on (only meaningful after start())."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    @property
    def address(self) -> str:
        """``host:port``, as parse_brokers and --brokers expect it."""
        return f"{self.host}:{self.port}"

    def start(self) -> EmbeddedBroker:
        """Bind, listen and serve in a daemon thread."""
        self._server = _Server(
            (self.host, self._requested_port),
            _RequestHandler,
            # Short socket timeout: each connection thread polls for shutdown this often.
            timeout=1.0,
            authenticator=self._auth,
            queue_manager=QueueManager(
                store=MemoryQueue(),
                subscriber_scheduler=MessageGroupScheduler(),
                queue_scheduler=RandomQueueScheduler(),
            ),
            topic_manager=TopicManager(),
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="embedded-broker",
            daemon=True,
        )
        self._thread.start()
        log.info("embedded STOMP broker listening on %s", self.address)
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket and client connections."""
        server, self._server = self._server, None
        if server is None:
            return
        port = int(server.server_address[1])
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._requested_port = port

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``switchboard-broker --host 127.0.0.1 --port 61613``: serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="switchboard-broker", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=61613)
    parser.add_argument("--login", help="require this login (with --passcode)")
    parser.add_argument("--passcode")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    broker = EmbeddedBroker(args.host, args.port, login=args.login, passcode=args.passcode)
    broker.start()
    print(f"embedded STOMP broker listening on {broker.address}", flush=True)
    stop.wait()
    broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
