"""Django settings for Switchboard.

Two profiles, chosen by the environment (see ``.env.example``):

* embedded (default): SQLite, a Celery filesystem queue, and the embedded STOMP broker, which
  also carries the channel layer. Nothing outside this checkout is needed.
* production: ``DATABASE_URL`` (PostgreSQL), ``REDIS_URL`` (Celery broker and channels-redis) and
  ``STOMP_BROKERS`` (the ActiveMQ network), with ``SECRET_KEY`` required.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from celery.schedules import crontab

from portal.core.env import env_bool, env_float, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("SWITCHBOARD_VAR_DIR", str(BASE_DIR / "var")))
# Runtime state (SQLite file, Celery's queue folders, logs) lives here, never in the source tree.
VAR_DIR.mkdir(parents=True, exist_ok=True)

PROFILE = env_str("SWITCHBOARD_PROFILE", "embedded")
PRODUCTION = PROFILE == "production"

# The embedded key is only good for a laptop demo; the system check `switchboard.E001` refuses
# to run the production profile without a real one.
EMBEDDED_SECRET_KEY = "switchboard-embedded-profile-not-secret"  # noqa: S105
SECRET_KEY = env_str("SECRET_KEY", EMBEDDED_SECRET_KEY)
# Off in every profile: the embedded demo is a real portal a logged-in user must not get
# technical pages (settings, tracebacks) from. DEBUG=1 turns it on for development.
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# The address people type (https://switchboard.example.net), behind nginx in production.
# `manage.py check --deploy` holds ALLOWED_HOSTS and CSRF_TRUSTED_ORIGINS against it
# (portal/core/checks.py), so a wrong one is named there instead of as a bare 400 or 403.
SWITCHBOARD_PUBLIC_URL = env_str("SWITCHBOARD_PUBLIC_URL", "")
# Refused form posts get a page that says why (the reason Django found), not a bare 403.
CSRF_FAILURE_VIEW = "portal.core.error_pages.csrf_failure"

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    # No longer used (portal.accounts.ApiToken replaced its tokens): kept installed only so that
    # the migration that hashed its keys can read them on sites that upgrade, and empty since.
    "rest_framework.authtoken",
    "channels",
    "guardian",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "portal.core",
    "portal.accounts",
    "portal.broker",
    "portal.inventory",
    "portal.jobs",
    "portal.targeting",
    "portal.rbac",
    "portal.audit",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files from the ASGI server itself, in both profiles: no separate web server needed.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.otp_device (django-otp), then the hold on a session that owes its second
    # factor (docs/access.md, Second factor): before anything else answers the request.
    "django_otp.middleware.OTPMiddleware",
    "portal.accounts.middleware.SecondFactorMiddleware",
    # Every 403 to a logged-in user on the audit record (docs/audit.md, Refusals).
    "portal.audit.middleware.AccessDeniedMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # Login throttling first: a locked-out username or address is refused before any check.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    # Per-object permissions (an agent or action granted to a role), read by portal.rbac.policy.
    "guardian.backends.ObjectPermissionBackend",
]
GUARDIAN_ANONYMOUS_USER_NAME = None  # nobody anonymous is ever granted anything

# Login throttling (django-axes): this many failures for a username from one address locks
# that pair out for the cool-off; the lockout is logged and the login page says so.
AXES_FAILURE_LIMIT = int(env_float("SWITCHBOARD_LOGIN_FAILURE_LIMIT", 5))
AXES_COOLOFF_TIME = env_float("SWITCHBOARD_LOGIN_COOLOFF_HOURS", 0.25)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

# Second factor (docs/access.md): members of these roles (comma list) must enrol a TOTP app at
# their next login; a superuser counts as admin. Empty: nobody is forced, anyone may enrol.
# Recommended in production: admin.
SWITCHBOARD_OTP_REQUIRED_ROLES = env_list("SWITCHBOARD_OTP_REQUIRED_ROLES", [])
OTP_TOTP_ISSUER = "Switchboard"

ROOT_URLCONF = "portal.urls"
ASGI_APPLICATION = "portal.asgi.application"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.rbac.context_processors.access",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'switchboard.sqlite3'}"),
        conn_max_age=60,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The Celery worker, the ASGI server and the CLI write to the same file: WAL lets readers go
    # on during a write, and IMMEDIATE transactions queue writers instead of failing them.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not memory, so a test's worker and ASGI subprocesses can open the test database.
    # SWITCHBOARD_TEST_DB lets two test runs in one checkout keep out of each other's way.
    DATABASES["default"]["TEST"] = {
        "NAME": env_str("SWITCHBOARD_TEST_DB", str(VAR_DIR / "test-switchboard.sqlite3"))
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The portal's queries are short; JIT compilation cost 70-94 ms per inventory count query
    # at 100,000 nodes and never paid back (bench/preview.py).
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c jit=off"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "jobs:list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
# The embedded profile serves straight from static/ (no collectstatic step), DEBUG or not:
# WhiteNoise indexes the finders' files when it starts (and re-reads them on every request
# with DEBUG=1, its autorefresh default). Production serves the collected, compressed and
# hashed files from STATIC_ROOT.
WHITENOISE_USE_FINDERS = not PRODUCTION
if PRODUCTION:
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }

# --- Message bus: the STOMP network the nodes listen on --------------------------------------
STOMP_BROKERS = env_str("STOMP_BROKERS", "127.0.0.1:61613")
# `manage.py demo` starts the embedded broker unless STOMP_BROKERS points elsewhere.
EMBEDDED_BROKER = env_bool("SWITCHBOARD_EMBEDDED_BROKER", not os.environ.get("STOMP_BROKERS"))
STOMP_LOGIN = env_str("STOMP_LOGIN", "")
STOMP_PASSCODE = env_str("STOMP_PASSCODE", "")
# TLS to the brokers (their STOMP over TLS ports, docs/tls.md): the CA that signed the brokers'
# certificates, and the portal's client certificate and key (PEM). Empty: plain STOMP.
STOMP_TLS_CA = env_str("STOMP_TLS_CA", "")
STOMP_TLS_CERT = env_str("STOMP_TLS_CERT", "")
STOMP_TLS_KEY = env_str("STOMP_TLS_KEY", "")
SWITCHBOARD_CONNECT_TIMEOUT = env_float("SWITCHBOARD_CONNECT_TIMEOUT", 5.0)
# The portal's Ed25519 key: every request is signed with it; nodes trust its public half
# (the same path + ".pub"). Created on first use when missing.
SWITCHBOARD_SIGNING_KEY = Path(
    env_str("SWITCHBOARD_SIGNING_KEY", str(VAR_DIR / "keys" / "portal.pem"))
)
SWITCHBOARD_COLLECTIVE = env_str("SWITCHBOARD_COLLECTIVE", "mcollective")
# Sub-collectives a job may be sent in instead of the main collective: one per datacenter,
# whose traffic the broker network keeps between that datacenter and the NOC (docs/operations.md).
SWITCHBOARD_SUB_COLLECTIVES = [
    name.strip()
    for name in env_str("SWITCHBOARD_SUB_COLLECTIVES", "dc_a,dc_b").split(",")
    if name.strip() and name.strip() != SWITCHBOARD_COLLECTIVE
]
SWITCHBOARD_DISCOVERY_TIMEOUT = env_float("SWITCHBOARD_DISCOVERY_TIMEOUT", 2.0)
# "inventory" (the nodes' registrations, no waiting) or "broadcast" (ping the nodes with the
# filter for SWITCHBOARD_DISCOVERY_TIMEOUT, as MCollective's default). Inventory is the
# default: a broadcast costs a fixed 2 s per job and misses nodes slower than the timeout
# (bench/fanout: 1,000 nodes, full pipe 1.05x the raw round trip with inventory, 1.99x
# and incomplete with a 2 s broadcast).
SWITCHBOARD_DISCOVERY_METHOD = env_str("SWITCHBOARD_DISCOVERY_METHOD", "inventory")
SWITCHBOARD_REQUEST_TTL = int(env_float("SWITCHBOARD_REQUEST_TTL", 60))
# A node that has not registered for this long is shown as stale (3 x the register interval).
SWITCHBOARD_NODE_STALE_AFTER = int(env_float("SWITCHBOARD_NODE_STALE_AFTER", 900))
# Enrolment (docs/operations.md#enrolment): a node seen for the first time is pending until an
# admin accepts it, unless one of these auto-accept rules matches its registration:
#   token    - its enrolment_proof was made with SWITCHBOARD_ENROLMENT_TOKEN;
#   key-dir  - its public key is one of the *.pub files in SWITCHBOARD_ENROLMENT_KEY_DIR.
# Both also need the identity to match SWITCHBOARD_AUTO_ACCEPT_IDENTITIES (a regex, whole
# identity). Off (empty) by default: production accepts nodes by hand unless told otherwise.
SWITCHBOARD_AUTO_ACCEPT = env_list("SWITCHBOARD_AUTO_ACCEPT", [])
SWITCHBOARD_ENROLMENT_TOKEN = env_str("SWITCHBOARD_ENROLMENT_TOKEN", "")
SWITCHBOARD_ENROLMENT_KEY_DIR = env_str("SWITCHBOARD_ENROLMENT_KEY_DIR", "")
SWITCHBOARD_AUTO_ACCEPT_IDENTITIES = env_str("SWITCHBOARD_AUTO_ACCEPT_IDENTITIES", ".*")
# How far ahead of the portal's clock a registration's msgtime may be (seconds).
SWITCHBOARD_REGISTRATION_CLOCK_SKEW = env_float("SWITCHBOARD_REGISTRATION_CLOCK_SKEW", 300.0)
# Per-node broker logins (docs/tls.md, Per-node logins): the brokers stamp the authenticated
# sender into every message (JMSXUserID). On, a registration or reply is kept only when the
# stamp names the identity it claims. Only for a network where every node has its own login.
SWITCHBOARD_REQUIRE_BROKER_IDENTITY = env_bool("SWITCHBOARD_REQUIRE_BROKER_IDENTITY", False)
# How many identities may wait for enrolment at once; past it new ones are refused.
SWITCHBOARD_MAX_PENDING = int(env_float("SWITCHBOARD_MAX_PENDING", 10_000))
# For an action that changes the nodes (its DDL says changes_node) the count is asked above
# this many instead (never more leniently than the line below): 1 asks on two nodes or more.
SWITCHBOARD_CONFIRM_RISKY_ABOVE = int(env_float("SWITCHBOARD_CONFIRM_RISKY_ABOVE", 1))
# Above this many nodes the web form asks the operator to type the node count to go on.
SWITCHBOARD_CONFIRM_ABOVE = int(env_float("SWITCHBOARD_CONFIRM_ABOVE", 25))
# How long a job waiting for a second person's approval may wait before it expires (seconds).
SWITCHBOARD_APPROVAL_TTL = int(env_float("SWITCHBOARD_APPROVAL_TTL", 3600))
# A running job whose runner has not shown life for this long is marked interrupted.
SWITCHBOARD_JOB_STALE_AFTER = env_float("SWITCHBOARD_JOB_STALE_AFTER", 30.0)
# How often collected replies are written and pushed to browsers, in seconds.
SWITCHBOARD_FLUSH_INTERVAL = env_float("SWITCHBOARD_FLUSH_INTERVAL", 0.1)
# Audit history (docs/audit.md): events older than this many days are archived, then deleted by
# `manage.py prune_audit`; the archives go here; no audit page query may run longer than this.
SWITCHBOARD_AUDIT_RETENTION_DAYS = int(env_float("SWITCHBOARD_AUDIT_RETENTION_DAYS", 365))
SWITCHBOARD_AUDIT_ARCHIVE_DIR = Path(
    env_str("SWITCHBOARD_AUDIT_ARCHIVE_DIR", str(VAR_DIR / "audit"))
)
SWITCHBOARD_AUDIT_QUERY_TIMEOUT = env_float("SWITCHBOARD_AUDIT_QUERY_TIMEOUT", 5.0)

# --- Celery and the channel layer ------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_QUEUE_DIR = VAR_DIR / "celery"
# Periodic tasks, queued by the site's one `celery beat` (deploy/systemd/switchboard-beat.service)
# and run by any worker. The sweeps of orphaned jobs, overdue approvals and brokers are not
# here: every worker runs them itself (portal/jobs/tasks.py), so they go on without a beat.
CELERY_BEAT_SCHEDULE = {
    "audit-retention": {
        "task": "portal.audit.prune",
        # Daily at a quiet hour (UTC); SWITCHBOARD_AUDIT_PRUNE_HOUR moves it.
        "schedule": crontab(hour=int(env_float("SWITCHBOARD_AUDIT_PRUNE_HOUR", 3)), minute=17),
    },
}

if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # No read timeout: redis-py 8 defaults to 5 s, and channels-redis waits 5 s for a
            # message, so every WebSocket idle that long was closed with 1011
            # (django/channels_redis#422). REDIS_URL cannot carry it: Celery refuses the option.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                "capacity": 1000,
            },
        }
    }
else:
    # Celery's filesystem transport: a real worker process, queued through files in var/.
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_QUEUE_DIR / "queue"),
        "data_folder_out": str(CELERY_QUEUE_DIR / "queue"),
        "control_folder": str(CELERY_QUEUE_DIR / "control"),
        "store_processed": False,
        "polling_interval": 0.2,
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "portal.core.channel_layers.StompChannelLayer",
            "CONFIG": {
                "brokers": STOMP_BROKERS,
                "login": STOMP_LOGIN,
                "passcode": STOMP_PASSCODE,
                "connect_timeout": SWITCHBOARD_CONNECT_TIMEOUT,
                "tls_ca": STOMP_TLS_CA,
                "tls_cert": STOMP_TLS_CERT,
                "tls_key": STOMP_TLS_KEY,
            },
        }
    }

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Our hashed, expiring tokens, with DRF's header: "Authorization: Token <token>".
        "portal.accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}

# --- Production hardening --------------------------------------------------------------------
if PRODUCTION:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = int(env_float("SECURE_HSTS_SECONDS", 3600))
    # The portal is served over HTTPS only, subdomains included; set these to false if the
    # domain hosts plain-HTTP sites (docs/operations.md).
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SAMESITE = "Strict"
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = int(env_float("SESSION_COOKIE_AGE", 12 * 3600))

# --- E-mail: the set-password links of the Users page ----------------------------------------
# The embedded profile prints them on the console (the demo has no mail server); production
# sends them through EMAIL_HOST unless EMAIL_BACKEND says otherwise.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if PRODUCTION
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = int(env_float("EMAIL_PORT", 25))
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "switchboard@localhost")
# How long a set-password link works (seconds); it is spent once the password is set.
PASSWORD_RESET_TIMEOUT = int(env_float("SWITCHBOARD_PASSWORD_LINK_TTL", 3 * 24 * 3600))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "stomp.py": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # it logs every successful login at INFO
    },
}
