"""Sessions refusing session keys Django never issues, read through the cache.

A ``sessionid`` cookie holding a NUL byte reached PostgreSQL in the session lookup and every
request with it (pages and API alike) was a 500 (found by schemathesis). Django's own keys are 32
characters of ``VALID_KEY_CHARS``; anything else is treated like an unknown key: no session. The
check runs when the store is built (``SessionBase._set_session_key``), so a bad key never reaches
the cache nor the database.

``SessionStore`` (the ``SESSION_ENGINE = "core.sessions"`` store) is Django's ``cached_db``: reads
come from the cache (Redis, ``CACHES["default"]``) and fall back to the database; writes go to
both. Every logged-in request read its session row from PostgreSQL (a round trip plus an ORM
compile, ~1 ms of the ~10 ms request floor at scale M); a Redis GET is a fraction of that. The
user is still loaded from the database on every request (``django.contrib.auth.get_user``), so a
deactivated user (or a changed password) is refused at once, whatever the cached session says.
If the cache is down, ``cached_db`` reads the database (Django swallows the cache error on read).
``DatabaseSessionStore`` is the same without the cache."""

from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBSessionStore
from django.contrib.sessions.backends.db import SessionStore as DjangoDatabaseSessionStore

_KEY_CHARS = frozenset(VALID_KEY_CHARS)


def _valid_key(key) -> bool:
    return _KEY_CHARS.issuperset(key)


class DatabaseSessionStore(DjangoDatabaseSessionStore):
    def _validate_session_key(self, key):
        return super()._validate_session_key(key) and _valid_key(key)


class SessionStore(CachedDBSessionStore):
    def _validate_session_key(self, key):
        return super()._validate_session_key(key) and _valid_key(key)
