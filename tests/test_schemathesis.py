"""Schemathesis against the live app, once per role: no request may end in a server error.

The CLI runs as a subprocess against pytest-django's live server (a thread of this process, so one
schemathesis worker) with a DRF token per role; the data is the ``world`` and ``merchants``
fixtures, committed (transactional_db) so the server threads see it. Detail operations get the id
of a real row (a config file per run), so PUT/PATCH bodies are fuzzed against an existing merchant.

Bounded: the admin and an account manager (widest scope; the main writer) get the coverage phase
(boundary and invalid values for every parameter) plus fuzzing; the other roles get fuzzing only.
A failure prints schemathesis's output, with the seed to reproduce it (``SCHEMATHESIS_SEED``)."""

import os
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.servers import basehttp
from django.db import connection
from rest_framework.authtoken.models import Token

from crm.models import Industry
from grids.models import Membership, Place

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
FULL = "examples,coverage,fuzzing"
LIGHT = "fuzzing"  # the examples phase is the same for every role: the admin run covers it
ROLES = {
    "admin": FULL,
    "regional_head": LIGHT,
    "mid_office": LIGHT,
    "branch_manager": LIGHT,
    "grid_leader_a": LIGHT,
    "am_a": LIGHT,
    "nobody": LIGHT,
}
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "15"))
SEED = os.environ.get("SCHEMATHESIS_SEED", "20250101")
TIME_LIMIT = int(os.environ.get("SCHEMATHESIS_TIME_LIMIT", "480"))  # seconds per role, a hard stop


@pytest.fixture(autouse=True)
def fast_live_server(monkeypatch):
    """Speed only, for the test server. Django's test server writes headers and body separately:
    with Nagle's algorithm on, every keep-alive response waited ~40 ms for a delayed ACK. And the
    test settings close the database connection after every request (CONN_MAX_AGE=0); here a
    keep-alive client connection keeps one (the server closes it when the client disconnects)."""
    monkeypatch.setattr(basehttp.WSGIRequestHandler, "disable_nagle_algorithm", True)
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)


@pytest.fixture
def live_data(transactional_db, world, merchants):
    # The industries seeded by a migration are gone once an earlier transactional test flushed.
    Industry.objects.get_or_create(code="retail", defaults={"name_zh": "零售", "name_en": "Retail", "is_key": True})
    return world


def write_config(path: Path, world, merchants) -> Path:
    ids = {
        "/api/v1/merchants/{id}/": merchants["grid_a"].pk,
        "/api/v1/grids/{id}/": world.grid_a.pk,
        "/api/v1/places/{id}/": Place.objects.filter(grid=world.grid_a).values_list("pk", flat=True).first(),
        "/api/v1/branches/{id}/": world.branch.pk,
        "/api/v1/sub-branches/{id}/": world.sb1.pk,
        "/api/v1/memberships/{id}/": Membership.objects.filter(user=world.am_a).values_list("pk", flat=True).first(),
        "/api/v1/industries/{id}/": Industry.objects.values_list("pk", flat=True).first(),
    }
    blocks = []
    for op_path, pk in ids.items():
        assert pk, op_path
        blocks.append(f'[[operations]]\ninclude-path = "{op_path}"\nparameters = {{ "id" = {pk} }}\n')
    path.write_text("\n".join(blocks))
    return path


def run_schemathesis(base_url: str, token: str, phases: str, config: Path, tmp_path: Path):
    args = [
        SCHEMATHESIS,
        "--config-file",
        str(config),
        "run",
        f"{base_url}/api/schema/",
        "--url",
        base_url,
        "-H",
        f"Authorization: Token {token}",
        "--checks",
        "not_a_server_error",
        "--workers",
        "1",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--phases",
        phases,
        "--seed",
        SEED,
        "--request-timeout",
        "20",
        "--generation-database",
        "none",
        "--no-color",
        "--output-truncate",
        "false",
        "--suppress-health-check",
        "all",
    ]
    log = tmp_path / "schemathesis.log"
    with log.open("w") as out:
        # cwd=tmp_path: no schemathesis.toml from the repo or the developer is picked up.
        proc = subprocess.Popen(
            args, cwd=tmp_path, env={**os.environ, "NO_COLOR": "1"}, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            proc.wait(timeout=TIME_LIMIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"schemathesis ran longer than {TIME_LIMIT} s:\n{log.read_text()[-20000:]}")
    return proc.returncode, log.read_text()


@pytest.mark.parametrize("role", list(ROLES))
def test_no_server_errors(role, live_server, live_data, merchants, tmp_path):
    token = Token.objects.create(user=getattr(live_data, role))
    config = write_config(tmp_path / "schemathesis.toml", live_data, merchants)
    returncode, output = run_schemathesis(live_server.url, token.key, ROLES[role], config, tmp_path)
    summary = output[-20000:]
    print(summary)  # shown with -s, or -rP
    assert returncode == 0, f"schemathesis as {role} exited {returncode}:\n{summary}"
    # It really ran: every operation was tested and cases were generated (not a no-op).
    selected = re.search(r"Selected: (\d+)/(\d+)", output)
    tested = re.search(r"Tested: (\d+)", output)
    cases = re.search(r"(\d+) generated, (\d+) passed", output)
    assert selected and tested and cases, summary
    assert int(selected.group(1)) == int(selected.group(2)) >= 20, summary
    assert int(tested.group(1)) == int(selected.group(1)), summary
    assert int(cases.group(1)) >= 10 * int(tested.group(1)), summary
    assert cases.group(1) == cases.group(2), summary
    assert "Server error" not in output, summary


# --- What schemathesis found, pinned -----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "cookie", ["abc\x00defghijklmnop", "x" * 8 + "\x00", "../../etc/passwd", "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"]
)
@pytest.mark.parametrize("url", ["/api/v1/me/", "/api/v1/merchants/", "/accounts/login/"])
def test_a_malformed_session_cookie_is_no_session_not_a_500(client, cookie, url):
    client.cookies["sessionid"] = cookie
    response = client.get(url)
    assert response.status_code in (200, 302, 401, 403), response.status_code
    if url.startswith("/api/"):
        assert response.status_code in (401, 403)  # anonymous


@pytest.mark.django_db
def test_real_sessions_still_work(client, world):
    client.force_login(world.am_a)
    key = client.cookies["sessionid"].value
    assert len(key) == 32 and set(key) <= set(string.ascii_lowercase + string.digits)
    response = client.get("/api/v1/me/")
    assert response.status_code == 200
    assert response.json()["username"] == "am_a"
    # A NUL-laden POST through the pghistory middleware (it reads request.user first) is no 500.
    client.cookies["sessionid"] = key + "\x00"
    response = client.patch("/api/v1/merchants/1/", {}, content_type="application/json")
    assert response.status_code == 403
