"""The test suite (`make test`)."""

import os

from .base import *  # noqa: F403
from .base import env

DEBUG = False
# PBKDF2 costs ~0.8 s per check on these machines; tests do not test the hasher.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# A worker subprocess cannot share locmem's outbox: worker tests pass a file-based backend.
EMAIL_BACKEND = env("TEST_EMAIL_BACKEND", default=EMAIL_BACKEND)
EMAIL_FILE_PATH = env("TEST_EMAIL_FILE_PATH", default="/tmp/gridcrm-test-mail")
# A separate Redis database so a test run never eats the demo's queue.
REDIS_URL = env("TEST_REDIS_URL", default="redis://127.0.0.1:6379/15")
CELERY_BROKER_URL = REDIS_URL
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
MEDIA_ROOT = env.path("MEDIA_ROOT", default="/tmp/gridcrm-test-media")
# Parallel runs on one machine (several developers' helpers) each set their own name.
DATABASES["default"]["TEST"] = {"NAME": env("TEST_DB_NAME", default="test_gridcrm")}  # noqa: F405
# The test Redis (DB 15) is shared by every test run on the machine: each run's cache keys live
# under its own prefix (test database + process), so runs never read each other's sessions; a
# session key is random, so tests of one run never meet each other's entries either.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env("TEST_REDIS_CACHE_URL", default=REDIS_URL),
        "KEY_PREFIX": f"test:{DATABASES['default']['TEST']['NAME']}:{os.getpid()}",  # noqa: F405
        "TIMEOUT": 3600,
    }
}
