"""The node daemon: one STOMP connection, a subscription per agent per collective, replies.

Guarantees: every frame is counted in ``total`` and then in exactly one of ``validated`` or
``unvalidated``. A frame that does not pass is counted by its reason and changes nothing: no
action runs, no reply is sent, no audit line is written; a refusal (steps 1 to 4) is also
logged once with its reason, and does not use up its request id, so the same request sent
again properly is not a duplicate. The checks, in order (``handle_frame``):

1. decoding: not JSON, wrong protocol, oversized, a bad filter, a string that is not valid
   Unicode: ``invalid``; an unsigned request (when signatures are required), an unknown signer
   or a bad signature: ``signature_refused``; a collective this node is not in: ``invalid``;
2. the destination: a request must arrive on its own agent's topic in its own collective, or
   on its collective's directed queue (``wrong_destination``); otherwise anyone who may publish
   to one agent's topic could reach every agent;
3. then the request counts as ``validated``; a ttl over ``max_ttl``: ``ttl_too_long``; a
   msgtime more than ``max_age`` ago: ``too_old``; stamped beyond ``clock_skew`` in the future
   or past its ttl: ``ttl_expired`` (INFO: a slow network, not an attack);
4. no ``reply-to`` header on a request that wants a reply: ``no_reply_to``;
5. an id already seen within its ttl: ``duplicates``; a filter this node does not match:
   ``filtered`` (neither logged: both are routine);
6. ``passed``: agents.dispatch runs it (policy, DDL, action, audit line; see there) and the
   Reply goes to ``reply-to``, except for a fire-and-forget request (``reply_wanted`` false),
   which runs and is not answered.

Refusals that suggest an attacker or a misconfigured portal are logged at WARNING. A bug in
the node itself is logged with its traceback and counted in ``errors`` instead of vanishing
in the worker pool. Actions run in a small worker pool so the stomp.py receiver thread is never
blocked by a slow action.
"""

from __future__ import annotations

import argparse
import collections
import logging
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import stomp

from agents import __version__
from agents.audit import AuditLog
from agents.config import ConfigError, NodeConfig, load_config
from agents.dispatch import dispatch
from agents.filters import Filter, FilterSyntaxError, Node
from agents.plugins import ActionContext, Agent, AgentSettings, load_agents
from agents.policy import NodePolicy, PolicyDecision
from agents.protocol import (
    CONTENT_TYPE_JSON,
    HEADER_IDENTITY,
    HEADER_REPLY_TO,
    BrokerUnavailable,
    ProtocolError,
    Registration,
    Reply,
    Request,
    Status,
    SubscriptionConfirmer,
    broadcast_topic,
    directed_queue,
    encode,
    registration_headers,
    registration_queue,
)
from agents.protocol.security import (
    SignatureError,
    SigningKey,
    TrustedKeys,
    enrolment_proof,
    open_request,
    seal_registration,
    seal_reply,
)
from agents.protocol.transport import build_connection, format_brokers, start_connection

log = logging.getLogger(__name__)

# validated/unvalidated are MCollective's names: a message that decoded into a request for
# one of our collectives, or not (unvalidated == invalid, kept for older dashboards).
COUNTERS = (
    "total", "validated", "unvalidated", "passed", "filtered", "replies", "ttl_expired",
    "invalid", "duplicates", "denied", "errors", "reconnects", "signature_refused",
    "wrong_destination", "ttl_too_long", "too_old", "no_reply_to",
)  # fmt: skip
# STOMP's own header naming where a MESSAGE frame was published.
HEADER_DESTINATION = "destination"
# ActiveMQ's JMS spelling of a destination, beside STOMP's: both brokers put STOMP's
# "/topic/..." in MESSAGE frames today, but the JMS form names the same destination.
_JMS_PREFIXES = {"topic://": "/topic/", "queue://": "/queue/"}
# A hard cap on remembered request ids, beside their expiry, so a flood cannot exhaust memory.
RECENT_REQUEST_IDS = 65536


class _Listener(stomp.ConnectionListener):
    """Hands frames to the daemon; runs on stomp.py's receiver thread, so it only queues."""

    def __init__(self, daemon: NodeDaemon) -> None:
        self.daemon = daemon

    def on_message(self, frame: Any) -> None:
        self.daemon.submit(dict(frame.headers), frame.body)

    def on_error(self, frame: Any) -> None:
        self.daemon.broker_error(frame.headers.get("message") or frame.body or "ERROR frame")

    def on_disconnected(self) -> None:
        self.daemon.connection_lost()


@dataclass
class BrokerState:
    """What the node knows of its broker link: logged on every change, read by rpcutil."""

    connected: bool = False
    broker: str = ""  # host:port of the broker it is (or was last) connected to
    since: float = 0.0  # when ``connected`` last changed (epoch seconds)
    last_error: str = ""  # why the link last failed: refused login, ERROR frame, closed


class NodeDaemon:
    """One node: owns its STOMP connection, subscriptions, worker pool and counters."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        agents: dict[str, Agent] | None = None,
        trusted_keys: TrustedKeys | None = None,
        signing_key: SigningKey | None = None,
    ) -> None:
        """``trusted_keys``/``signing_key`` override the config's files (the simulator shares
        one set of trusted keys between its nodes and keeps their keys in memory)."""
        self.config = config
        self.identity = config.identity
        try:
            self.trusted_keys = trusted_keys or TrustedKeys.from_files(config.trusted_keys)
            self.signing_key = signing_key or (
                SigningKey.load_or_create(config.signing_key) if config.signing_key else None
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(f"keys: {exc}") from exc
        if self.signing_key is None:
            log.warning(
                "%s: no signing_key: the portal refuses unsigned registrations, so this node "
                "cannot enrol, and its replies cannot be verified",
                config.identity,
            )
        if config.require_signatures and not len(self.trusted_keys):
            log.warning(
                "%s: require_signatures is on but no trusted_keys are set: every request "
                "will be refused",
                config.identity,
            )
        if agents is None:
            agents = load_agents(config.agents, agent_settings(config))
        self.agents = agents
        self.policy = NodePolicy(config.policy_dir, config.policy_default == "allow")
        self.audit = (
            AuditLog(config.audit_log, config.audit_max_bytes, config.audit_backups)
            if config.audit_log
            else None
        )
        self.node = Node(config.identity, config.facts, config.classes, sorted(self.agents))
        self.started_at = time.time()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._lock = threading.Lock()
        # request id -> when it expires: a replay within its ttl is refused, and after its
        # ttl the ttl check refuses it, so an id can be forgotten once it expires.
        self._seen: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._pool = ThreadPoolExecutor(config.workers, thread_name_prefix=f"node-{self.identity}")
        self._stopping = threading.Event()
        self._confirmer = SubscriptionConfirmer()
        self._reconnecting = threading.Lock()
        self._conn: stomp.Connection | None = None
        self._broker_state = BrokerState(since=time.time())
        self._frame_error = ""  # the last ERROR frame's message, until the link goes down
        self._register_thread: threading.Thread | None = None
        self._serving = False  # only a started daemon reconnects on its own

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, *, register_periodically: bool = True) -> None:
        """Connect, subscribe and register; returns once the subscriptions are confirmed.

        Raises BrokerUnavailable if no broker answers within ``config.connect_timeout``.
        """
        self._stopping.clear()
        self._conn = build_connection(
            self.config.brokers,
            heartbeats=self.config.heartbeats,
            timeout=self.config.connect_timeout,
            tls=self.config.tls,
        )
        self._conn.set_listener("node", _Listener(self))
        self._conn.set_listener("confirm", self._confirmer)
        try:
            self._connect_and_subscribe()
        except BrokerUnavailable as exc:
            self._link_down(str(exc))
            raise
        self._serving = True
        self.publish_registration()
        if register_periodically and self.config.register_interval > 0:
            self._register_thread = threading.Thread(
                target=self._register_loop, name=f"register-{self.identity}", daemon=True
            )
            self._register_thread.start()

    def stop(self) -> None:
        """Unsubscribe and disconnect; pending actions finish, no reconnect is attempted."""
        self._stopping.set()
        self._serving = False
        conn = self._conn
        if conn is not None:
            try:
                if conn.is_connected():
                    conn.disconnect()
            except Exception as exc:  # a dead socket is fine: we are leaving anyway
                log.debug("%s: disconnect failed: %s", self.identity, exc)
            conn.transport.running = False
        self._pool.shutdown(wait=True, cancel_futures=False)
        if self.audit is not None:
            self.audit.close()

    def is_connected(self) -> bool:
        """True while the STOMP connection is up."""
        return self._conn is not None and self._conn.is_connected()

    def stats(self) -> dict[str, int]:
        """A snapshot of the message counters."""
        with self._lock:
            return dict(self._counts)

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def broker_state(self) -> dict[str, Any]:
        """A snapshot of the broker link: connected or not, to which broker, since when, why."""
        with self._lock:
            return {**asdict(self._broker_state), "reconnects": self._counts["reconnects"]}

    def broker_error(self, message: str) -> None:
        """An ERROR frame: a refused login, a refused subscription or send. The broker
        usually closes the connection after it; the reconnect loop then backs off."""
        log.warning("%s: the broker sent an ERROR frame: %s", self.identity, message)
        with self._lock:
            self._frame_error = message

    def _link_up(self) -> None:
        conn = self._conn
        where = conn.transport.current_host_and_port if conn is not None else None
        with self._lock:
            state = self._broker_state
            state.connected, state.since = True, time.time()
            state.broker = format_brokers([where]) if where else ""

    def _link_down(self, reason: str) -> None:
        with self._lock:
            state = self._broker_state
            if state.connected:
                state.connected, state.since = False, time.time()
            # An ERROR frame names the cause better than the closed socket or the missing
            # receipt that follows it.
            frame_error, self._frame_error = self._frame_error, ""
            if frame_error:
                reason = f"the broker said: {frame_error}" + (f" ({reason})" if reason else "")
            state.last_error = reason or "the connection was closed"

    def _connect_and_subscribe(self) -> None:
        assert self._conn is not None
        conn = self._conn
        start_connection(
            conn,
            self.config.brokers,
            self.config.login,
            self.config.passcode,
            timeout=self.config.connect_timeout,
        )
        try:
            self._subscribe(conn)
        except (OSError, stomp.exception.StompException) as exc:
            # The broker went away between the login and the confirmation: the same retry as
            # a broker that never answered, not a traceback that ends the daemon.
            raise BrokerUnavailable(
                f"lost the connection to {format_brokers(self.config.brokers)} while "
                f"subscribing: {str(exc) or type(exc).__name__}"
            ) from exc
        self._link_up()

    def _subscribe(self, conn: stomp.Connection) -> None:
        destinations = [
            broadcast_topic(collective, agent)
            for collective in self.config.collectives
            for agent in sorted(self.agents)
        ]
        for dest in destinations:
            conn.subscribe(dest, id=dest, ack="auto")
        if self.config.directed:
            # Needs a broker with selectors (ActiveMQ); coilmq ignores them.
            for collective in self.config.collectives:
                queue = directed_queue(collective)
                conn.subscribe(
                    queue,
                    id=queue,
                    ack="auto",
                    headers={"selector": f"{HEADER_IDENTITY} = '{self.identity}'"},
                )
        # Confirmed subscriptions: callers may publish as soon as start() returns.
        self._confirmer.confirm(
            conn, self.config.connect_timeout, f"{self.identity}'s subscriptions"
        )

    def connection_lost(self) -> None:
        """Called by the listener when the connection drops: reconnect in the background."""
        if self._stopping.is_set() or not self._serving:
            return
        self._link_down("")
        log.warning(
            "%s: lost the broker connection: %s; reconnecting",
            self.identity,
            self._broker_state.last_error,
        )
        threading.Thread(
            target=self._reconnect_loop, name=f"reconnect-{self.identity}", daemon=True
        ).start()

    def _reconnect_loop(self) -> None:
        if not self._reconnecting.acquire(blocking=False):
            return  # another reconnect is already running
        try:
            delay = 0.01
            while not self._stopping.is_set():
                try:
                    self._connect_and_subscribe()
                    self._count("reconnects")
                    log.info(
                        "%s: reconnected to %s and resubscribed",
                        self.identity,
                        self._broker_state.broker,
                    )
                    self.publish_registration()
                    return
                except BrokerUnavailable as exc:
                    self._link_down(str(exc))
                    log.warning("%s: %s; retrying in %.2f s", self.identity, exc, delay)
                    self._stopping.wait(delay)
                    delay = min(delay * 2, 30.0)
        finally:
            self._reconnecting.release()

    # -- registration ---------------------------------------------------------------------

    def registration(self) -> Registration:
        """This node's Registration envelope, stamped now, with its enrolment proof when the
        config holds an enrolment token."""
        key = self.signing_key
        token = self.config.enrolment_token
        return Registration(
            identity=self.identity,
            collectives=list(self.config.collectives),
            facts=self.config.facts,
            classes=list(self.config.classes),
            agents=sorted(self.agents),
            msgtime=time.time(),
            public_key=key.public_pem() if key else "",
            enrolment_proof=enrolment_proof(token, self.identity, key.key_id)
            if key and token
            else "",
        )

    def registration_body(self, registration: Registration) -> str:
        """``registration``'s wire text: sealed with this node's key (unsealed without one,
        which the portal refuses; kept so a lab node still says who it is in the log)."""
        if self.signing_key is None:
            return encode(registration)
        return seal_registration(registration, self.signing_key)

    def publish_registration(self) -> None:
        """Send the sealed Registration to each collective's registration queue (best effort)."""
        conn = self._conn
        if conn is None or not conn.is_connected():
            return
        registration = self.registration()
        body = self.registration_body(registration)
        headers = registration_headers(
            self.identity, registration.msgtime, self.config.register_interval
        )
        for collective in self.config.collectives:
            try:
                conn.send(
                    registration_queue(collective),
                    body,
                    content_type=CONTENT_TYPE_JSON,
                    headers=headers,
                )
            except Exception as exc:  # the reconnect path will register again
                log.warning("%s: registration not sent: %s", self.identity, exc)

    def _register_loop(self) -> None:
        interval = self.config.register_interval
        # Jitter spreads a fleet's registrations so they do not arrive in one burst.
        while not self._stopping.wait(interval * random.uniform(0.9, 1.1)):  # noqa: S311
            self.publish_registration()

    # -- requests -------------------------------------------------------------------------

    def submit(self, headers: dict[str, str], body: str | bytes) -> None:
        """Queue one received frame for a worker; never blocks the receiver thread."""
        try:
            self._pool.submit(self.handle_frame, headers, body)
        except RuntimeError:
            log.debug("%s: frame arrived after shutdown; dropped", self.identity)

    def handle_frame(self, headers: dict[str, str], body: str | bytes) -> Reply | None:
        """Check and run one frame (see the module docstring for the order); returns the
        Reply (sent unless the request is fire-and-forget), or None if it was refused.

        ``headers`` are the MESSAGE frame's: ``destination`` (may be absent only for a call
        made in-process, never over STOMP) and ``reply-to``. Never raises.
        """
        self._count("total")
        try:
            return self._handle_request(headers, body)
        except Exception:
            # A bug of the node's own (an action's exceptions are dispatch's business): an
            # exception raised here would vanish in the worker pool, unseen and uncounted.
            self._count("errors")
            log.exception("%s: a frame could not be handled", self.identity)
            return None

    def _handle_request(self, headers: dict[str, str], body: str | bytes) -> Reply | None:
        try:
            request, signer = open_request(
                body, self.trusted_keys, require_signature=self.config.require_signatures
            )
            flt = Filter.from_dict(request.filter)
        except SignatureError as exc:
            self._count("unvalidated")
            self._count("signature_refused")
            log.warning("%s: refused a request: %s", self.identity, exc)
            return None
        except (ProtocolError, FilterSyntaxError) as exc:
            self._count("invalid")
            self._count("unvalidated")
            log.warning("%s: dropped invalid message: %s", self.identity, exc)
            return None
        if request.collective not in self.config.collectives:
            self._count("invalid")
            self._count("unvalidated")
            log.warning("%s: dropped request for collective %s", self.identity, request.collective)
            return None
        arrived = headers.get(HEADER_DESTINATION)
        if arrived is not None and not _arrived_where_addressed(arrived, request):
            self._count("unvalidated")
            self._count("wrong_destination")
            log.warning(
                "%s: refused request %s: a request for %s.%s in collective %s arrived on %r, "
                "not on %s or %s",
                self.identity, request.requestid, request.agent, request.action,
                request.collective, arrived,
                broadcast_topic(request.collective, request.agent),
                directed_queue(request.collective),
            )  # fmt: skip
            return None
        self._count("validated")
        if not self._fresh(request):
            return None
        reply_to = headers.get(HEADER_REPLY_TO) or None
        if reply_to is None and request.reply_wanted:
            # Refused before it runs: an action whose outcome nobody can hear (a restart, a
            # package update) is worse than none, and a portal that forgets reply-to is broken.
            self._count("no_reply_to")
            log.warning(
                "%s: refused request %s for %s.%s: no reply-to header, and it is not marked "
                "fire-and-forget (reply_wanted false)",
                self.identity, request.requestid, request.agent, request.action,
            )  # fmt: skip
            return None
        if not self._first_sighting(request.requestid, request.expires_at()):
            self._count("duplicates")
            return None
        if not flt.matches(self.node):
            self._count("filtered")
            return None
        self._count("passed")
        # Roles count only when the portal's signature vouches for them: anyone who can
        # publish to the topic could claim a role in an unsigned request.
        roles = tuple(request.roles) if signer else ()
        reply = dispatch(
            request,
            self.agents,
            self.identity,
            self._context,
            authorize=lambda req, actions: self._authorize(req, actions, roles),
            audit=self.audit,
        )
        if reply.statuscode == Status.UNKNOWN_ERROR:
            self._count("errors")
        if not request.reply_wanted:
            # Fire-and-forget: nobody reads its replies, so none is sent even when a reply-to
            # is given; one sent anyway would sit on that queue until it expired.
            log.debug(
                "%s: request %s is fire-and-forget; no reply", self.identity, request.requestid
            )
        elif reply_to is not None:
            self._send_reply(reply_to, request, reply)
        return reply

    def _fresh(self, request: Request) -> bool:
        """The time checks, counted and logged: ttl within max_ttl, msgtime within max_age,
        not stamped in the future beyond clock_skew, and not expired.

        Only comparisons until the ttl and msgtime are known to be in range: both may be
        JSON integers of any size, and adding one to a float overflows.
        """
        config = self.config
        now = time.time()
        if request.ttl > config.max_ttl:
            self._count("ttl_too_long")
            log.warning(
                "%s: refused request %s for %s.%s: ttl %s s is over max_ttl %s s",
                self.identity, request.requestid, request.agent, request.action,
                _shown(request.ttl), config.max_ttl,
            )  # fmt: skip
            return False
        if request.msgtime < now - config.max_age:
            self._count("too_old")
            log.warning(
                "%s: refused request %s for %s.%s: msgtime %s is more than max_age %s s ago "
                "(a replay, or a clock that is wrong)",
                self.identity, request.requestid, request.agent, request.action,
                _shown(request.msgtime), config.max_age,
            )  # fmt: skip
            return False
        # Future-dated requests are refused too, beyond the clock skew allowed (MCollective
        # accepted them): a request stamped ahead would otherwise live longer than its ttl.
        if request.msgtime > now + config.clock_skew or request.is_expired(now):
            self._count("ttl_expired")
            log.info("%s: request %s outside its ttl; dropped", self.identity, request.requestid)
            return False
        return True

    def _authorize(self, request: Request, actions: Any, roles: tuple[str, ...]) -> PolicyDecision:
        decision = self.policy.decide(
            request.agent, request.action, request.callerid, self.node, roles=roles, actions=actions
        )
        if not decision.allowed:
            self._count("denied")
        return decision

    def _first_sighting(self, requestid: str, expires_at: float) -> bool:
        # A replayed request (or a broker duplicate) is refused while it is still young
        # enough to pass the ttl check; ids are remembered until then.
        now = time.time()
        with self._lock:
            while self._seen and next(iter(self._seen.values())) < now:
                self._seen.popitem(last=False)
            if requestid in self._seen:
                return False
            self._seen[requestid] = expires_at
            if len(self._seen) > RECENT_REQUEST_IDS:
                self._seen.popitem(last=False)
            return True

    def _context(self, request: Request) -> ActionContext:
        return ActionContext(
            identity=self.identity,
            facts=self.config.facts,
            classes=list(self.config.classes),
            agents=sorted(self.agents),
            collectives=list(self.config.collectives),
            main_collective=self.config.main_collective,
            version=__version__,
            started_at=self.started_at,
            stats=self.stats(),
            broker=self.broker_state(),
            request=request,
        )

    def _send_reply(self, reply_to: str, request: Request, reply: Reply) -> None:
        try:
            body = self._wire(reply)
        except ProtocolError as exc:
            body = self._wire(
                Reply.for_request(
                    request,
                    senderid=self.identity,
                    statuscode=Status.UNKNOWN_ERROR,
                    statusmsg=f"reply could not be sent: {exc}",
                )
            )
        conn = self._conn
        if conn is None:
            return
        try:
            conn.send(reply_to, body, content_type=CONTENT_TYPE_JSON)
            self._count("replies")
        except Exception as exc:
            # stomp.py's "not connected" carries no message: say what the link was doing.
            why = str(exc) or f"{type(exc).__name__} ({self._broker_state.last_error or 'no link'})"
            log.warning("%s: reply to %s not sent: %s", self.identity, request.requestid, why)

    def _wire(self, reply: Reply) -> str:
        """The reply's wire text: sealed with this node's key when it has one."""
        return seal_reply(reply, self.signing_key) if self.signing_key else encode(reply)


def _arrived_where_addressed(destination: str, request: Request) -> bool:
    """True if ``destination`` (a MESSAGE frame's header) is where ``request`` belongs: its
    agent's topic in its collective, or its collective's directed queue."""
    for jms, stomp_prefix in _JMS_PREFIXES.items():
        if destination.startswith(jms):
            destination = stomp_prefix + destination[len(jms) :]
            break
    return destination in (
        broadcast_topic(request.collective, request.agent),
        directed_queue(request.collective),
    )


def _shown(value: float) -> str:
    """A number from the wire as the log shows it: a JSON integer may have hundreds of digits."""
    text = str(value)
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} digits)"


def agent_settings(config: NodeConfig) -> AgentSettings:
    """The part of the node config that agents see (backend choice, nrpe commands)."""
    return AgentSettings(
        backend=config.backend,
        nrpe_commands={name: tuple(argv) for name, argv in config.nrpe_commands.items()},
    )


def main(argv: list[str] | None = None) -> int:
    """``switchboard-node --config /etc/switchboard/node.yaml``: run until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="switchboard-node", description=__doc__)
    parser.add_argument("--config", default="/etc/switchboard/node.yaml", help="YAML config")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--version", action="version", version=f"switchboard-node {__version__}")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    # A config that cannot be used is one ERROR line naming the file and the setting, and exit
    # status 2 (no traceback), for systemd's status and the journal to show.
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return 2
    try:
        daemon = NodeDaemon(config)
    except (ConfigError, KeyError, OSError, ValueError) as exc:
        reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        log.error("configuration error: %s: %s", args.config, reason)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    delay = 1.0
    while not stop.is_set():
        try:
            daemon.start()
            break
        except BrokerUnavailable as exc:
            log.warning("%s; retrying in %.0f s", exc, delay)
            stop.wait(delay)
            delay = min(delay * 2, 30.0)
    if not stop.is_set():
        log.info(
            "%s serving agents %s in %s via %s",
            config.identity,
            ", ".join(sorted(daemon.agents)),
            ", ".join(config.collectives),
            format_brokers(config.brokers),
        )
        stop.wait()
    daemon.stop()
    return 0
