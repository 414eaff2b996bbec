"""Settings shared by every environment. Values come from the environment (django-environ)."""

from pathlib import Path

import environ
from celery.schedules import crontab
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

SECRET_KEY = env("DJANGO_SECRET_KEY", default="dev-only-not-secret")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "0.0.0.0", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.gis",
    "django.contrib.postgres",
    "rest_framework",
    "rest_framework.authtoken",
    "rest_framework_gis",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "leaflet",
    "django_celery_beat",
    "pgtrigger",
    "pghistory",
    "pghistory.admin",
    "core",
    "grids",
    "crm",
    "campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "core.middleware.ChineseFirstMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Read-only requests resolve each user's scope once, not once per restrict() (grids.scoping).
    "core.middleware.ScopeCacheMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Stamps the acting user and URL on every audit event written during a request.
    "pghistory.middleware.HistoryMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
AUTH_USER_MODEL = "grids.User"
# ModelBackend, but the session's user is loaded with its active memberships in one statement
# (the scope every request resolves next): grids/auth.py.
AUTHENTICATION_BACKENDS = ["grids.auth.ScopedModelBackend"]
# Sessions read through the cache (Redis, CACHES below) and stored in the database (Django's
# cached_db), ignoring malformed cookies (a NUL byte in sessionid was a 500). See core/sessions.py.
SESSION_ENGINE = "core.sessions"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "core.context_processors.site",
            ],
        },
    }
]

DATABASES = {"default": env.db("DATABASE_URL", default="postgis://gridcrm:gridcrm@127.0.0.1:5432/gridcrm")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
# psycopg prepares nothing by itself (Django's default, safe behind a transaction-mode pooler): only
# the statements run through core.db.prepared_cursor ask for it, explicitly. psycopg needs a
# threshold set for an explicit request to count; this one is never reached by repetition.
DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 2**31 - 1
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Chinese first: zh-hans is the default, English is switchable. Stored in UTC, shown in Shanghai time.
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- Geometry -------------------------------------------------------------------------------
# Storage is WGS 84 (EPSG:4326) everywhere. Metric maths (areas, buffers, distances) is done in
# CGCS2000 / 3-degree Gauss-Kruger CM 120E (EPSG:4549), which fits Hangzhou/Shanghai: on 4326
# PostGIS returns square degrees labelled as m2 (the Area() trap). SRIDs are integers from this
# allow-list only; no user string ever reaches SpatialReference/GDAL (see core/geo.py).
STORAGE_SRID = 4326
METRIC_SRID = 4549
ALLOWED_SRIDS = (STORAGE_SRID, METRIC_SRID, 3857)
# China's extent: input coordinates outside it are rejected.
GEO_EXTENT = {"lon_min": 73.0, "lon_max": 136.0, "lat_min": 3.0, "lat_max": 54.0}
GEO_MAX_VERTICES = 5000
# A map layer never returns more features than this; beyond it the client zooms in or clusters.
MAP_LAYER_MAX_FEATURES = env.int("MAP_LAYER_MAX_FEATURES", default=5000)

# Visit check-in: flagged when farther than this from the merchant, or when the device's accuracy
# is worse than this (metres, computed on geography in the database).
CHECKIN_RADIUS_M = env.int("CHECKIN_RADIUS_M", default=200)
CHECKIN_MAX_ACCURACY_M = env.int("CHECKIN_MAX_ACCURACY_M", default=100)
# Photos: accepted types and size; files go through Django's storage API (MEDIA_ROOT here).
PHOTO_CONTENT_TYPES = ("image/jpeg", "image/png", "image/webp")
PHOTO_MAX_BYTES = env.int("PHOTO_MAX_BYTES", default=10 * 1024 * 1024)
# Duplicate candidates: name similarity (pg_trgm) threshold and search radius.
DUPLICATE_NAME_SIMILARITY = 0.4
DUPLICATE_RADIUS_M = 500

# Base map. Bank intranets run their own tile servers; empty = plain background, no tiles.
MAP_TILE_URL = env("MAP_TILE_URL", default="")
MAP_TILE_ATTRIBUTION = env("MAP_TILE_ATTRIBUTION", default="")
# "wgs84" (Tianditu, OSM, most bank servers) or "gcj02" (Amap, Tencent): data is shifted at display
# time only, never in the database.
MAP_TILE_CRS = env("MAP_TILE_CRS", default="wgs84")
LEAFLET_CONFIG = {
    "DEFAULT_CENTER": (30.27, 120.17),
    "DEFAULT_ZOOM": 12,
    "MIN_ZOOM": 5,
    "MAX_ZOOM": 19,
    "TILES": [],  # layers are added by static/js/map.js from MAP_TILE_URL
    "RESET_VIEW": False,
    "NO_GLOBALS": False,
}

# --- API ------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only: multipart/form bodies on geometry endpoints were a source of 500s (STACK-NOTES).
    "DEFAULT_PARSER_CLASSES": ["core.api.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "core.api.pagination.Pagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.exceptions.exception_handler",
    "STRICT_JSON": True,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "gridcrm API",
    "DESCRIPTION": "Grid-based small-business lending CRM",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # True crashes drf-spectacular's GIS extension (STACK-NOTES).
    "COMPONENT_SPLIT_REQUEST": False,
    "ENUM_NAME_OVERRIDES": {
        "GridKindEnum": "grids.choices.GridKind",
        "GridStatusEnum": "grids.choices.GridStatus",
        "PlaceKindEnum": "grids.choices.PlaceKind",
        "MerchantStatusEnum": "crm.choices.MerchantStatus",
        "RoleEnum": "grids.choices.Role",
        "PersonRoleEnum": "crm.choices.PersonRole",
        "OwnershipRuleEnum": "grids.choices.OwnershipRule",
        "ChannelRoleEnum": "grids.choices.ChannelRole",
        "ProposalKindEnum": "grids.choices.ProposalKind",
        "ProposalStatusEnum": "grids.choices.ProposalStatus",
    },
}

# --- Celery ---------------------------------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL

# --- Cache ----------------------------------------------------------------------------------
# Redis: what the sessions are read from (core.sessions). A key prefix keeps it apart from the
# Celery queue when both share one Redis database.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env("REDIS_CACHE_URL", default=REDIS_URL),
        "KEY_PREFIX": "gridcrm",
    }
}
CELERY_RESULT_BACKEND = None
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_ACKS_LATE = True  # a task killed mid-way is re-delivered, not lost
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 30 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 25 * 60
# Longer than the longest task, so a task is not re-delivered while it still runs.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 2 * 60 * 60}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_DEFAULT_QUEUE = "gridcrm"
# Every periodic task is declared here, and only here.
CELERY_BEAT_SCHEDULE = {
    "check-merchant-grids-nightly": {
        "task": "crm.tasks.check_merchant_grids",
        "schedule": crontab(hour=2, minute=30),
    },
    # Follow-up reminders: rows with a unique key, so a late or doubled run notifies nobody twice.
    # A scan not picked up within the minute is dropped: the next one covers it.
    "scan-due-tasks-every-minute": {
        "task": "crm.tasks.scan_due_tasks",
        "schedule": crontab(minute="*"),
        "options": {"expires": 55},
    },
    # Funnel reports read whole months from this rollup and the rows written since from the raw
    # tables, so a late or skipped run makes them slower, never wrong.
    "refresh-funnel-rollup": {
        "task": "crm.tasks.refresh_funnel_rollup",
        "schedule": crontab(minute="*/10"),
        "options": {"expires": 540},
    },
    "requeue-unsent-notifications": {
        "task": "crm.tasks.requeue_unsent_notifications",
        "schedule": crontab(minute="*/15"),
        "options": {"expires": 600},
    },
}

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="gridcrm@localhost")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Phone and ID numbers are masked in every log line (issue 4: no personal data in logs).
    "filters": {"redact_pii": {"()": "crm.pii.RedactPiiFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["redact_pii"]}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}

# --- Import and export of grids and places (grids/io) -----------------------------------------
# Uploads are read through GDAL from a private temp dir (see grids/io/readers.py for the controls).
IMPORT_MAX_BYTES = env.int("IMPORT_MAX_BYTES", default=20 * 1024 * 1024)
# Features per file: each row costs a validity and an overlap query; a sub-branch has tens of grids.
IMPORT_MAX_FEATURES = env.int("IMPORT_MAX_FEATURES", default=2000)
# Zipped shapefiles: zip-bomb guards (counted while extracting, not trusted from the headers).
IMPORT_ZIP_MAX_ENTRIES = env.int("IMPORT_ZIP_MAX_ENTRIES", default=50)
IMPORT_ZIP_MAX_UNCOMPRESSED_BYTES = env.int("IMPORT_ZIP_MAX_UNCOMPRESSED_BYTES", default=200 * 1024 * 1024)
# Rows of attributes shown by the inspect step, for the field mapping.
IMPORT_SAMPLE_ROWS = 5
# An export larger than this is refused (filter by sub-branch) rather than silently cut.
EXPORT_MAX_FEATURES = env.int("EXPORT_MAX_FEATURES", default=20000)
