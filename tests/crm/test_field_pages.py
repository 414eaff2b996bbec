"""The field app's pages (issue 5), without a browser: the shell, its manifest, its service worker.

The shell is cached by the service worker and opened offline by whoever signs in on the tablet,
so it must hold nobody's data: two users get the same bytes."""

import json
import re

import pytest
from django.urls import reverse
from django.utils import translation

from crm import views_field
from tests.factories import MerchantFactory

pytestmark = pytest.mark.django_db

SHELL = "/field/"


def config_of(response) -> dict:
    match = re.search(rb'<script id="field-config" type="application/json">(.*?)</script>', response.content, re.S)
    assert match, "the shell carries its config in a json_script"
    return json.loads(match.group(1))


def test_urls():
    assert reverse("field-shell") == SHELL
    assert reverse("field-manifest") == "/field/manifest.webmanifest"
    assert reverse("field-sw") == "/field/sw.js"


def test_shell_requires_login(client):
    response = client.get(SHELL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_shell_is_served_and_not_cached_by_http(client, world):
    client.force_login(world.am_a)
    response = client.get(SHELL)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert "no-store" in response["Cache-Control"]
    # The app reads the CSRF token from the cookie (the cached shell carries none).
    assert "csrftoken" in response.cookies
    assert b'csrfmiddlewaretoken" value=""' in response.content
    content = response.content.decode()
    assert 'rel="manifest" href="/field/manifest.webmanifest"' in content
    assert 'type="module" src="/static/field/js/app.js"' in content
    # Leaflet stays off My day: it is loaded when Nearby opens.
    assert "leaflet.js" not in content.replace(config_of(response)["static"]["leaflet_js"], "")


def test_shell_holds_no_user_data(client, world):
    mine = MerchantFactory(grid=world.grid_a, name="甲乙丙便利店", address="文三路1号")
    theirs = MerchantFactory(grid=world.grid_c, name="丁戊己水果行", address="江南大道9号")
    client.force_login(world.am_a)
    first = client.get(SHELL).content
    client.force_login(world.am_c)
    second = client.get(SHELL).content
    # The same page for both: data only ever comes from the sync API.
    assert first == second
    for text in (mine.name, mine.address, theirs.name, theirs.address, "am_a", "am_c"):
        assert text.encode() not in first


def test_shell_config(client, world):
    client.force_login(world.am_a)
    config = config_of(client.get(SHELL))
    assert config["urls"]["working_set"] == "/api/v1/sync/working-set/"
    assert config["urls"]["sync"] == "/api/v1/sync/"
    assert config["urls"]["photos"] == "/api/v1/sync/photos/"
    assert config["urls"]["status"] == "/api/v1/sync/status/"
    assert config["urls"]["duplicates"] == "/api/v1/merchants/duplicates/"
    assert config["version"] == views_field.cache_version()
    assert [c[0] for c in config["choices"]["activity_kind"]] == ["visit", "call"]
    assert config["stale_days_default"] == 30 and config["batch_size"] == 50


def test_manifest(client):
    response = client.get("/field/manifest.webmanifest")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/manifest+json")
    data = json.loads(response.content)
    assert data["start_url"] == SHELL and data["scope"] == SHELL
    assert data["display"] == "standalone"
    assert data["theme_color"].startswith("#")
    assert {i["sizes"] for i in data["icons"]} == {"192x192", "512x512"}
    for icon in data["icons"]:
        assert client.get(icon["src"]).status_code in (200, 404)  # served by staticfiles in DEBUG/live server only


def test_icons_exist_with_their_sizes():
    from django.contrib.staticfiles import finders
    from PIL import Image

    for size in (192, 512):
        path = finders.find(f"field/icons/icon-{size}.png")
        assert path, f"icon-{size}.png is missing"
        with Image.open(path) as img:
            assert img.size == (size, size)


def test_service_worker(client):
    response = client.get("/field/sw.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert "no-store" in response["Cache-Control"] and "no-cache" in response["Cache-Control"]
    body = response.content.decode()
    version = views_field.cache_version()
    assert f'var VERSION = "{version}";' in body
    precache = json.loads(re.search(r"var PRECACHE = (\[.*?\]);", body).group(1))
    assert SHELL in precache
    for path in ("/static/field/js/app.js", "/static/field/css/field.css", "/static/leaflet/leaflet.js"):
        assert path in precache
    # API answers are never put in a cache (another user's data must not outlive a login).
    assert "__" not in body.replace("__proto__", "")
    api_branch = body[body.index('url.pathname.indexOf("/api/")') : body.index('request.mode === "navigate"')]
    assert "cache.put" not in api_branch


def test_cache_version_is_a_stable_hash():
    before = views_field.cache_version()
    assert re.fullmatch(r"[0-9a-f]{12}", before)
    assert views_field.cache_version() == before  # stable while nothing changes


def test_shell_is_chinese_by_default(client, world):
    client.force_login(world.am_a)
    response = client.get(SHELL)
    content = response.content.decode()
    assert '<html lang="zh-hans">' in content
    with translation.override("zh-hans"):
        logout = str(translation.gettext("Log out"))
    assert logout != "Log out"
    config = config_of(response)
    assert config["strings"]["logout"] == logout
    assert config["language"] == "zh-hans"
    # Choice labels come from the catalogue: outcome and merchant status in Chinese.
    labels = dict(config["choices"]["merchant_status"])
    assert labels["prospect"] != "Prospect"


def test_shell_in_english_when_chosen(client, world):
    client.force_login(world.am_a)
    client.cookies["django_language"] = "en"
    config = config_of(client.get(SHELL))
    assert config["strings"]["logout"] == "Log out"
    assert config["strings"]["my_day"] == "My day"


def test_every_field_string_is_translated():
    with translation.override("en"):
        english = views_field.field_strings()
    with translation.override("zh-hans"):
        chinese = views_field.field_strings()
    missing = [english[k] for k in english if chinese[k] == english[k] and english[k] not in ("—",)]
    assert missing == []
