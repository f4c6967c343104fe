"""The portal scaled out, as deploy/ runs it in production (issue 16, item 4).

Debian's nginx with the committed deploy/nginx/switchboard.conf (ports, paths and the
certificate substituted, nothing else) in front of two ASGI servers, two Celery workers, two
registration consumers and one beat, each started from its own deploy/systemd unit's
ExecStart (harness.units), on PostgreSQL, Redis and the local ActiveMQ network, with
simulated nodes on dc_a and dc_b. Checked:

(a) nginx over TLS: the login page, a static file served by nginx itself with a year's cache,
    port 80 redirecting to https, a body over client_max_body_size refused with 413 before any
    ASGI server sees it, a WebSocket upgraded over wss;
(b) a job submitted on ASGI server 1 streams every reply, exactly once, to a socket held on
    ASGI server 2, the same replies the database holds;
(c) mid-job, the worker running it and the ASGI server holding the socket are SIGKILLed: the
    socket reconnects through nginx (to the surviving server) and resumes after its last
    sequence number with no gap and no repeat; the surviving worker's sweep ends the job
    ``interrupted``; every reply stored before the kill is kept, and replied + no response +
    not sent add up to the planned nodes. What "no reply lost" means for the killed worker's
    own job (docs/operations.md, "Scaling out"): nothing it had *stored* is lost or doubled;
    replies still in its memory (at most one flush interval, 100 ms) die with it and those nodes
    count as *no response*; its later batches are never sent (*not sent*), since RPC is
    at-most-once and the job is not run again. A job submitted after the kill completes on the
    surviving worker with every reply;
(d) two registration consumers do not double-write: one inventory row, one enrolment and one
    acceptance audit event per node, and each registration received by exactly one consumer
    (their totals at shutdown). This part needs registrations on a queue
    (``/queue/<collective>.registration``, JMSXGroupID = identity): with the registration
    topic both consumers receive every registration and it fails, as it should.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from harness import units
from harness.activemq import ACTIVEMQ_PORTS, drain_registrations
from harness.databases import postgres_database
from harness.portal import PASSWORD, PortalStack
from harness.services import free_port, require_service
from harness.stacks import (
    ENROLMENT_TOKEN,
    activemq_fleet,
    portal_public_key,
    require_production_services,
)
from portal.core.supervisor import Child, Supervisor
from tests.integration.wire import eventually
from tests.tls_material import make_material

pytestmark = [
    pytest.mark.deploy,
    pytest.mark.integration,
    pytest.mark.activemq,
    pytest.mark.postgres,
    pytest.mark.redis,
    pytest.mark.faults,
    pytest.mark.timeout(600),
]

NGINX = Path("/usr/sbin/nginx")
SITE = units.BASE_DIR / "deploy" / "nginx" / "switchboard.conf"
NODE_COUNT = 24
USER = "admin"
# Not another test's Redis database (test_pipe 7, test_restarts 9, ...): they may run at once.
REDIS_URL = "redis://127.0.0.1:6379/12"
# The workers sweep every half of this (6 s); above the runner's 5 s heartbeat, so a live
# job is never taken for a dead one.
STALE_AFTER = 12
# The registration consumer's totals line at shutdown (consume_registrations.py).
STOPPED = re.compile(
    r"registration consumer stopped: (\d+) received, \d+ malformed, (\d+) nodes written in "
    r"\d+ flushes, \d+ pending, (\d+) auto-accepted"
)
# client_max_body_size in the committed site.
BODY_LIMIT = 1024 * 1024


def render_site(template: str, substitutions: dict[str, str]) -> str:
    """The committed nginx site with each key replaced by its value, all else untouched.

    Every key must occur in the template: if the committed file changes a port, path or
    listen line, the test fails here instead of running a config it did not mean to.
    """
    missing = [token for token in substitutions if token not in template]
    if missing:
        raise AssertionError(f"{SITE.name} no longer contains {missing}; update the test")
    for token, value in substitutions.items():
        template = template.replace(token, value)
    return template


def nginx_main_conf(tmp: Path, site: Path) -> str:
    """What /etc/nginx/nginx.conf is around a Debian site, with every file kept in ``tmp``.

    The access log records which upstream (if any) answered each request: "-" is nginx
    itself.
    """
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read tmp (mode 0700)
    temp = "\n".join(
        f"    {kind}_temp_path {tmp / kind};" for kind in ("client_body", "proxy", "fastcgi")
    )
    return (
        f"{user}worker_processes 1;\npid {tmp / 'nginx.pid'};\n"
        f"error_log {tmp / 'error.log'} info;\n"
        "events { worker_connections 512; }\n"
        "http {\n"
        "    include /etc/nginx/mime.types;\n"
        "    default_type application/octet-stream;\n"
        "    sendfile on;\n"
        "    log_format upstream '$request_method $uri $status $upstream_addr';\n"
        f"    access_log {tmp / 'access.log'} upstream;\n"
        f"{temp}\n    uwsgi_temp_path {tmp / 'uwsgi'};\n    scgi_temp_path {tmp / 'scgi'};\n"
        f"    include {site};\n"
        "}\n"
    )


@dataclass
class Site:
    """The running site: nginx in front, the unit-started processes behind it."""

    portal: PortalStack  # base_url: https through nginx
    sup: Supervisor
    tmp: Path
    var_dir: Path
    prefix: str
    http_port: int
    https_port: int
    asgi_ports: tuple[int, int]
    ca_file: str

    @property
    def ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    @property
    def filter(self) -> str:
        return f"identity:/^{self.prefix}/"

    def child(self, name: str) -> Child:
        return next(c for c in self.sup.children if c.name == name)

    def direct(self, index: int) -> str:
        """ASGI server ``index`` (1 or 2) without nginx."""
        return f"http://127.0.0.1:{self.asgi_ports[index - 1]}"

    def post_direct(self, index: int, path: str, payload: dict[str, Any]) -> requests.Response:
        """POST with the API token straight to ASGI server ``index``, as nginx forwards it
        (X-Forwarded-Proto: https, else the production profile redirects to https)."""
        return requests.post(
            self.direct(index) + path,
            json=payload,
            headers={
                "Authorization": f"Token {self.portal.token}",
                "X-Forwarded-Proto": "https",
                "Host": "127.0.0.1",
            },
            timeout=30,
        )

    def socket(self, job_id: int, *, via: int | None = None, after: int = 0) -> ClientConnection:
        """The job's WebSocket with the browser session's cookie: straight to ASGI server
        ``via``, or through nginx over wss."""
        cookies = "; ".join(f"{k}={v}" for k, v in self.portal.session.cookies.items())
        query = f"?after={after}" if after else ""
        origin = self.portal.base_url
        if via is None:
            url = f"wss://127.0.0.1:{self.https_port}/ws/jobs/{job_id}/{query}"
            return ws_connect(
                url,
                ssl=self.ssl,
                additional_headers={"Cookie": cookies},
                origin=origin,
                max_size=None,
            )
        url = self.direct(via).replace("http://", "ws://") + f"/ws/jobs/{job_id}/{query}"
        headers = {"Cookie": cookies, "X-Forwarded-Proto": "https"}
        return ws_connect(url, additional_headers=headers, origin=origin, max_size=None)

    def stored(self, job_id: int) -> dict[int, str]:
        """Reply id -> identity, as the database holds them."""
        rows = self.portal.query(
            "SELECT id, identity FROM jobs_nodereply WHERE job_id = %s", job_id
        )
        return dict(rows)


def _start_unit(
    sup: Supervisor, name: str, unit: str, instance: str, var_dir: Path, env_file: Path
) -> Child:
    """Start one unit's ExecStart here; ``env -C`` puts it in the unit's WorkingDirectory
    (and execs, so the child's pid is the program's, as systemd's MainPID would be)."""
    line = units.command(
        units.portal_unit(unit), instance=instance, var_dir=var_dir, env_file=env_file
    )
    return sup.start(name, ["env", "-C", str(line.cwd), *line.argv], env=line.env)


def _run_setup(var_dir: Path, env_file: Path) -> None:
    """switchboard-setup.service: migrate, then collectstatic."""
    unit = units.portal_unit("switchboard-setup.service")
    for line in units.commands(unit, var_dir=var_dir, env_file=env_file):
        result = subprocess.run(
            line.argv,
            cwd=line.cwd,
            env={**os.environ, **line.env},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, f"{' '.join(line.argv)}:\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    require_production_services()
    require_service("Debian's nginx", NGINX.exists(), "install it with scripts/install-nginx")
    tmp = tmp_path_factory.mktemp("scaled")
    var_dir = tmp / "var"
    var_dir.mkdir()
    http_port, https_port = free_port(), free_port()
    asgi_ports = (free_port(), free_port())
    assert len({http_port, https_port, *asgi_ports}) == 4
    public_url = f"https://127.0.0.1:{https_port}"
    material = make_material(tmp / "tls")
    redis.Redis.from_url(REDIS_URL).flushdb()
    drain_registrations()  # the consumers' counts below are about this site's nodes only
    with postgres_database("switchboard_deploy") as database_url, Supervisor(tmp / "logs") as sup:
        env = {
            "SWITCHBOARD_PROFILE": "production",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "STOMP_BROKERS": f"127.0.0.1:{ACTIVEMQ_PORTS['noc']}",
            "STOMP_LOGIN": "portal",
            "STOMP_PASSCODE": "portal-secret",
            "SWITCHBOARD_VAR_DIR": str(var_dir),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            # nginx passes Host without the port (the test's port is not 443).
            "CSRF_TRUSTED_ORIGINS": public_url,
            "SWITCHBOARD_PUBLIC_URL": public_url,
            "SWITCHBOARD_DISCOVERY_TIMEOUT": "1.5",
            "SWITCHBOARD_AUTO_ACCEPT": "token",
            "SWITCHBOARD_ENROLMENT_TOKEN": ENROLMENT_TOKEN,
            "SWITCHBOARD_JOB_STALE_AFTER": str(STALE_AFTER),
        }
        # The stand-in for /etc/switchboard/portal.env, which every unit reads.
        env_file = tmp / "portal.env"
        env_file.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
        trusted_key = portal_public_key(var_dir)  # made before any worker could race for it
        _run_setup(var_dir, env_file)
        portal = PortalStack(
            public_url, {**env, "SWITCHBOARD_DEMO_PASSWORD": PASSWORD}, var_dir, sup
        )
        portal.manage("seed_demo")
        portal.token = portal.manage("issue_token", USER).strip()

        for index, port in enumerate(asgi_ports, 1):
            child = _start_unit(
                sup, f"asgi-{index}", "switchboard-asgi@.service", str(port), var_dir, env_file
            )
            sup.wait_for_port(child, "127.0.0.1", port)
        for index in (1, 2):
            child = _start_unit(
                sup, f"worker-{index}", "switchboard-worker@.service", str(index), var_dir, env_file
            )
            sup.wait_for_log(child, "ready.")
            child = _start_unit(
                sup,
                f"registrations-{index}",
                "switchboard-registrations@.service",
                str(index),
                var_dir,
                env_file,
            )
            sup.wait_for_log(child, "registration consumer ready")
        beat = _start_unit(sup, "beat", "switchboard-beat.service", "", var_dir, env_file)
        sup.wait_for_log(beat, "beat: Starting...")

        rendered = tmp / "nginx" / "switchboard.conf"
        rendered.parent.mkdir()
        rendered.write_text(
            render_site(
                SITE.read_text(),
                {
                    "listen 80;": f"listen 127.0.0.1:{http_port};",
                    # Loopback only: the test must not open a port on the machine's addresses.
                    "listen [::]:80;": "",
                    "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
                    "listen [::]:443 ssl http2;": "",
                    "server 127.0.0.1:8001 ": f"server 127.0.0.1:{asgi_ports[0]} ",
                    "server 127.0.0.1:8002 ": f"server 127.0.0.1:{asgi_ports[1]} ",
                    "/etc/switchboard/tls/portal-web.pem": material.server_cert,
                    "/etc/switchboard/tls/portal-web.key": material.server_key,
                    "alias /var/lib/switchboard/static/;": f"alias {var_dir / 'static'}/;",
                },
            )
        )
        main_conf = tmp / "nginx" / "nginx.conf"
        main_conf.write_text(nginx_main_conf(tmp / "nginx", rendered))
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp / "nginx" / kind).mkdir()
        nginx = sup.start(
            "nginx",
            [
                str(NGINX),
                "-e",
                str(tmp / "nginx" / "error.log"),
                "-c",
                str(main_conf),
                "-g",
                "daemon off;",
            ],
        )
        sup.wait_for_port(nginx, "127.0.0.1", https_port)

        prefix = f"dep{uuid.uuid4().hex[:6]}-"
        # After both consumers are subscribed: each node registers once, at start.
        activemq_fleet(
            sup,
            NODE_COUNT,
            seed=16,
            trusted_key=trusted_key,
            enrolment_token=ENROLMENT_TOKEN,
            identity_prefix=prefix,
        )
        running = Site(
            portal, sup, tmp, var_dir, prefix, http_port, https_port, asgi_ports, material.ca
        )
        assert eventually(lambda: len(_our_nodes(running)) == NODE_COUNT, 60)
        with pytest.MonkeyPatch.context() as patch:
            # requests (PortalStack's session and API calls) trusts the test CA for nginx.
            patch.setenv("REQUESTS_CA_BUNDLE", material.ca)
            portal.login(USER)
            yield running


def _our_nodes(site: Site) -> set[str]:
    rows = site.portal.query(
        "SELECT identity FROM inventory_node WHERE identity LIKE %s", site.prefix + "%"
    )
    return {row[0] for row in rows}


def _access_log(site: Site) -> list[list[str]]:
    path = site.tmp / "nginx" / "access.log"
    return [line.split() for line in path.read_text().splitlines()]


def _receive(sock: ClientConnection, timeout: float) -> dict[str, Any]:
    return json.loads(sock.recv(timeout=timeout))


def _replies(message: dict[str, Any]) -> list[dict[str, Any]]:
    if message["type"] == "job.snapshot":
        return list(message["job"]["replies"])
    return list(message["replies"])


def _watch(sock: ClientConnection, timeout: float = 60) -> list[dict[str, Any]]:
    """Every message until the job is finished."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages.append(_receive(sock, max(deadline - time.monotonic(), 0.1)))
        if messages[-1]["job"]["finished"]:
            return messages
    raise AssertionError(f"the job did not finish within {timeout} s: {messages[-1:]}")


def _ids(messages: list[dict[str, Any]]) -> list[int]:
    return [reply["id"] for message in messages for reply in _replies(message)]


def test_a_nginx_serves_tls_static_files_limits_and_websockets(site: Site) -> None:
    base = site.portal.base_url
    login = requests.get(base + "/login/", timeout=10)
    assert login.status_code == 200
    assert "csrfmiddlewaretoken" in login.text
    # Django's own security headers come through nginx (and nginx adds no second copy).
    assert login.headers["Strict-Transport-Security"].startswith("max-age=")
    assert login.headers["X-Content-Type-Options"] == "nosniff"

    redirect = requests.get(
        f"http://127.0.0.1:{site.http_port}/login/?next=/jobs/", allow_redirects=False, timeout=10
    )
    assert redirect.status_code == 301
    # $host carries no port: in production that is 443.
    assert redirect.headers["Location"] == "https://127.0.0.1/login/?next=/jobs/"

    # A hashed file from collectstatic's manifest: a year's cache, from nginx alone.
    manifest = json.loads((site.var_dir / "static" / "staticfiles.json").read_text())
    hashed = next(path for name, path in manifest["paths"].items() if name.endswith(".css"))
    static = requests.get(f"{base}/static/{hashed}", timeout=10)
    assert static.status_code == 200
    assert static.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert static.headers["X-Content-Type-Options"] == "nosniff"
    # A file put in STATIC_ROOT after the ASGI servers started: WhiteNoise (which indexes the
    # files at start) could not serve it; nginx does, without a hash: the short cache.
    (site.var_dir / "static" / "deploy-probe.txt").write_text("served by nginx\n")
    probe = requests.get(f"{base}/static/deploy-probe.txt", timeout=10)
    assert (probe.status_code, probe.text) == (200, "served by nginx\n")
    assert probe.headers["Cache-Control"] == "public, max-age=300"
    # Django's SecurityMiddleware puts these on everything it answers, WhiteNoise's files too.
    for response in (static, probe):
        assert "Referrer-Policy" not in response.headers, "a static file came from Django"
        assert "Cross-Origin-Opener-Policy" not in response.headers
    assert login.headers["Referrer-Policy"] == "same-origin"

    # Over the limit: 413 from nginx, no ASGI server sees it. Just under: the portal answers.
    headers = {"Authorization": f"Token {site.portal.token}", "Content-Type": "application/json"}
    too_big = requests.post(
        base + "/api/jobs/", data=b" " * (BODY_LIMIT + 1), headers=headers, timeout=30
    )
    assert too_big.status_code == 413
    # nginx logs a request once it is done with it, which may be just after the answer.
    assert eventually(lambda: ["POST", "/api/jobs/", "413", "-"] in _access_log(site), 5)
    padded = b'{"agent": "rpcutil", "action": "ping"' + b" " * (BODY_LIMIT - 100) + b"}"
    under = requests.post(base + "/api/jobs/", data=padded, headers=headers, timeout=30)
    assert under.status_code == 201, under.text[:300]

    # The WebSocket upgrade over wss, with the browser session's cookie.
    job_id = under.json()["id"]
    with site.socket(job_id) as sock:
        messages = _watch(sock)
    assert messages[0]["type"] == "job.snapshot"
    assert messages[-1]["job"]["status"] == "completed"
    assert len(set(_ids(messages))) == len(site.stored(job_id)) > 0


def test_b_a_job_on_one_server_streams_to_a_socket_on_the_other(site: Site) -> None:
    # Broadcast discovery waits its 1.5 s first: the socket is open before any reply, so the
    # replies have to travel as live frames from the worker through Redis to server 2.
    submitted = site.post_direct(
        1,
        "/api/jobs/",
        {
            "agent": "rpcutil",
            "action": "ping",
            "filter": site.filter,
            "options": {"discovery": "broadcast"},
        },
    )
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    with site.socket(job_id, via=2) as sock:
        messages = _watch(sock)
    ids = _ids(messages)
    assert len(ids) == len(set(ids)), "a reply came twice"
    stored = site.stored(job_id)
    assert set(ids) == set(stored)
    identities = [reply["identity"] for m in messages for reply in _replies(m)]
    assert sorted(identities) == sorted(stored.values()) == sorted(_our_nodes(site))
    assert any(m["type"] == "job.frame" and m["replies"] for m in messages), "no live frame"
    final = messages[-1]["job"]
    assert (final["status"], final["counts"]["replied"]) == ("completed", NODE_COUNT)


def test_c_killing_a_worker_and_a_server_mid_job(site: Site) -> None:
    # 8 batches of 3, 1.5 s apart: about 12 s, killed after the second batch.
    long_job = {
        "agent": "rpcutil",
        "action": "ping",
        "filter": site.filter,
        "options": {"batch_size": 3, "batch_sleep": 1.5},
    }
    submitted = site.post_direct(1, "/api/jobs/", long_job)
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    before: list[dict[str, Any]] = []
    with site.socket(job_id, via=2) as sock:
        deadline = time.monotonic() + 30
        while len(_ids(before)) < 6:
            assert time.monotonic() < deadline, before[-1:]
            before.append(_receive(sock, deadline - time.monotonic()))
        (runner,) = site.portal.query("SELECT runner FROM jobs_job WHERE id = %s", job_id)[0]
        pid = int(runner.rpartition(":")[2])
        workers = {site.child(f"worker-{i}").process.pid: f"worker-{i}" for i in (1, 2)}
        assert pid in workers, f"the job runs on {runner}, not one of our workers {workers}"
        killed = workers[pid]
        survivor = next(name for name in workers.values() if name != killed)
        site.sup.kill(killed)
        site.sup.kill("asgi-2")
        killed_at = time.monotonic()
        # What the socket had in flight before the server died.
        try:
            while True:
                before.append(_receive(sock, 5))
        except (ConnectionClosed, TimeoutError):
            pass
    stored_at_kill = site.stored(job_id)
    seq = max([m["seq"] for m in before if m["seq"] is not None], default=0)

    # The page reconnects through nginx, which now reaches only server 1, and resumes.
    with site.socket(job_id, after=seq) as resumed:
        after = _watch(resumed, timeout=60)
    ended_in = time.monotonic() - killed_at
    received = _ids(before) + _ids(after)
    assert len(received) == len(set(received)), "a reply came twice across the reconnect"
    final_rows = site.stored(job_id)
    assert set(received) == set(final_rows), "the resumed stream missed stored replies"
    # Nothing stored before the kill is lost. Rows stored after it are replies the broker
    # still held for the dead runner, unacknowledged, which the surviving worker salvaged from
    # its reply queue; they were streamed too (above).
    assert set(stored_at_kill.items()) <= set(final_rows.items())

    job = site.portal.job(job_id)
    assert job["status"] == "interrupted", job
    assert "interrupted: the runner" in job["error"] and runner in job["error"], job["error"]
    counts = job["counts"]
    assert counts["expected"] == NODE_COUNT
    assert counts["replied"] == len(final_rows) >= 6
    assert counts["replied"] + counts["no_response"] + counts["not_sent"] == NODE_COUNT, counts
    # No reply lost: every node the dead runner sent the request to has its answer stored.
    assert counts["no_response"] == 0, counts
    assert counts["not_sent"] > 0, "the kill came after the last batch; nothing was tested"
    # A sweep every STALE_AFTER / 2, plus, with a salvage, the batch's wait and its grace.
    assert ended_in < STALE_AFTER + 30, f"the job ended {ended_in:.0f} s after the kill"

    # A new job runs to completion on the surviving worker, every reply stored and streamed.
    second = site.portal.submit({"agent": "rpcutil", "action": "ping", "filter": site.filter})
    with site.socket(second) as sock:
        messages = _watch(sock)
    job = site.portal.job(second)
    assert job["status"] == "completed", job
    assert job["counts"]["replied"] == NODE_COUNT
    assert sorted(_ids(messages)) == sorted(site.stored(second))
    (runner,) = site.portal.query("SELECT runner FROM jobs_job WHERE id = %s", second)[0]
    assert int(runner.rpartition(":")[2]) == site.child(survivor).process.pid
    site.sup.check()  # everything else still runs
    print(
        f"\nkilled {killed} and asgi-2 with {len(stored_at_kill)} of {NODE_COUNT} replies "
        f"stored, {len(final_rows) - len(stored_at_kill)} more after; job {job_id} was "
        f"interrupted {ended_in:.1f} s later ({counts})"
    )


def test_d_two_registration_consumers_write_each_node_once(site: Site) -> None:
    nodes = _our_nodes(site)
    assert len(nodes) == NODE_COUNT
    pattern = site.prefix + "%"
    enrolments = site.portal.query(
        "SELECT identity, state FROM inventory_enrolment WHERE identity LIKE %s", pattern
    )
    assert sorted(enrolments) == sorted((identity, "accepted") for identity in nodes)
    accepted_events = site.portal.query(
        "SELECT nodes FROM audit_auditevent WHERE kind = %s", "node.accepted"
    )
    ours = [n for (event_nodes,) in accepted_events for n in event_nodes if n in nodes]
    assert sorted(ours) == sorted(nodes), "a node was accepted twice (or never)"
    foreign = site.portal.query(
        "SELECT count(*) FROM inventory_enrolment WHERE identity NOT LIKE %s", pattern
    )[0][0]

    # The consumers' totals, written when they stop (SIGTERM, as systemctl stop sends).
    totals = []
    for name in ("registrations-1", "registrations-2"):
        child = site.child(name)
        site.sup.terminate(name, grace=30)
        log = child.log_path.read_text(errors="replace")
        found = STOPPED.search(log)
        assert found, child.log_tail()
        totals.append(tuple(int(n) for n in found.groups()))
        # Two consumers inserting the same new enrolment: the loser's whole batch fails.
        assert "writing one by one" not in log, log[-3000:]
    received = [total[0] for total in totals]
    if foreign == 0:
        # Each node registered once (at start, after both consumers subscribed), so on a
        # queue the two consumers received NODE_COUNT between them; on a topic, twice that.
        assert sum(received) == NODE_COUNT, (
            f"each registration should reach exactly one consumer: received {received}, "
            f"{NODE_COUNT} sent"
        )
        assert sum(total[2] for total in totals) == NODE_COUNT, totals
    else:
        # Other tests' nodes share the network: a topic still hands every one of ours to both.
        assert min(received) < NODE_COUNT, f"both consumers received all of ours: {received}"
