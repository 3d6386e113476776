"""OASST settings: one file, every value read from the environment with strict parsing.

Embedded default (nothing set): DEBUG on, SQLite with WAL, Celery eager, local-memory cache.
Production: DEBUG=false, SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL (PostgreSQL), REDIS_URL.
"""

from pathlib import Path
from urllib.parse import urlsplit

from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from oasst.env import Env, database_config, social_providers
from oasst.sentry import sentry_init

BASE_DIR = Path(__file__).resolve().parent.parent
env = Env()

DEBUG = env.bool("DEBUG", True)
SECRET_KEY = env.str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS")
for origin in CSRF_TRUSTED_ORIGINS:
    if not origin.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"CSRF_TRUSTED_ORIGINS: {origin!r} must start with http:// or https://.")
SITE_URL = env.str("SITE_URL", "http://127.0.0.1:8000")
# The name and domain allauth's emails carry (the Site, set after each migrate by oasst.site).
SITE_NAME = env.str("OASST_SITE_NAME", "OASST")
SITE_DOMAIN = env.str("OASST_SITE_DOMAIN", urlsplit(SITE_URL).netloc or "localhost:8000")

INSTALLED_APPS = [
    # Project apps first: their templates override the admin's and allauth's.
    "oasst",
    "tasks",
    "ranking",
    "training",
    "oasst.admin_site.OasstAdminConfig",  # django.contrib.admin, filtering only by declared filters
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_htmx",
    "csp",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
]
SOCIALACCOUNT_PROVIDERS = social_providers(env)
INSTALLED_APPS += [f"allauth.socialaccount.providers.{name}" for name in SOCIALACCOUNT_PROVIDERS]

MIDDLEWARE = [
    "oasst.middleware.HealthCheckMiddleware",
    "oasst.middleware.MetricsMiddleware",  # /metrics behind its guard; times every other request
    "oasst.middleware.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "oasst.middleware.UiLanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

if env.bool("SQL_COUNT_HEADER", False):  # benchmarks read the statements per request from a header
    MIDDLEWARE.insert(1, "oasst.middleware.SqlCountHeaderMiddleware")

ROOT_URLCONF = "oasst.urls"
WSGI_APPLICATION = "oasst.wsgi.application"
SITE_ID = 1

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "oasst.context_processors.site",
            ],
        },
    },
]

# Database
DATABASES = {"default": database_config(env, base_dir=BASE_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: broker, result backend and cache when set; otherwise Celery runs eagerly in-process.
REDIS_URL = env.url("REDIS_URL", schemes={"redis", "rediss"})
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "oasst.cache.DegradingRedisCache",  # Redis down: misses, not errors (see oasst/cache.py)
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "oasst",
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or "cache+memory://"
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True  # a job is acknowledged after it ran: a killed worker's job runs again
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Seconds before a job taken by a worker that died is delivered again (the fault tests use a few seconds).
CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=1)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
# Sending a job subscribes to its result first: with Redis down, fail after one retry, not after 20 s (Celery's
# default); the job is then sent again by a sweep (oasst.enqueue.enqueue_on_commit).
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
                                           "retry_policy": {"max_retries": 1}}
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_TASK_DEFAULT_QUEUE = "default"
# Jobs are routed by their exact names; a job not listed goes to `default`. Training runs take hours: their own
# queue (`celery worker -Q training`) keeps web jobs from starving. The sweeps that watch the runs
# (training.runs_fail_stale, training.runs_resend_unsent) stay on `default`: the training worker may be busy with
# the very run that is stuck. The former names (oasst.celery.job) route like the new ones.
CELERY_TASK_ROUTES = {name: {"queue": "training"} for name in (
    "training.reward_model_train", "training.ppo_train", "training.dpo_train", "training.sft_train",
    "training.train_reward_model", "training.train_ppo", "training.train_dpo", "training.train_sft",
    "training.reward_model_challenge",  # champion / challenger: exports, trains a reward model, scores two
)} | {
    # Scoring replies with the reward model in service loads torch, and takes seconds: a queue of its own
    # (`celery worker -Q scoring`), so an accepted reply's score never waits behind an hours-long training run.
    name: {"queue": "scoring"} for name in ("training.replies_score", "training.replies_rescore")
}
# A running training run silent for this long is failed by training.runs_fail_stale (its worker died).
TRAINING_STALE_MINUTES = env.int("OASST_TRAINING_STALE_MINUTES", 30, minimum=1)
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# The nightly export (tasks.nightly_export_write): where the files go, how many are kept.
EXPORT_DIR = env.str("OASST_EXPORT_DIR", str(BASE_DIR / "exports"))
EXPORT_KEEP = env.int("OASST_EXPORT_KEEP", 7, minimum=1)
# The seed of the id hashes in anonymised exports (export_trees, the nightly export): set it to keep a
# user's pseudonym stable across releases; unset, each export gets a random one. Keep it secret.
EXPORT_ANONYMIZE_SEED = env.str("OASST_EXPORT_ANONYMIZE_SEED")
# Base models prepared by `manage.py prepare_base_models` (the SmolLM2 policy), and the default PPO/DPO policy.
MODELS_DIR = env.str("OASST_MODELS_DIR", str(BASE_DIR / "models"))

# Champion / challenger retraining (training.reward_model_challenge, on the training queue): when beat sends it
# (a crontab line in UTC, weekly by default), by how much a challenger's held-out accuracy must beat the model in
# service to replace it, and whether the embedded worker of `make run` runs it too (off: it trains for a while).
CHALLENGER_SCHEDULE = env.crontab("OASST_CHALLENGER_SCHEDULE", "0 4 * * 0")
CHALLENGER_MARGIN = env.float("OASST_CHALLENGER_MARGIN", 0.02, minimum=0, maximum=1)
CHALLENGER_EMBEDDED = env.bool("OASST_CHALLENGER_EMBEDDED", False)

# Leaderboard rebuild intervals per time frame, in minutes.
LEADERBOARD_REFRESH_MINUTES = {
    frame: env.int(f"OASST_LEADERBOARD_{frame.upper()}_MINUTES", default, minimum=1)
    for frame, default in (("day", 5), ("week", 15), ("month", 60), ("total", 240))
}
# The schedule lives here, in code; oasst.schedule mirrors it into django-celery-beat's tables. The keys are the
# rows' names there (an admin's pause is kept by name): keep them when a job is renamed.
CELERY_BEAT_SCHEDULE = {
    "sessions-clear": {"task": "oasst.sessions_clear", "schedule": 24 * 3600.0},
    "tasks-expire": {"task": "tasks.tasks_expire", "schedule": 300.0},
    "lottery-activate": {"task": "tasks.lottery_activate", "schedule": 300.0},
    "scoring-retry": {"task": "ranking.scoring_retry", "schedule": 600.0},
    "nightly-export": {"task": "tasks.nightly_export_write", "schedule": crontab(hour=3, minute=30)},
    "training-fail-stale-runs": {"task": "training.runs_fail_stale", "schedule": 600.0},
    "training-resend-unsent-runs": {"task": "training.runs_resend_unsent", "schedule": 300.0},
    "reward-model-challenge": {"task": "training.reward_model_challenge", "schedule": CHALLENGER_SCHEDULE},
    **{f"leaderboard-{frame}": {"task": "ranking.leaderboard_rebuild", "schedule": minutes * 60.0, "args": [frame]}
       for frame, minutes in LEADERBOARD_REFRESH_MINUTES.items()},
}
# Beat entries the embedded worker leaves out (it would run them in its scheduler thread, for a long while).
EMBEDDED_SKIPPED = set() if CHALLENGER_EMBEDDED else {"reward-model-challenge"}
# Run only by the embedded worker (oasst/embedded.py, started by runserver when Celery is eager), never by
# beat: without a broker, new points reach the leaderboards within this many seconds.
EMBEDDED_SCHEDULE = {
    "leaderboards-after-new-events": {"task": "ranking.leaderboards_rebuild_after_new_events", "schedule": 15.0},
}

# The tree manager's settings (SPEC defaults); each is overridable as OASST_<NAME in capitals>.
OASST = {
    "max_active_trees": env.int("OASST_MAX_ACTIVE_TREES", 10, minimum=1),
    "max_initial_prompt_review": env.int("OASST_MAX_INITIAL_PROMPT_REVIEW", 100, minimum=1),
    "max_tree_depth": env.int("OASST_MAX_TREE_DEPTH", 3, minimum=1),
    "max_children_count": env.int("OASST_MAX_CHILDREN_COUNT", 3, minimum=1),
    "num_prompter_replies": env.int("OASST_NUM_PROMPTER_REPLIES", 1, minimum=1),
    "goal_tree_size": env.int("OASST_GOAL_TREE_SIZE", 12, minimum=2),
    "num_reviews_initial_prompt": env.int("OASST_NUM_REVIEWS_INITIAL_PROMPT", 3, minimum=1),
    "num_reviews_reply": env.int("OASST_NUM_REVIEWS_REPLY", 3, minimum=1),
    "num_required_rankings": env.int("OASST_NUM_REQUIRED_RANKINGS", 3, minimum=1),
    "acceptance_threshold": env.float("OASST_ACCEPTANCE_THRESHOLD", 0.6, minimum=0, maximum=1),
    "p_full_labeling_review_prompt": env.float("OASST_P_FULL_LABELING_REVIEW_PROMPT", 1.0, minimum=0, maximum=1),
    "p_full_labeling_review_reply_assistant": env.float(
        "OASST_P_FULL_LABELING_REVIEW_REPLY_ASSISTANT", 1.0, minimum=0, maximum=1),
    "p_full_labeling_review_reply_prompter": env.float(
        "OASST_P_FULL_LABELING_REVIEW_REPLY_PROMPTER", 0.1, minimum=0, maximum=1),
    "p_lonely_child_extension": env.float("OASST_P_LONELY_CHILD_EXTENSION", 0.75, minimum=0, maximum=1),
    "lonely_children_count": env.int("OASST_LONELY_CHILDREN_COUNT", 2, minimum=1),
    "auto_mod_enabled": env.bool("OASST_AUTO_MOD_ENABLED", True),
    "auto_mod_red_flags": env.int("OASST_AUTO_MOD_RED_FLAGS", 4, minimum=1),
    "auto_mod_max_skip_reply": env.int("OASST_AUTO_MOD_MAX_SKIP_REPLY", 25, minimum=1),
    "task_valid_for_seconds": env.int("OASST_TASK_VALID_FOR_SECONDS", 2 * 24 * 3600, minimum=60),
    "max_pending_tasks_per_user": env.int("OASST_MAX_PENDING_TASKS_PER_USER", 8, minimum=1),
    "pending_tasks_window_seconds": env.int("OASST_PENDING_TASKS_WINDOW_SECONDS", 300, minimum=1),
    "max_text_length": env.int("OASST_MAX_TEXT_LENGTH", 2000, minimum=1),
    "duplicate_text_window_minutes": env.int("OASST_DUPLICATE_TEXT_WINDOW_MINUTES", 120, minimum=0),
    "rank_prompter_replies": env.bool("OASST_RANK_PROMPTER_REPLIES", False),
    "rank_initial_prompts": env.bool("OASST_RANK_INITIAL_PROMPTS", False),
    "weight_ranking": env.float("OASST_WEIGHT_RANKING", 10, minimum=0),
    "weight_review_reply": env.float("OASST_WEIGHT_REVIEW_REPLY", 5, minimum=0),
    "weight_review_prompt": env.float("OASST_WEIGHT_REVIEW_PROMPT", 5, minimum=0),
    "weight_reply": env.float("OASST_WEIGHT_REPLY", 2, minimum=0),
    "weight_prompt": env.float("OASST_WEIGHT_PROMPT", 0.01, minimum=0),
    "good_ranking_tau": env.float("OASST_GOOD_RANKING_TAU", 0.5, minimum=-1, maximum=1),
    # Prefer parents whose replies the reward model scores closest (0: off). tasks.tree_manager.by_uncertainty
    "weight_ranking_uncertainty": env.float("OASST_WEIGHT_RANKING_UNCERTAINTY", 0.0, minimum=0),
    # Prefer parents where the model's order departs most from the rankings given so far (0: off). Both factors
    # weigh only the scores of the reward model in service (tasks.models.ServingScorer): none in service, off.
    "weight_ranking_disagreement": env.float("OASST_WEIGHT_RANKING_DISAGREEMENT", 0.0, minimum=0),
}

# Authentication
AUTH_USER_MODEL = "oasst.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "oasst.passwords.RevokeApiTokenOnPasswordChange"},  # its password_changed() hook, on every path
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard"
ACCOUNT_LOGOUT_REDIRECT_URL = "home"
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = env.choice("ACCOUNT_EMAIL_VERIFICATION", "mandatory",
                                        {"mandatory", "optional", "none"})
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_SIGNUP_FORM_HONEYPOT_FIELD = "website"
ACCOUNT_ADAPTER = "oasst.account_adapter.AccountAdapter"  # failed log-ins count per account, any identifier
# signup: the honeypot hidden without a style attribute (CSP); login: the identifier bounded
ACCOUNT_FORMS = {"signup": "oasst.forms.SignupForm", "login": "oasst.forms.LoginForm"}
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "http" if DEBUG else "https"
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[OASST] "
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False
# allauth counts its rate limits (sign-up, log-in, password reset) in the default cache.

# Email: the console in development, SMTP otherwise.
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env.str("EMAIL_HOST", "localhost")
EMAIL_PORT = env.int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", "OASST <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# API
# No page takes files either: an upload stays in memory up to FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) and is dropped
# beyond, never written to a temporary file; other request bodies stop at DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB).
FILE_UPLOAD_HANDLERS = ["django.core.files.uploadhandler.MemoryFileUploadHandler"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: an unauthenticated request then gets 401 with WWW-Authenticate: Token.
        "oasst.authentication.TokenAuthentication",  # DRF's, its user read by one precompiled statement
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "oasst.api.exception_handler",
    # No view takes files: multipart bodies are refused (415) instead of being spooled to disk.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser", "rest_framework.parsers.FormParser"],
    # Per user (task_request, submission) and per client IP, whoever is signed in (the *_ip scopes:
    # many accounts behind one address share them). Counted in the cache: Redis in production.
    "DEFAULT_THROTTLE_RATES": {
        "token": "10/min",
        "task_request": env.str("OASST_TASK_REQUEST_RATE", "120/min"),
        "submission": env.str("OASST_SUBMISSION_RATE", "120/min"),
        "task_request_ip": env.str("OASST_TASK_REQUEST_IP_RATE", "600/min"),
        "submission_ip": env.str("OASST_SUBMISSION_IP_RATE", "600/min"),
    },
    # The client IP is REMOTE_ADDR unless this many proxies in front append to X-Forwarded-For: a client
    # cannot dodge a per-IP limit by sending its own X-Forwarded-For.
    "NUM_PROXIES": env.int("OASST_TRUSTED_PROXY_COUNT", 0, minimum=0),
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
ALLAUTH_TRUSTED_PROXY_COUNT = REST_FRAMEWORK["NUM_PROXIES"]  # allauth's sign-up and log-in limits per IP

# /metrics (oasst/metrics.py, docs/operations.md "Monitoring"): served only to a scraper that passes every guard
# configured here, a bearer token and/or client networks (the client address read as the per-IP rate limits read
# it); with neither set, /metrics is a 404 like any unknown path. The scrape-time figures come from these functions.
METRICS_TOKEN = env.str("OASST_METRICS_TOKEN")
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("OASST_METRICS_TOKEN must be at least 16 characters long.")
METRICS_ALLOW_IPS = env.networks("OASST_METRICS_ALLOW_IPS")
METRICS_COLLECTORS = ["tasks.metrics.task_metrics", "tasks.metrics.tree_metrics",
                      "training.metrics.training_run_metrics"]
SPECTACULAR_SETTINGS = {
    "TITLE": "OASST API",
    "DESCRIPTION": "Crowdsourced conversation trees for training an open chat assistant.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI's files are served from our static files: the docs work without internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # No badge image from validator.swagger.io: the page loads nothing from outside (CSP).
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "REDOC_DIST": "SIDECAR",
}

# Internationalisation: the UI is written in English with its strings marked for translation;
# the languages contributors write in are listed in oasst/languages.py.
LANGUAGE_CODE = "en"
# The interface languages (native names, for the picker); a catalogue per language in locale/, compiled by
# `manage.py compile_translations`. oasst.middleware.UiLanguageMiddleware picks one per request.
LANGUAGES = [("en", "English"), ("de", "Deutsch"), ("es", "Español"), ("fr", "Français")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Static files, served by whitenoise
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage" if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage",
    },
}

# Security (production defaults when DEBUG is off; each can be overridden)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", not DEBUG)
if env.bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"  # Lax, not Strict: a link from an email or another site still arrives logged in
CSRF_COOKIE_HTTPONLY = True  # no script reads it: pages send the token from the template (hx-headers)
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# Content-Security-Policy (django-csp). No inline script or style anywhere: every page, the admin,
# allauth and Swagger UI load their scripts and styles from our static files. style-src is 'self'
# too (no 'unsafe-inline'): our templates carry no style attributes, Swagger UI's and the admin's
# scripts set styles through the DOM (element.style), which CSP allows. img-src adds data: for the
# icons Swagger UI's and the admin's stylesheets embed. docs/security.md explains each directive.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# Errors go to Sentry when SENTRY_DSN is set, scrubbed of personal data first (oasst/sentry.py). Never log the DSN.
SENTRY_DSN = env.str("SENTRY_DSN")
if SENTRY_DSN:
    sentry_init(dsn=SENTRY_DSN, environment=env.str("SENTRY_ENVIRONMENT", "production"),
                release=env.str("SENTRY_RELEASE") or None,
                traces_sample_rate=env.float("SENTRY_TRACES_SAMPLE_RATE", 0.0, minimum=0, maximum=1))

# Logs go to stdout: JSON lines in production, plain text in development; every record carries the
# request id (oasst.logging). What a log line may hold: docs/security.md, "Logs".
LOG_LEVEL = env.choice("LOG_LEVEL", "INFO", {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})
LOG_FORMAT = env.choice("LOG_FORMAT", "plain" if DEBUG else "json", {"json", "plain"})
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "oasst.logging.RequestIdFilter"}},
    "formatters": {"json": {"()": "oasst.logging.JsonFormatter"}, "plain": {"()": "oasst.logging.PlainFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout",
                             "formatter": LOG_FORMAT, "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # runserver's own request lines carry the query string; the access log (oasst.access) replaces them.
    "loggers": {"django.server": {"level": "WARNING"}},
}
