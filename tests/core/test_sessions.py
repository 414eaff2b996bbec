"""core.sessions: sessions read through the cache (Redis) and stored in the database, refusing
keys Django never issues; a deactivated user's session is refused whatever the cache holds."""

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.cache import cache

from core.sessions import DatabaseSessionStore, SessionStore

pytestmark = pytest.mark.django_db

URL = "/api/v1/me/"


def test_the_engine_is_the_cached_store_on_redis():
    assert settings.SESSION_ENGINE == "core.sessions"
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    # Each test run keeps its cache entries under its own prefix (shared test Redis).
    assert settings.DATABASES["default"]["TEST"]["NAME"] in settings.CACHES["default"]["KEY_PREFIX"]


@pytest.mark.parametrize("store_class", [SessionStore, DatabaseSessionStore])
@pytest.mark.parametrize("key", ["abc\x00defghijklmnopqrstuvwxyz12345", "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", "short"])
def test_a_key_django_never_issues_is_no_session(store_class, key):
    store = store_class(key)
    assert store.session_key is None
    assert store.load() == {}


def test_a_session_is_cached_and_read_from_the_cache(client, world):
    client.force_login(world.am_a)
    key = client.cookies["sessionid"].value
    store = SessionStore(key)
    assert cache.get(store.cache_key) is not None
    # Served from the cache: the request needs no session row ...
    Session.objects.filter(session_key=key).delete()
    response = client.get(URL)
    assert response.status_code == 200 and response.json()["username"] == "am_a"


def test_a_session_missing_from_the_cache_is_read_from_the_database(client, world):
    client.force_login(world.am_a)
    key = client.cookies["sessionid"].value
    cache.delete(SessionStore(key).cache_key)
    assert client.get(URL).status_code == 200
    assert cache.get(SessionStore(key).cache_key) is not None  # and cached again


def test_a_deactivated_users_session_is_refused(client, world):
    client.force_login(world.am_a)
    assert client.get(URL).status_code == 200
    world.am_a.is_active = False
    world.am_a.save(update_fields=["is_active"])
    assert client.get(URL).status_code in (401, 403)


def test_a_changed_password_ends_the_session(client, world):
    client.force_login(world.am_a)
    assert client.get(URL).status_code == 200
    world.am_a.set_password("another-secret-42")
    world.am_a.save(update_fields=["password"])
    assert client.get(URL).status_code in (401, 403)


def test_logout_removes_the_cached_session(client, world):
    client.force_login(world.am_a)
    key = client.cookies["sessionid"].value
    cache_key = SessionStore(key).cache_key
    client.logout()
    assert cache.get(cache_key) is None
    assert not Session.objects.filter(session_key=key).exists()
    client.cookies["sessionid"] = key
    assert client.get(URL).status_code in (401, 403)
