"""Django's database sessions, refusing session keys Django never issues.

A ``sessionid`` cookie holding a NUL byte reached PostgreSQL in the session lookup and every
request with it (pages and API alike) was a 500 (found by schemathesis). Django's own keys are 32
characters of ``VALID_KEY_CHARS``; anything else is treated like an unknown key: no session."""

from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore

_KEY_CHARS = frozenset(VALID_KEY_CHARS)


class SessionStore(DatabaseSessionStore):
    def _validate_session_key(self, key):
        return super()._validate_session_key(key) and _KEY_CHARS.issuperset(key)
