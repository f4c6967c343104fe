#!/usr/bin/env python3
"""Probe the ActiveMQ network of brokers over real STOMP connections (stdlib + stomp.py).

Checks (every one retries until --timeout, so it doubles as the "bridges are up" wait):
  roundtrip  portal publishes /topic/mcollective.rpcutil.agent at the NOC; a `node` on every
             datacenter broker receives it and replies to /queue/mcollective.reply.probe_<pid>,
             and the portal receives every reply back at the NOC.
With --all also:
  directed   portal sends to /queue/mcollective.nodes with mc_identity at the NOC; only the
             node subscribed with the matching selector (in that datacenter) receives it.
  acl        `node` SEND to /topic/mcollective.rpcutil.agent (with a receipt) gets an ERROR;
             `node` may send to its reply queue and registration topic; a bad password fails
             (TLS only: the node certificate is refused at the NOC, which lists no node).
  isolation  /topic/dc_a.rpcutil.agent and /queue/dc_a.nodes published at the NOC reach dc_a's
             node but never a subscriber on another datacenter's broker.

When the network was rendered with TLS, the round trip runs over STOMP over TLS with the
client certificates the manifest names (so it proves the TLS ports, the certificate logins and
the TLS bridges); the other checks use the plain ports, when there are any. On a TLS port the
certificate decides who a client is, so each user there connects with its own certificate.

Reads the broker list from the network.json that deploy/activemq/render.py writes; passwords
from the same SWITCHBOARD_AMQ_*_PASSWORD variables (development defaults otherwise).
Exit 0 when all requested checks pass, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path

import stomp
from stomp.exception import StompException

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("amq_render", ROOT / "deploy/activemq/render.py")
amq_render = importlib.util.module_from_spec(_spec)
sys.modules["amq_render"] = amq_render
_spec.loader.exec_module(amq_render)

PASSWORDS = amq_render.credentials()
EXPIRY_MS = 15_000  # probe messages expire, so nothing lingers on a broker


def log(*a):
    print("probe:", *a, flush=True)


class Recorder(stomp.ConnectionListener):
    def __init__(self, name: str, on_message=None):
        self.name = name
        self.messages: list[tuple[dict, str]] = []
        self.errors: list[tuple[dict, str]] = []
        self.receipts: set[str] = set()
        self.on_message_cb = on_message
        self.cv = threading.Condition()

    def on_message(self, frame):
        with self.cv:
            self.messages.append((dict(frame.headers), frame.body))
            self.cv.notify_all()
        if self.on_message_cb:
            self.on_message_cb(frame)

    def on_error(self, frame):
        with self.cv:
            self.errors.append((dict(frame.headers), frame.body))
            self.cv.notify_all()

    def on_receipt(self, frame):
        with self.cv:
            self.receipts.add(frame.headers.get("receipt-id", ""))
            self.cv.notify_all()

    def wait_for(self, predicate, timeout: float) -> bool:
        end = time.monotonic() + timeout
        with self.cv:
            while not predicate():
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.cv.wait(left)
            return True


def connect(
    host: str,
    port: int,
    user: str,
    label: str,
    on_message=None,
    password=None,
    timeout: float = 10.0,
    tls: tuple[str, str, str] | None = None,
):
    conn = stomp.Connection12(
        [(host, port)], heartbeats=(0, 0), reconnect_attempts_max=1, timeout=timeout
    )
    if tls:
        ca, cert, key = tls
        conn.set_ssl(for_hosts=[(host, port)], ca_certs=ca, cert_file=cert, key_file=key)
    rec = Recorder(label, on_message)
    conn.set_listener("rec", rec)
    conn.connect(
        user,
        password if password is not None else PASSWORDS[user],
        wait=True,
        headers={"client-id": f"probe-{label}-{os.getpid()}"},
    )
    return conn, rec


class Responder:
    """A stand-in node: answers each request on its reply-to queue."""

    def __init__(self, name: str):
        self.name = name
        self.conn = None

    def __call__(self, frame):
        rid = frame.headers.get("mc_requestid", "")
        body = json.dumps({"requestid": rid, "senderid": f"probe-{self.name}"})
        self.conn.send(
            frame.headers["reply-to"],
            body,
            headers={"mc_requestid": rid, "mc_sender": self.name, "expires": expires()},
        )


def expires() -> str:
    return str(int(time.time() * 1000) + EXPIRY_MS)


class Probe:
    def __init__(self, manifest: dict, host: str, deadline: float):
        self.host = host
        self.deadline = deadline
        self.brokers = {b["name"]: b for b in manifest["brokers"]}
        self.dcs = [b for b in manifest["brokers"] if b["role"] == "datacenter"]
        self.noc = self.brokers["noc"]
        self.conns = []
        self.tls = manifest.get("tls") or None

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def open(self, broker: dict, user: str, label: str, on_message=None, tls: bool = False):
        # the broker may still be starting: retry the TCP/STOMP connect until the deadline
        last = None
        port, material = broker["stomp_port"], None
        if tls or not port:  # no plain port: a --tls-only network
            port, material = broker["stomp_ssl_port"], self.material(user)
        while True:
            try:
                conn, rec = connect(self.host, port, user, label, on_message, tls=material)
                self.conns.append(conn)
                return conn, rec
            except (StompException, OSError) as exc:
                last = exc
            if self.left() <= 0:
                raise SystemExit(f"probe: cannot connect to {broker['name']} as {user}: {last!r}")
            time.sleep(0.5)

    def material(self, user: str) -> tuple[str, str, str]:
        """(CA, client certificate, key) for ``user`` from the manifest's TLS section.

        On a TLS port the certificate, not the login, decides who the client is (JAAS
        certificate logins): each user connects with its own certificate.
        """
        clients = self.tls["clients"]
        client = clients.get(user) or clients["portal"]
        return self.tls["ca_file"], client["cert"], client["key"]

    def close(self):
        for c in self.conns:
            with contextlib.suppress(Exception):  # best effort on the way out
                c.disconnect()

    # ------------------------------------------------------------------ roundtrip
    def roundtrip(self, isolation_warmup=None) -> bool:
        reply_queue = f"/queue/mcollective.reply.probe_{os.getpid()}"
        tls = bool(self.tls and self.tls.get("ca_file"))
        portal, prec = self.open(self.noc, "portal", "portal", tls=tls)
        portal.subscribe(reply_queue, id="replies", ack="auto")
        for dc in self.dcs:
            responder = Responder(dc["name"])
            conn, _rec = self.open(dc, "node", f"node-{dc['name']}", on_message=responder, tls=tls)
            responder.conn = conn
            conn.subscribe("/topic/mcollective.rpcutil.agent", id="rpcutil", ack="auto")
        if isolation_warmup:
            isolation_warmup()

        want = {dc["name"] for dc in self.dcs}
        t0 = time.monotonic()
        n = 0
        while self.left() > 0:
            n += 1
            rid = f"{uuid.uuid4().hex}"
            sent = time.monotonic()
            portal.send(
                "/topic/mcollective.rpcutil.agent",
                json.dumps({"requestid": rid, "agent": "rpcutil", "action": "ping"}),
                headers={"reply-to": reply_queue, "mc_requestid": rid, "expires": expires()},
            )

            def got(rid=rid):
                return want <= {
                    h.get("mc_sender") for h, _ in prec.messages if h.get("mc_requestid") == rid
                }

            if prec.wait_for(got, min(0.5, self.left())):
                log(
                    f"roundtrip ok{' over TLS' if tls else ''}: noc -> "
                    f"{', '.join(sorted(want))} -> noc in "
                    f"{(time.monotonic() - sent) * 1000:.0f} ms (attempt {n}, "
                    f"bridges ready after {time.monotonic() - t0:.1f}s)"
                )
                return True
        seen = {h.get("mc_sender") for h, _ in prec.messages}
        log(
            f"roundtrip FAILED after {n} attempts: replies seen from {sorted(seen) or 'nobody'}"
            f"; errors: {prec.errors}"
        )
        return False

    # ------------------------------------------------------------------ directed
    def directed(self) -> bool:
        recs = {}
        for dc in self.dcs:
            conn, rec = self.open(dc, "node", f"directed-{dc['name']}")
            conn.subscribe(
                "/queue/mcollective.nodes",
                id="nodes",
                ack="auto",
                headers={"selector": f"mc_identity = 'probe-{dc['name']}'"},
            )
            recs[dc["name"]] = rec
        portal, _ = self.open(self.noc, "portal", "portal-directed")
        target = self.dcs[-1]["name"]
        rid = uuid.uuid4().hex
        # the selector subscriptions have to cross the queue bridge first: resend until seen
        ok = False
        while self.left() > 0 and not ok:
            portal.send(
                "/queue/mcollective.nodes",
                rid,
                headers={"mc_identity": f"probe-{target}", "expires": expires()},
            )
            ok = recs[target].wait_for(
                lambda: any(b == rid for _, b in recs[target].messages), min(1.0, self.left())
            )
        time.sleep(0.5)
        strays = [
            n for n, r in recs.items() if n != target and any(b == rid for _, b in r.messages)
        ]
        if ok and not strays:
            log(f"directed ok: mc_identity=probe-{target} reached only {target}")
            return True
        log(f"directed FAILED: reached target={ok}, strays={strays}")
        return False

    # ------------------------------------------------------------------ acl
    def acl(self) -> bool:
        dc = self.dcs[0]
        results = []
        conn, rec = self.open(dc, "node", "acl-node")
        cases = [
            ("/topic/mcollective.rpcutil.agent", False),
            ("/queue/mcollective.reply.probe_acl", True),
            ("/queue/mcollective.registration", True),
        ]
        for dest, allowed in cases:
            if not conn.is_connected():
                conn, rec = self.open(dc, "node", "acl-node")
            receipt = f"acl-{uuid.uuid4().hex[:8]}"
            conn.send(dest, "probe", headers={"receipt": receipt, "expires": expires()})

            def answered(receipt=receipt, rec=rec):
                return receipt in rec.receipts or any(
                    h.get("receipt-id") == receipt for h, _ in rec.errors
                )

            rec.wait_for(answered, 5.0)
            err = [(h, b) for h, b in rec.errors if h.get("receipt-id") == receipt]
            got_receipt = receipt in rec.receipts
            if allowed:
                ok = got_receipt and not err
                what = "RECEIPT" if got_receipt else "ERROR" if err else "no answer"
            else:
                ok = bool(err) and not got_receipt
                what = (
                    f'ERROR "{err[0][0].get("message")}"'
                    if err
                    else ("RECEIPT (accepted!)" if got_receipt else "no answer")
                )
            log(
                f"acl {'ok' if ok else 'FAILED'}: node SEND {dest} -> {what}"
                f" (expected {'receipt' if allowed else 'ERROR'})"
            )
            results.append(ok)
        # A plain port checks the password; a TLS port ignores it and checks the certificate:
        # there the node's certificate is refused at the NOC, which lists no node.
        plain = self.noc["stomp_port"]
        what = "wrong password" if plain else "node certificate at the NOC"
        try:
            connect(
                self.host,
                plain or self.noc["stomp_ssl_port"],
                "node",
                "acl-refused",
                password="wrong",  # noqa: S106 - deliberately wrong
                timeout=5.0,
                tls=None if plain else self.material("node"),
            )
            log(f"acl FAILED: a {what} was accepted")
            results.append(False)
        except (StompException, OSError) as exc:
            log(f"acl ok: {what} refused ({type(exc).__name__})")
            results.append(True)
        return all(results)

    # ------------------------------------------------------------------ isolation
    def isolation_subscribe(self):
        """Subscribe early (before the round trip) so any leak would have had time to form.

        The home datacenter's sub-collective has a node there; every other datacenter broker
        gets an admin watcher on the same topic and queue (its node login may not even
        subscribe: those ACL entries exist only at home and at the NOC).
        """
        home = self.dcs[0]
        self.iso_home = home
        self.iso = {}
        coll = f"dc_{home['datacenter']}"
        for b in self.dcs:
            user = "node" if b is home else "admin"
            conn, rec = self.open(b, user, f"iso-{b['name']}")
            conn.subscribe(f"/topic/{coll}.rpcutil.agent", id="t", ack="auto")
            conn.subscribe(f"/queue/{coll}.nodes", id="q", ack="auto")
            self.iso[b["name"]] = rec

    def isolation(self) -> bool:
        home = self.iso_home
        coll = f"dc_{home['datacenter']}"
        time.sleep(1.0)  # more time for any (wrong) demand to cross the bridges
        portal, _ = self.open(self.noc, "portal", "iso-portal")
        tag = uuid.uuid4().hex
        portal.send(f"/topic/{coll}.rpcutil.agent", f"t-{tag}", headers={"expires": expires()})
        # queue: the NOC has no local consumer, so every message goes to a bridge; without
        # the filter some would go to the watchers in the other datacenters
        for _ in range(5):
            portal.send(f"/queue/{coll}.nodes", f"q-{tag}", headers={"expires": expires()})
        home_rec = self.iso[home["name"]]
        ok_home = home_rec.wait_for(
            lambda: sum(tag in b for _, b in home_rec.messages) == 6,
            min(5.0, max(self.left(), 1.0)),
        )
        time.sleep(1.0)
        leaks = [
            name
            for name, rec in self.iso.items()
            if name != home["name"] and any(tag in b for _, b in rec.messages)
        ]
        ok = ok_home and not leaks
        watched = [n for n in self.iso if n != home["name"]]
        log(
            f"isolation {'ok' if ok else 'FAILED'}: /topic/{coll}.rpcutil.agent and "
            f"/queue/{coll}.nodes from the NOC all reached {home['name']}={ok_home}; "
            f"leaked to {leaks or 'none'} (watched: {', '.join(watched) or 'no other datacenter'})"
        )
        return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", type=Path, default=ROOT / "var/activemq/network.json")
    ap.add_argument("--connect-host", default="127.0.0.1")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--all", action="store_true", help="also directed, acl and isolation")
    args = ap.parse_args(argv)
    manifest = json.loads(args.manifest.read_text())
    t0 = time.monotonic()
    probe = Probe(manifest, args.connect_host, t0 + args.timeout)
    try:
        ok = probe.roundtrip(isolation_warmup=probe.isolation_subscribe if args.all else None)
        if ok and args.all:
            ok = all([probe.directed(), probe.acl(), probe.isolation()])
    finally:
        probe.close()
    log(f"{'PASS' if ok else 'FAIL'} in {time.monotonic() - t0:.1f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
